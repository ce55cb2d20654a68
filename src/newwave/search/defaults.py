"""What a Recommender indexes and how it fuses when the user does not say: chosen by benchmark."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TypeAlias

from newwave.encoders.base import Encoder
from newwave.errors import (
    ComponentUnavailableError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
)
from newwave.fields import Field, FieldEncoder, field_value
from newwave.plugins import load_encoder
from newwave.types import Track

__all__ = [
    "DEFAULT_AUDIO_ENCODER",
    "DEFAULT_TAGS_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "LEXICAL_WEIGHT",
    "NAME_FIELDS",
    "UNWANTED_FACTOR",
    "FieldSpec",
    "default_fields",
]

FieldSpec: TypeAlias = "FieldEncoder | Sequence[FieldEncoder] | Field"

#: Text fields embedded by default, when the tracks carry them.
DEFAULT_TEXT_FIELDS = ("description", "tags", "lyrics")
#: Fields matched by their words (bm25) with ``default_fields(..., names=True)``, as for a music
#: folder, so that "songs by Mara Lind" finds her: names are not meanings, so not embedded.
NAME_FIELDS = ("title", "artist", "album")
DEFAULT_TEXT_ENCODER = "minilm"
#: The dense encoder of the hybrid tags field: MiniLM with adapters and heads trained on
#: MusicCaps' train split. On the MusicCaps benchmark (eval split, rewriter on, 300 sampled
#: requests ranking all 2,858 aspect lists), bm25 + minilm-music: MRR 0.899, R@10 0.960 (bm25 at
#: weight 1; at 2, 0.881 and 0.943, and with the heads alone 0.879 and 0.937); bm25 + minilm at
#: 2: 0.844, 0.913.
#: ``["bm25", "minilm"]`` as the tags field keeps the untuned MiniLM.
DEFAULT_TAGS_ENCODER = "minilm-music"
DEFAULT_AUDIO_ENCODER = "clap"
DEFAULT_LEXICAL_ENCODER = "bm25"
#: The default fuser is ``weighted``, with this weight for the lexical channel of a hybrid field
#: (1.0 for the others). Chosen for tags = ["bm25", "minilm-music"] on held-out clips of
#: MusicCaps' *train* split (the 133 validation clips of the minilm-music recipe, as requests,
#: against all 2,663 train clips): MRR 0.904 at 1.0, 0.890 at 2.0, 0.874 at 3.0. With the
#: untuned minilm, 2.0 was best (eval split: 0.870, against 0.824 with equal weights).
LEXICAL_WEIGHT = 1.0
#: Text fields embedded by both words and meaning by default: descriptor lists, where bm25 wins
#: (MusicCaps MRR 0.850 vs 0.446 for minilm). Free text (descriptions, lyrics) stays dense: on
#: Song Describer caption-to-caption retrieval the hybrid (MRR 0.066) did not beat minilm (0.069).
HYBRID_TEXT_FIELDS = ("tags",)
#: A track whose text expresses an attribute the query rules out ("no vocals") has its fused
#: score multiplied by this. Measured with the defaults: on the negation query set (39 requests
#: against the demo catalogue) precision@1 is 0.897 with 0.5 and with 0.0 (always last), 0.872
#: with 0.75; on the MusicCaps benchmark, whose captions *describe* clips ("an instrumental ...
#: with a man talking"), MRR is 0.867 with 0.5, 0.851 with 0.0, 0.870 without the rewriter.
UNWANTED_FACTOR = 0.5


def default_fields(tracks: list[Track], *, names: bool = False) -> dict[str, FieldSpec]:
    """The fields to index for ``tracks`` when none were given: what they carry.

    ``names`` also matches the :data:`NAME_FIELDS` the tracks carry by their words (``bm25``),
    as ``newwave index`` does for a music folder.
    """
    fields: dict[str, FieldSpec] = {}
    for name in DEFAULT_TEXT_FIELDS:
        if any(field_value(t, name) for t in tracks):
            hybrid = name in HYBRID_TEXT_FIELDS
            fields[name] = (
                [DEFAULT_LEXICAL_ENCODER, DEFAULT_TAGS_ENCODER] if hybrid else DEFAULT_TEXT_ENCODER
            )
    for name in NAME_FIELDS if names else ():
        if any(field_value(t, name) for t in tracks):
            fields[name] = DEFAULT_LEXICAL_ENCODER
    if any(t.audio for t in tracks):
        audio = _loaded_or_none(DEFAULT_AUDIO_ENCODER)
        if audio is not None:
            fields["audio"] = audio
    if not fields:
        raise InvalidInputError(
            "the tracks carry no description, tags, lyrics or audio to embed by default; "
            "pass fields=, e.g. Recommender(fields={'title': 'minilm'})"
        )
    return fields


def _loaded_or_none(name: str) -> Encoder | None:
    """The encoder ``name`` with its model loaded, or None (with a warning) if it cannot load."""
    try:
        encoder = load_encoder(name)
        encoder.dim  # noqa: B018 (loads the model unless its width is known)
        if hasattr(encoder, "weights_source"):
            encoder.weights_source  # noqa: B018 (loads the model)
    except (ModelNotFoundError, MissingDependencyError, ComponentUnavailableError) as exc:
        warnings.warn(
            f"the tracks' audio is not indexed: the {name!r} encoder cannot load ({exc}). "
            f"Provide its weights (newwave index: --field audio={name} --option "
            "audio.model=DIR), or choose the fields yourself (fields=, or --field).",
            stacklevel=4,
        )
        return None
    return encoder
