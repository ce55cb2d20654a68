from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from newwave import InvalidInputError, MissingFileError, RecommenderConfig
from newwave.config import ComponentConfig, FieldConfig


def make_config() -> RecommenderConfig:
    return RecommenderConfig(
        fields={
            "lyrics": FieldConfig(
                encoder=ComponentConfig(name="minilm", options={"max_length": 128}),
                model_id="sentence-transformers/all-MiniLM-L6-v2",
                dim=384,
            )
        },
        fuser=ComponentConfig(name="weighted", options={"weights": {"lyrics": 2.0}}),
    )


def test_round_trips_through_json(tmp_path: Path) -> None:
    config = make_config()
    assert RecommenderConfig.from_json(config.to_json()) == config
    config.save(tmp_path / "config.json")
    assert RecommenderConfig.load(tmp_path / "config.json") == config


def test_records_library_versions() -> None:
    versions = make_config().versions
    assert {"python", "newwave", "numpy"} <= set(versions)
    assert versions["newwave"] == importlib.metadata.version("newwave-music")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"format_version": 2}',
        '{"unknown_key": 1}',
        '{"fields": {"bad/name": {"encoder": {"name": "x"}}}}',
        '{"fields": {"lyrics": {"encoder": {"name": "x"}, "dim": 0}}}',
    ],
)
def test_invalid_configs_raise(text: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid RecommenderConfig"):
        RecommenderConfig.from_json(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        RecommenderConfig.load(tmp_path / "nope.json")


def test_is_immutable() -> None:
    config = make_config()
    with pytest.raises(ValueError, match="frozen"):
        config.fuser = ComponentConfig(name="rrf")  # type: ignore[misc]
