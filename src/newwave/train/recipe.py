"""Build a bi-encoder's heads from a recipe, byte for byte the same on every build.

A :class:`HeadsRecipe` (a JSON file) says everything a build depends on: the training data (a
catalogue file and its SHA-256, the columns, which rows train and which are held out), the
backbone (a text encoder plugin, its weights and the SHA-256 of their files) and the settings
of ``newwave train biencoder`` with a frozen backbone (head width, negatives, temperature, the
loop's seed and schedule). :func:`build_heads` checks the inputs against the recipe, trains on
one CPU thread with torch's deterministic algorithms, and writes ``heads.safetensors`` (the
heads only, with no metadata) and ``biencoder.json``: the same bytes on every build with the same
inputs, platform and library versions. ``heads_sha256`` in the recipe records what it builds.

``scripts/build_music_model.py`` rebuilds the heads newwave ships (``minilm-music``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from newwave._storage import write_json
from newwave.encoders.adapters import ADAPTERS_CONFIG, ADAPTERS_FILE, AdapterConfig
from newwave.encoders.biencoder import CONFIG_FILE, HEADS_FILE, ROLES, BiEncoder, load_backbone
from newwave.errors import InvalidInputError, MissingFileError
from newwave.readers import read_tracks
from newwave.train.biencoder import (
    BiEncoderData,
    BiEncoderModelConfig,
    BiEncoderTrainingConfig,
    HardNegativeKind,
    TextField,
    train_biencoder,
)
from newwave.train.config import LoopConfig
from newwave.train.splits import check_no_leak
from newwave.types import Track

__all__ = [
    "BuildResult",
    "HeadsRecipe",
    "RecipeBackbone",
    "RecipeData",
    "build_heads",
    "file_sha256",
    "read_recipe",
]

QueryKind = Literal["text", "request"]
"""A training query: the query field's text, or that text rephrased as a listener's request
(:func:`~newwave.evaluation.paraphrase.paraphrase_as_request`, seeded with the CRC-32 of the
track's id)."""


class RecipeData(BaseModel):
    """The training pairs: a catalogue file, which of its rows train, which are held out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = Field(min_length=1)
    """The catalogue's file name, for the record (the build is given its path)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    columns: dict[str, str] = {}
    """Track field -> the file's column, as for ``read_tracks``."""
    metadata: list[str] = []
    """Columns kept as track metadata (those ``train`` and ``held_out`` test)."""
    train: dict[str, JsonValue]
    """The rows that train: those whose metadata has these values."""
    held_out: dict[str, JsonValue]
    """The rows that must never train (an evaluation split): checked to share no track."""
    query_field: TextField = "description"
    document_field: TextField = "tags"
    queries: tuple[QueryKind, ...] = ("text",)
    """The queries of each track: its query field's text, and/or that text as a request."""


class RecipeBackbone(BaseModel):
    """The frozen backbone: a transformer text encoder plugin, its weights and their hashes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plugin: str = "minilm"
    model: str | None = None
    """A hub id or a directory; None: the plugin's default weights."""
    options: dict[str, JsonValue] = {}
    files: dict[str, str] = Field(min_length=1)
    """File (relative to the weights' directory) -> SHA-256: the files the backbone loads."""


class HeadsRecipe(BaseModel):
    """Everything a build of heads depends on (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["newwave-heads-recipe"] = "newwave-heads-recipe"
    version: Literal[1] = 1
    name: str = Field(min_length=1)
    data: RecipeData
    backbone: RecipeBackbone
    head_dim: int = Field(ge=1)
    shared_head: bool = False
    hard_negatives: tuple[HardNegativeKind, ...] = ("tags",)
    hard_negative_fraction: float = Field(default=0.5, ge=0, le=1)
    adapters: AdapterConfig | None = None
    """Low-rank adapters on the backbone's last layers, trained with the heads; None: heads
    only."""
    initial_temperature: float = Field(default=0.05, ge=0.01, le=1)
    max_logit_scale: float = Field(default=100.0, ge=1)
    validation_fraction: float = Field(default=0.05, gt=0, lt=1)
    """Training rows kept aside to pick the best epoch (never the held-out rows)."""
    validation_candidates: Literal["validation", "all"] = "validation"
    """What the validation rows' queries are ranked against: the validation rows' documents,
    or every training row's too (``"all"``, harder; see ``BiEncoderTrainingConfig``)."""
    loop: LoopConfig
    heads_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The SHA-256 of the heads.safetensors this recipe builds, once built."""
    adapters_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The SHA-256 of the adapters.safetensors this recipe builds (with ``adapters``)."""


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_heads` wrote."""

    directory: Path
    heads_sha256: str
    pairs: int
    """Training pairs (of the training and validation rows)."""
    held_out_tracks: int
    """Tracks of the held-out rows, none of which trained."""
    steps: int
    expected: str | None = None
    """The recipe's ``heads_sha256``."""
    adapters_sha256: str | None = None
    """The SHA-256 of adapters.safetensors; None without adapters."""
    expected_adapters: str | None = None
    """The recipe's ``adapters_sha256``."""

    @property
    def matches_recipe(self) -> bool | None:
        """Whether the heads (and adapters) are those the recipe records; None when it records
        none."""
        if self.expected is None:
            return None
        return (self.expected, self.expected_adapters) == (self.heads_sha256, self.adapters_sha256)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_recipe(path: str | os.PathLike[str]) -> HeadsRecipe:
    """The recipe in the JSON file ``path``."""
    source = Path(path)
    if not source.is_file():
        raise MissingFileError(f"no recipe at {source}")
    try:
        return HeadsRecipe.model_validate_json(source.read_bytes())
    except ValidationError as exc:
        raise InvalidInputError(f"{source} is not a heads recipe: {exc}") from exc


def build_heads(
    recipe: HeadsRecipe, data: str | os.PathLike[str], output_dir: str | os.PathLike[str]
) -> BuildResult:
    """Train the heads ``recipe`` describes on the catalogue file ``data`` and write
    ``heads.safetensors`` and ``biencoder.json`` into ``output_dir`` (created if needed).

    Raises :class:`InvalidInputError` when ``data`` or the backbone's files are not those the
    recipe names (their SHA-256 differ), or when a held-out track would train.
    """
    data_path = Path(data)
    if not data_path.is_file():
        raise MissingFileError(f"no training data at {data_path}")
    found = file_sha256(data_path)
    if found != recipe.data.sha256:
        raise InvalidInputError(
            f"{data_path} is not the recipe's {recipe.data.file}: its SHA-256 is {found}, the "
            f"recipe's {recipe.data.sha256}"
        )
    pairs, held_out = _pairs(recipe.data, data_path)
    with _deterministic():
        _check_backbone(recipe.backbone)
        model = BiEncoderModelConfig(
            backbone=recipe.backbone.plugin,
            backbone_model=recipe.backbone.model,
            backbone_options=recipe.backbone.options,
            freeze_backbone=True,
            adapters=recipe.adapters,
            head_dim=recipe.head_dim,
            shared_head=recipe.shared_head,
        )
        loop = recipe.loop.model_copy(
            update={"device": "cpu", "cpu_threads": 1, "loggers": (), "progress_bar": False}
        )
        with tempfile.TemporaryDirectory(prefix="newwave-heads-") as work:
            config = BiEncoderTrainingConfig(
                output_dir=Path(work) / "run",
                model=model,
                loop=loop,
                hard_negatives=recipe.hard_negatives,
                hard_negative_fraction=recipe.hard_negative_fraction,
                initial_temperature=recipe.initial_temperature,
                max_logit_scale=recipe.max_logit_scale,
                validation_fraction=recipe.validation_fraction,
                validation_candidates=recipe.validation_candidates,
                test_fraction=0,
            )
            result = train_biencoder(config, data=pairs)
    target = Path(output_dir)
    target.mkdir(parents=True, exist_ok=True)
    encoder = result.encoder
    _save_heads(encoder, target / HEADS_FILE)
    write_json(target / CONFIG_FILE, encoder.config.model_dump(mode="json"))
    adapters_sha256 = None
    if result.adapters is not None and recipe.adapters is not None:
        from safetensors.torch import save_file

        save_file(dict(sorted(result.adapters.items())), str(target / ADAPTERS_FILE))
        write_json(target / ADAPTERS_CONFIG, recipe.adapters.model_dump(mode="json"))
        adapters_sha256 = file_sha256(target / ADAPTERS_FILE)
    return BuildResult(
        directory=target,
        heads_sha256=file_sha256(target / HEADS_FILE),
        pairs=len(pairs),
        held_out_tracks=held_out,
        steps=result.training.steps,
        expected=recipe.heads_sha256,
        adapters_sha256=adapters_sha256,
        expected_adapters=recipe.adapters_sha256,
    )


def _pairs(spec: RecipeData, path: Path) -> tuple[BiEncoderData, int]:
    """The training pairs, in file order, and the number of held-out tracks (none trains)."""
    tracks = list(read_tracks(path, columns=spec.columns, metadata=spec.metadata))

    def has(track: Track, values: dict[str, JsonValue]) -> bool:
        return all(track.metadata.get(k) == v for k, v in values.items())

    train = [t for t in tracks if has(t, spec.train)]
    held_out = [t for t in tracks if has(t, spec.held_out)]
    if not train:
        raise InvalidInputError(f"no row of {path} has {spec.train}: nothing to train on")
    check_no_leak(train, held_out, key="id")
    queries: list[tuple[str, str]] | None = None
    if spec.queries != ("text",):
        queries = []
        for track in train:
            text = getattr(track, spec.query_field)
            if not text:
                continue
            for kind in spec.queries:
                queries.append((text if kind == "text" else _request(track.id, text), track.id))
    pairs = BiEncoderData.from_tracks(
        train, query_field=spec.query_field, document_field=spec.document_field, queries=queries
    )
    return pairs, len({t.id for t in held_out})


def _request(track_id: str, text: str) -> str:
    from newwave.evaluation.paraphrase import paraphrase_as_request

    return paraphrase_as_request(text, zlib.crc32(track_id.encode("utf-8")))


def _check_backbone(spec: RecipeBackbone) -> None:
    """Raise :class:`InvalidInputError` unless the backbone loads from files with the recipe's
    hashes."""
    options = {**spec.options, **({} if spec.model is None else {"model": spec.model})}
    source = load_backbone(spec.plugin, device="cpu", **options).weights_source
    for name, expected in sorted(spec.files.items()):
        file = _weights_file(source, name)
        if file is None:
            raise InvalidInputError(f"the backbone's {name} is not in {source}")
        found = file_sha256(file)
        if found != expected:
            raise InvalidInputError(
                f"the backbone's {name} ({source}) is not the recipe's: SHA-256 {found}, the "
                f"recipe's {expected}"
            )


def _weights_file(source: str, name: str) -> Path | None:
    """The file ``name`` of weights loaded from ``source``: a directory, or a hub id whose files
    are in the Hugging Face cache."""
    if Path(source).is_dir():
        path = Path(source) / name
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, name)
    return Path(cached) if isinstance(cached, str) else None


@contextmanager
def _deterministic() -> Iterator[None]:
    """One CPU thread and torch's deterministic algorithms, restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    strict = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(strict)
        torch.set_num_threads(threads)


def _save_heads(encoder: BiEncoder, path: Path) -> None:
    """The heads' tensors (float32, contiguous) in ``path``, keys sorted, no metadata."""
    from safetensors.torch import save_file

    tensors = {
        f"{encoder.config.head_name(role)}.{key}": value.detach().float().cpu().contiguous()
        for role in ROLES
        for key, value in encoder.heads[role].state_dict().items()
    }
    save_file(dict(sorted(tensors.items())), str(path))
