"""Reference outputs of musicnn (TensorFlow) on the synthesised clips, for the parity test.

Runs the original ``musicnn`` package (TensorFlow) on every clip of
``src/newwave/data/synth_clips`` with the MTT and MSD models and writes each clip's taggram
(the tag probabilities of each 3-second patch) and penultimate features to
``tests/data/musicnn_reference.npz`` (plain arrays, no pickle), with the versions used.

It does what ``musicnn.extractor.extractor`` does (the same graph, ``models.define_model``, the
same checkpoint and input, ``extractor.batch_data``), in one session per model, because
``extractor`` returns the first patch's penultimate features for every patch (a bug in musicnn
0.1.0: its loop over the later patches concatenates ``penultimate_``, not ``backend_``); its
taggram is right.

Run it in a separate environment that has TensorFlow; never in newwave's own. For example,
with Python 3.11 (the ``musicnn`` wheel pins numpy<1.17, which does not install there, hence
``--no-deps``; TensorFlow 2.15 is the last with the ``tf.compat.v1.layers`` musicnn uses)::

    python3 -m venv /tmp/tf-ref-venv
    /tmp/tf-ref-venv/bin/pip install 'tensorflow-cpu==2.15.1' 'numpy<2' 'librosa==0.11.0' soundfile
    /tmp/tf-ref-venv/bin/pip install --no-deps 'musicnn==0.1.0'
    /tmp/tf-ref-venv/bin/python scripts/musicnn_reference.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import librosa
import numpy as np
import tensorflow as tf
from musicnn import configuration as config
from musicnn import models
from musicnn.extractor import batch_data

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "src" / "newwave" / "data" / "synth_clips"
OUT = ROOT / "tests" / "data" / "musicnn_reference.npz"
MODELS = ("MTT_musicnn", "MSD_musicnn")
N_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1


class Reference:
    """One musicnn model in a TensorFlow session, as ``extractor`` builds it."""

    def __init__(self, model: str) -> None:
        labels = config.MTT_LABELS if "MTT" in model else config.MSD_LABELS
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            self.x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, config.N_MELS])
            self.is_training = tf.compat.v1.placeholder(tf.bool)
            outputs = models.define_model(self.x, self.is_training, model, len(labels))
            self.outputs = [tf.nn.sigmoid(outputs[0]), outputs[-1]]  # probabilities, penultimate
        self.session = tf.compat.v1.Session()
        self.session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(
            self.session, str(Path(models.__file__).parent / model) + "/"
        )

    def __call__(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        batch, _ = batch_data(str(path), N_FRAMES, N_FRAMES)
        taggram, penultimate = self.session.run(
            self.outputs, feed_dict={self.x: batch, self.is_training: False}
        )
        return np.asarray(taggram, np.float32), np.asarray(penultimate, np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    files = [clip["file"] for clip in json.loads((CLIPS / "clips.json").read_text())]
    arrays: dict[str, np.ndarray] = {"files": np.array(files)}
    for model in MODELS:
        reference = Reference(model)
        taggrams, penultimates = [], []
        for name in files:
            taggram, penultimate = reference(CLIPS / name)
            taggrams.append(taggram)
            penultimates.append(penultimate)
            print(model, name, taggram.shape)
        reference.session.close()
        arrays[f"{model}/taggram"] = np.stack(taggrams)
        arrays[f"{model}/penultimate"] = np.stack(penultimates)
    arrays["versions"] = np.array(
        [
            f"tensorflow {tf.__version__}",
            f"librosa {librosa.__version__}",
            f"numpy {np.__version__}",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
