"""Loading never runs code from a model folder: a crafted ``auto_map`` is refused, not executed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from newwave.errors import InvalidInputError
from newwave.plugins import load_encoder, load_fuser, load_lexical, load_retriever

# Run in a child process: transformers would prompt on stdin ("Do you wish to run the custom
# code? [y/N]") when trust_remote_code is left unset; the child's stdin answers "y".
LOADER = textwrap.dedent(
    """
    import sys
    from newwave.errors import NewWaveError
    from newwave.plugins import load_encoder

    name, folder = sys.argv[1], sys.argv[2]
    try:
        load_encoder(name, model=folder, device="cpu").encode_text(["a query"])
    except NewWaveError as exc:
        print(f"{type(exc).__name__}: {exc}")
        sys.exit(3)
    print("loaded")
    """
)


def _crafted_model(folder: Path, marker: Path) -> Path:
    """A model folder whose config maps the Auto classes to a module that writes ``marker``."""
    folder.mkdir()
    payload = f"open({str(marker)!r}, 'w').write('ran')\n"
    (folder / "evil.py").write_text(
        payload
        + "from transformers import PretrainedConfig, PreTrainedModel\n"
        + "class EvilConfig(PretrainedConfig):\n    model_type = 'newwave-evil'\n"
        + "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n"
    )
    auto_map = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModel": "evil.EvilModel",
        "AutoFeatureExtractor": "evil.EvilConfig",
        "AutoTokenizer": ["evil.EvilConfig", None],
    }
    config = {"model_type": "newwave-evil", "auto_map": auto_map, "architectures": ["EvilModel"]}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": auto_map}))
    (folder / "preprocessor_config.json").write_text(json.dumps({"auto_map": auto_map}))
    return folder


@pytest.mark.parametrize("encoder", ["minilm", "clap"])
def test_custom_code_in_a_model_folder_is_never_run(tmp_path: Path, encoder: str) -> None:
    marker = tmp_path / "marker"
    folder = _crafted_model(tmp_path / "model", marker)
    result = subprocess.run(
        [sys.executable, "-c", LOADER, encoder, str(folder)],
        input="y\ny\ny\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert not marker.exists(), output
    assert "[y/N]" not in output
    assert result.returncode == 3, output
    assert result.stdout.startswith("ModelNotFoundError: "), output
    assert str(folder) in result.stdout
    assert "custom code" in result.stdout
    assert "Traceback" not in output


def test_unknown_encoder_options_list_the_accepted_ones() -> None:
    with pytest.raises(InvalidInputError, match="unknown option 'bogus'") as info:
        load_encoder("minilm", bogus=1)
    message = str(info.value)
    assert message.startswith("encoder 'minilm': ")
    for option in ("model", "device", "batch_size", "max_length", "stride", "dtype"):
        assert option in message
    assert "\n" not in message


def test_every_kind_of_component_checks_its_options() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown options 'a', 'b'; it accepts: .*pooling"):
        load_encoder("clap", a=1, b=2)
    with pytest.raises(InvalidInputError, match="fuser 'rrf': unknown option 'k'"):
        load_fuser("rrf", k=3)
    with pytest.raises(InvalidInputError, match=r"retriever 'faiss': .*dim"):
        load_retriever("faiss", dims=384)
    with pytest.raises(InvalidInputError, match="lexical 'bm25': unknown option 'k3'"):
        load_lexical("bm25", k3=1.0)
