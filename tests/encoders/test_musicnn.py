"""The musicnn encoder: the TensorFlow checkpoint reader, and the real weights of the musicnn
package against musicnn's own TensorFlow outputs (tests/data/musicnn_reference.npz, written by
scripts/musicnn_reference.py) on the synthesised clips of src/newwave/data/synth_clips."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import newwave
from newwave.encoders import musicnn as musicnn_module
from newwave.encoders._tf_checkpoint import crc32c, read_checkpoint, read_index
from newwave.encoders.musicnn import (
    LABELS,
    MusicnnEncoder,
    log_mel_patches,
    packaged_checkpoint,
)
from newwave.errors import (
    AudioDecodeError,
    InvalidInputError,
    ModelNotFoundError,
    UnsupportedModalityError,
)
from newwave.plugins import components, load_encoder

CLIPS = Path(newwave.__file__).parent / "data" / "synth_clips"
REFERENCE = Path(__file__).parent.parent / "data" / "musicnn_reference.npz"
INSTRUMENTS = ("piano", "guitar", "drums", "violin", "flute")

needs_weights = pytest.mark.skipif(
    packaged_checkpoint() is None,
    reason="the musicnn weights are not installed: pip install --no-deps 'musicnn==0.1.0' "
    "(make test installs them)",
)


# -- a hand-written TensorFlow checkpoint, for the reader ----------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)  # one restart point, at 0


def _write_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """A TF "V2" checkpoint as TensorFlow writes it: data file + SSTable index."""
    codes = {np.dtype("<f4"): 1, np.dtype("<i8"): 9, np.dtype("<f2"): 19}
    data = bytearray()
    entries = [(b"", _field(1, 1) + _field(3, _field(1, 1)))]  # header: 1 shard, little-endian
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        blob = array.tobytes()
        crc = crc32c(blob)
        masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        shape = b"".join(_field(2, _field(1, n)) for n in array.shape)
        entry = (
            _field(1, codes[array.dtype])
            + _field(2, shape)
            + _field(4, len(data))
            + _field(5, len(blob))
            + _varint(6 << 3 | 5)
            + struct.pack("<I", masked)
        )
        entries.append((name.encode(), entry))
        data += blob
    table = bytearray()
    data_block = _block(entries)
    table += data_block + b"\x00\x00\x00\x00\x00"
    index_offset = len(table)
    index_block = _block([(entries[-1][0], _varint(0) + _varint(len(data_block)))])
    table += index_block + b"\x00\x00\x00\x00\x00"
    meta_offset = len(table)
    table += _block([]) + b"\x00\x00\x00\x00\x00"
    handles = _varint(meta_offset) + _varint(8) + _varint(index_offset) + _varint(len(index_block))
    table += handles.ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(bytes(table))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


@pytest.fixture
def small_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {
        "dense/kernel": rng.standard_normal((3, 4)).astype(np.float32),
        "dense/bias": rng.standard_normal(4).astype(np.float32),
        "global_step": np.array(1234, dtype=np.int64),
        "half": rng.standard_normal((2, 2, 2)).astype(np.float16),
    }
    _write_checkpoint(tmp_path / "ckpt", tensors)
    return tmp_path / "ckpt", tensors


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0


def test_reader_reads_tensors_of_each_dtype(
    small_checkpoint: tuple[Path, dict[str, np.ndarray]],
) -> None:
    prefix, tensors = small_checkpoint
    shards, entries = read_index(prefix)
    assert shards == 1
    assert sorted(entries) == sorted(tensors)
    read = read_checkpoint(prefix, verify=True)
    for name, array in tensors.items():
        assert read[name].dtype == array.dtype
        assert read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)
    only = read_checkpoint(prefix, lambda name: name.startswith("dense/"))
    assert sorted(only) == ["dense/bias", "dense/kernel"]


def test_reader_detects_corruption(small_checkpoint: tuple[Path, dict[str, np.ndarray]]) -> None:
    prefix, _ = small_checkpoint
    data = Path(f"{prefix}.data-00000-of-00001")
    blob = bytearray(data.read_bytes())
    blob[5] ^= 0xFF
    data.write_bytes(bytes(blob))
    read_checkpoint(prefix)  # without verify the flipped byte goes unnoticed
    with pytest.raises(ModelNotFoundError, match="CRC32C"):
        read_checkpoint(prefix, verify=True)
    data.write_bytes(bytes(blob[:10]))
    with pytest.raises(ModelNotFoundError, match="truncated or corrupt"):
        read_checkpoint(prefix)
    data.unlink()
    with pytest.raises(ModelNotFoundError, match="missing"):
        read_checkpoint(prefix)
    index = Path(f"{prefix}.index")
    index.write_bytes(b"not a table" * 10)
    with pytest.raises(ModelNotFoundError, match="not a readable TensorFlow checkpoint"):
        read_index(prefix)
    index.unlink()
    with pytest.raises(ModelNotFoundError, match="no TensorFlow checkpoint index"):
        read_index(prefix)


# -- without the weights --------------------------------------------------------------------------


def test_registered_as_an_audio_encoder() -> None:
    assert components("encoder")["musicnn"].plugin == "musicnn"
    encoder = load_encoder("musicnn", device="cpu")
    assert isinstance(encoder, MusicnnEncoder)
    assert encoder.modalities == frozenset({"audio"})
    assert encoder.dim == 200
    assert encoder.model_id == "musicnn/MTT_musicnn"
    assert encoder.get_config() == {
        "model": "MTT_musicnn",
        "checkpoint": None,
        "batch_size": 8,
        "window_patches": 3,
    }
    assert len(encoder.labels) == 50
    assert {"piano", "guitar", "drums", "fast", "slow", "no vocals"} <= set(encoder.labels)
    with pytest.raises(UnsupportedModalityError):
        encoder.encode_text(["piano"])


def test_bad_options() -> None:
    with pytest.raises(InvalidInputError, match="MTT_musicnn, MSD_musicnn"):
        MusicnnEncoder(model="MTT_vgg")
    with pytest.raises(InvalidInputError, match="checkpoint must be a path"):
        MusicnnEncoder(checkpoint=3)  # type: ignore[arg-type]


def test_missing_weights_name_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(musicnn_module, "packaged_checkpoint", lambda model: None)
    encoder = MusicnnEncoder(device="cpu")
    clip = (np.zeros(16000, np.float32), 16000)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps 'musicnn==0\.1\.0'"):
        encoder.encode_audio([clip])
    with pytest.raises(ModelNotFoundError, match="TensorFlow is not needed"):
        encoder.tags([clip])


def test_bad_checkpoint_paths(tmp_path: Path) -> None:
    clip = [(np.zeros(16000, np.float32), 16000)]
    with pytest.raises(ModelNotFoundError, match=r"has no \.index file"):
        MusicnnEncoder(checkpoint=tmp_path, device="cpu").encode_audio(clip)
    with pytest.raises(ModelNotFoundError, match="no musicnn checkpoint at"):
        MusicnnEncoder(checkpoint=tmp_path / "nope", device="cpu").encode_audio(clip)


def test_log_mel_patches_cut_and_loop() -> None:
    rng = np.random.default_rng(1)
    seven = (0.05 * rng.standard_normal(7 * 16000)).astype(np.float32)
    patches = log_mel_patches(seven)  # 438 frames: two whole patches, the rest dropped
    assert patches.shape == (2, 187, 96)
    assert patches.dtype == np.float32
    assert np.isfinite(patches).all()
    assert patches.min() >= 0
    short = log_mel_patches(seven[:16000])  # 63 frames, looped to one patch
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, 63:126], short[0, :63])
    with pytest.raises(InvalidInputError):
        log_mel_patches(np.zeros((2, 100), np.float32))


def test_loud_audio_does_not_overflow() -> None:
    """A full-scale tone's mel power exceeds float16's range once multiplied by 10000."""
    t = np.arange(4 * 16000) / 16000
    loud = np.sin(2 * np.pi * 110 * t).astype(np.float32)
    patches = log_mel_patches(loud)
    assert np.isfinite(patches).all()
    assert patches.max() > np.log10(65504)  # past what float16 arithmetic could hold


# -- on the real weights -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips() -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads((CLIPS / "clips.json").read_text())
    return listed


@pytest.fixture(scope="module")
def reference() -> Any:
    return np.load(REFERENCE)  # allow_pickle is False by default: plain arrays only


@pytest.fixture(scope="module")
def patches(clips: list[dict[str, Any]]) -> list[np.ndarray]:
    encoder = MusicnnEncoder(device="cpu")
    return [encoder.patches(str(CLIPS / clip["file"])) for clip in clips]


@pytest.fixture(scope="module")
def outputs(patches: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each model's per-patch probabilities and penultimate features, (clips, patches, n)."""
    out = {}
    for model in LABELS:
        if packaged_checkpoint(model) is None:
            continue
        encoder = MusicnnEncoder(model=model, device="cpu")
        probabilities, features = encoder.forward_patches(np.concatenate(patches))
        shape = (len(patches), -1)
        out[model] = (
            probabilities.reshape(*shape, probabilities.shape[-1]),
            features.reshape(*shape, features.shape[-1]),
        )
    return out


@needs_weights
def test_packaged_checkpoint_is_intact() -> None:
    directory = packaged_checkpoint("MTT_musicnn")
    assert directory is not None
    weights = read_checkpoint(f"{directory}/", lambda n: "Adam" not in n, verify=True)
    assert weights["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert weights["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert weights["dense_1/kernel"].shape == (200, 50)
    assert MusicnnEncoder(device="cpu").weights_source == f"{directory}/"
    given = MusicnnEncoder(checkpoint=directory, device="cpu")
    assert given.model_id == f"musicnn/MTT_musicnn@{directory}"
    clip = [(np.sin(np.arange(48000) / 5).astype(np.float32), 16000)]
    np.testing.assert_array_equal(
        given.encode_audio(clip), MusicnnEncoder(device="cpu").encode_audio(clip)
    )


@needs_weights
@pytest.mark.slow
@pytest.mark.parametrize("model", list(LABELS))
def test_parity_with_tensorflow_musicnn(
    model: str, clips: list[dict[str, Any]], reference: Any, outputs: dict[str, Any]
) -> None:
    """The taggram and penultimate features of musicnn's TensorFlow graph, on 30 clips."""
    assert [str(f) for f in reference["files"]] == [clip["file"] for clip in clips]
    probabilities, features = outputs[model]
    expected_p, expected_f = reference[f"{model}/taggram"], reference[f"{model}/penultimate"]
    assert probabilities.shape == expected_p.shape == (30, 2, 50)
    assert features.shape == expected_f.shape == (30, 2, 200)
    # measured: 3.3e-6 (MTT) and 3.0e-6 (MSD) for probabilities; 1.4e-5 and 2.2e-5 for features
    # whose largest magnitude is about 5
    assert np.abs(probabilities - expected_p).max() < 5e-5
    assert np.abs(features - expected_f).max() < 2e-4
    # and the outputs differ between clips (the comparison above is not of constants)
    assert np.abs(expected_p - expected_p.mean(axis=0)).max() > 0.3


@needs_weights
@pytest.mark.slow
def test_tagging_accuracy_on_synthesised_clips(
    clips: list[dict[str, Any]], outputs: dict[str, Any]
) -> None:
    """The most probable instrument tag is the instrument played; "fast" beats "slow" for the
    fast pieces and the other way round (measured: 26/30 instruments, 29/30 tempi)."""
    probabilities = outputs["MTT_musicnn"][0].mean(axis=1)
    labels = LABELS["MTT_musicnn"]
    instrument = [labels.index(name) for name in INSTRUMENTS]
    fast, slow = labels.index("fast"), labels.index("slow")
    right_instrument = right_tempo = 0
    for clip, row in zip(clips, probabilities, strict=True):
        guess = INSTRUMENTS[int(np.argmax(row[instrument]))]
        right_instrument += guess == clip["instrument"]
        right_tempo += ("fast" if row[fast] > row[slow] else "slow") == clip["tempo"]
    assert right_instrument / len(clips) >= 0.8
    assert right_tempo / len(clips) >= 0.9


@needs_weights
@pytest.mark.slow
def test_encode_audio_is_the_mean_penultimate(
    clips: list[dict[str, Any]], outputs: dict[str, Any]
) -> None:
    encoder = MusicnnEncoder(device="cpu")
    files = [str(CLIPS / clip["file"]) for clip in clips[:4]]
    vectors = encoder.encode_audio(files)
    assert vectors.shape == (4, 200)
    assert vectors.dtype == np.float32
    expected = outputs["MTT_musicnn"][1][:4].mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@needs_weights
@pytest.mark.slow
def test_audio_vectors_find_the_same_instrument(
    clips: list[dict[str, Any]], outputs: dict[str, Any]
) -> None:
    """Audio-to-audio: each clip's nearest other clip plays the same instrument (mostly)."""
    vectors = outputs["MTT_musicnn"][1].mean(axis=1)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    same = [clips[i]["instrument"] == clips[j]["instrument"] for i, j in enumerate(nearest)]
    assert sum(same) / len(clips) >= 0.8


@needs_weights
def test_tags_and_inputs() -> None:
    encoder = MusicnnEncoder(device="cpu")
    path = CLIPS / "flute-slow-1.ogg"
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32")
    stereo_44k = np.stack([samples, samples])
    tags = encoder.tags([str(path), (samples, rate)], top_k=5)
    assert len(tags) == 2
    assert all(len(t) == 5 for t in tags)
    assert tags[0] == tags[1]  # a path and its decoded samples agree
    assert tags[0][0][0] == "flute"
    assert [p for _, p in tags[0]] == sorted((p for _, p in tags[0]), reverse=True)
    kept = encoder.tags([str(path)], threshold=0.1)[0]
    assert kept
    assert all(p >= 0.1 for _, p in kept)
    assert encoder.tag_probabilities([(stereo_44k, 16000)]).shape == (1, 50)
    one_second = encoder.tag_probabilities([(samples[:16000], rate)])  # looped to 3 s
    assert np.isfinite(one_second).all()
    with pytest.raises(AudioDecodeError, match="too short for musicnn"):
        encoder.tag_probabilities([(samples[:100], rate)])
    skipped = pytest.warns(UserWarning, match="skipped 1 audio")
    with skipped:
        rows = encoder.tag_probabilities([(samples[:100], rate), str(path)], on_error="skip")
    assert np.isnan(rows[0]).all()
    assert np.isfinite(rows[1]).all()
    with pytest.raises(InvalidInputError, match="top_k"):
        encoder.tags([str(path)], top_k=0)
    with pytest.raises(InvalidInputError, match="threshold"):
        encoder.tags([str(path)], threshold=2.0)


@needs_weights
def test_window_vectors_are_the_vectors_of_three_patch_stretches() -> None:
    from newwave.audio import load_audio
    from newwave.encoders.musicnn import HOP, N_FRAMES

    encoder = MusicnnEncoder(device="cpu")
    parts = [
        load_audio(CLIPS / f"{n}.ogg", sample_rate=16000) for n in ("piano-fast-1", "drums-slow-2")
    ]
    track = np.concatenate(parts)  # 12 s: 4 patches, so 2 windows of 3 patches
    (windows,) = encoder.encode_audio_windows([(track, 16000)])
    assert windows.shape == (2, 200)
    assert np.linalg.norm(windows, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    patch = N_FRAMES * HOP  # samples per patch
    for i, row in enumerate(windows):
        alone = encoder.encode_audio([(track[i * patch : (i + 3) * patch + HOP], 16000)])[0]
        assert float(row @ alone) > 0.99  # the same stretch, but for the edges of its spectrogram
    # a clip shorter than three patches is one window: its encode_audio vector
    (short,) = encoder.encode_audio_windows([(parts[0], 16000)])
    assert short == pytest.approx(encoder.encode_audio([(parts[0], 16000)]), abs=1e-5)
    # tags and vectors from one pass: those of tag_probabilities and encode_audio
    probabilities, vectors = encoder.tag_probabilities_and_vectors([(parts[1], 16000)])
    assert probabilities == pytest.approx(encoder.tag_probabilities([(parts[1], 16000)]))
    assert vectors == pytest.approx(encoder.encode_audio([(parts[1], 16000)]), abs=1e-6)
    with pytest.raises(InvalidInputError, match="window_patches"):
        MusicnnEncoder(window_patches=0)
