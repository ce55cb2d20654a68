"""The Encoder interface: text and audio in, L2-normalised float32 vectors out."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from tqdm.auto import tqdm

from newwave._checks import positive_int
from newwave._vectors import as_matrix, l2_normalize
from newwave.errors import (
    EmptyQueryError,
    InvalidInputError,
    MissingFileError,
    NonFiniteVectorError,
    PluginError,
    SkippedInputWarning,
    TruncatedTextWarning,
    UnsupportedModalityError,
)
from newwave.types import AudioInput, FloatMatrix, Modality, Role, Waveform

__all__ = ["DEFAULT_MAX_TEXT_CHARS", "MAX_TEXT_CHARS_ENV", "Encoder"]

#: The longest text, in characters, an encoder takes by default (:attr:`Encoder.max_text_chars`).
DEFAULT_MAX_TEXT_CHARS = 100_000
#: The environment variable that changes that default, e.g. ``NEWWAVE_MAX_TEXT_CHARS=1000000``.
MAX_TEXT_CHARS_ENV = "NEWWAVE_MAX_TEXT_CHARS"

Skipped = tuple[int, Any, Exception]
"""A skipped input: its index, the input, and why."""


class Encoder(ABC):
    """Embeds text and/or audio into one vector space.

    A subclass sets ``name`` and ``modalities``, implements :attr:`dim` and :meth:`_encode_batch`;
    the base class validates input, sorts by length into batches (restoring the caller's order),
    shows a progress bar, checks the output and L2-normalises it. Every ``encode_*`` method returns
    a 2-D, C-contiguous float32 array of shape ``(len(inputs), dim)``, so the inner product of two
    rows is their cosine similarity.

    **Long text.** :attr:`max_text_chars` bounds the work one text can cause. A document (the
    default ``role``) longer than that is refused with an
    :class:`~newwave.errors.InvalidInputError` giving its size and the limit. A query is never
    refused: it is embedded from its start, cut to what the model sees (:meth:`_fit_query`; for
    the transformer encoders, their first token window, or their first ``max_query_windows``
    windows for those that window long text), with one
    :class:`~newwave.errors.TruncatedTextWarning` per call listing the queries cut.
    """

    name: ClassVar[str] = ""
    #: The longest text in characters; ``None`` (the default): the value of the environment
    #: variable ``NEWWAVE_MAX_TEXT_CHARS``, else :data:`DEFAULT_MAX_TEXT_CHARS` (100 000). Set it
    #: on an instance to change it for that encoder.
    max_text_chars: int | None = None
    modalities: ClassVar[frozenset[Modality]] = frozenset({"text"})
    default_batch_size: ClassVar[int] = 32

    def __init__(self, *, batch_size: int | None = None, show_progress_bar: bool | None = None):
        if batch_size is not None:
            positive_int(batch_size, "batch_size")
        self.batch_size = batch_size or self.default_batch_size
        self.show_progress_bar = show_progress_bar

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the vectors this encoder returns."""

    @property
    def model_id(self) -> str:
        """What identifies the weights (a hub id or a path); vectors of different ids don't mix."""
        return self.name

    def get_config(self) -> dict[str, Any]:
        """Keyword options that rebuild this encoder through its registered factory (JSON-able)."""
        return {}

    @abstractmethod
    def _encode_batch(self, batch: list[Any], modality: Modality, role: Role) -> Any:
        """Embed one batch; return an array-like of shape (len(batch), dim).

        The batch holds what :meth:`_prepare` returned for each input: by default, for text,
        non-empty ``str``; for audio, ``str`` paths of existing files and
        :class:`~newwave.types.Waveform` objects. ``role`` tells a query from a document for
        models that embed them differently (audio is always ``"document"``).
        """

    def _prepare(self, item: Any, modality: Modality) -> Any:
        """Turn one input into what :meth:`_encode_batch` takes, e.g. decode an audio file.

        Runs item by item just before the item's batch, so at most one batch is held in memory.
        An :class:`~newwave.errors.InvalidInputError` (e.g. :class:`AudioDecodeError`) or
        :class:`~newwave.errors.MissingFileError` raised here is reported with the input it came
        from, and skipped when ``on_error="skip"``.
        """
        return item

    # -- public API ---------------------------------------------------------------------------

    def encode_text(
        self,
        texts: Sequence[str],
        *,
        role: Role = "document",
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> FloatMatrix:
        """Embed ``texts`` (a list of strings) as documents, or as queries with ``role="query"``."""
        if role not in ("query", "document"):
            raise InvalidInputError(f"role must be 'query' or 'document', got {role!r}")
        items = self._check_texts(texts)
        limit = self.text_limit_chars()
        if role == "document":
            for i, text in enumerate(items):
                if len(text) > limit:
                    raise InvalidInputError(
                        f"text {i} has {len(text):,} characters, more than encoder "
                        f"{self.name!r} takes (max_text_chars={limit:,}); shorten it, or raise "
                        f"the limit (the encoder's max_text_chars, or {MAX_TEXT_CHARS_ENV})"
                    )
        else:
            items = self._fit_queries(items, limit)
        return self._encode(items, "text", role, batch_size, show_progress_bar)

    def encode_queries(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> FloatMatrix:
        """Embed search requests: ``encode_text(texts, role="query")``."""
        return self.encode_text(
            texts, role="query", batch_size=batch_size, show_progress_bar=show_progress_bar
        )

    def encode_audio(
        self,
        audio: Sequence[AudioInput],
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> FloatMatrix:
        """Embed audio: file paths, :class:`Waveform` objects or ``(samples, rate)`` pairs.

        An input that cannot be used (a missing or undecodable file) raises an error naming it;
        with ``on_error="skip"`` its row is all zeros instead, and one
        :class:`~newwave.errors.SkippedInputWarning` lists every skipped input.
        """
        if on_error not in ("raise", "skip"):
            raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        items = self._check_audio(audio)
        return self._encode(
            items, "audio", "document", batch_size, show_progress_bar, skip=on_error == "skip"
        )

    def _check_audio_call(
        self, audio: Sequence[AudioInput], on_error: str, batch_size: int | None
    ) -> tuple[list[str | Waveform], int]:
        """The checked inputs and batch size of an audio method that batches by itself."""
        if on_error not in ("raise", "skip"):
            raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        size = self.batch_size if batch_size is None else batch_size
        return self._check_audio(audio), positive_int(size, "batch_size")

    def text_limit_chars(self) -> int:
        """The longest text this encoder takes, in characters (see :attr:`max_text_chars`)."""
        limit: Any = self.max_text_chars
        what = "max_text_chars"
        if limit is None:
            raw = os.environ.get(MAX_TEXT_CHARS_ENV, "").strip()
            if not raw:
                return DEFAULT_MAX_TEXT_CHARS
            what = MAX_TEXT_CHARS_ENV
            try:
                limit = int(raw)
            except ValueError:
                limit = raw
        return positive_int(limit, what)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model_id={self.model_id!r})"

    # -- shared machinery ---------------------------------------------------------------------

    def _fit_query(self, text: str, max_chars: int) -> str:
        """The start of query ``text`` that the model sees; by default its first ``max_chars``.

        Encoders that see a bounded window (e.g. a number of tokens) override this to cut a query
        to that window, so that a long query costs what a short one does; the text returned
        must be a prefix of ``text``, and ``text`` itself when nothing is left out.
        """
        return text[:max_chars]

    def _fit_query_batch(self, texts: list[str], max_chars: int) -> list[str]:
        """:meth:`_fit_query` of each text (an encoder may check them all at once)."""
        return [self._fit_query(text, max_chars) for text in texts]

    def _fit_queries(self, texts: list[str], max_chars: int) -> list[str]:
        """:meth:`_fit_query` each text; one :class:`TruncatedTextWarning` for those cut."""
        fitted: list[str] = []
        cut: list[tuple[int, int, int]] = []
        kept_all = self._fit_query_batch(texts, max_chars)
        for i, (text, kept) in enumerate(zip(texts, kept_all, strict=True)):
            if len(kept) < len(text) and text[len(kept) :].strip():
                cut.append((i, len(text), len(kept)))
            fitted.append(kept if kept.strip() else text[:max_chars])
        if cut:
            warnings.warn(TruncatedTextWarning(self.name, cut), stacklevel=4)
        return fitted

    def _encode(
        self,
        items: list[Any],
        modality: Modality,
        role: Role,
        batch_size: int | None,
        show_progress_bar: bool | None,
        *,
        skip: bool = False,
    ) -> FloatMatrix:
        if modality not in self.modalities:
            raise UnsupportedModalityError(
                f"encoder {self.name!r} embeds {', '.join(sorted(self.modalities))}, not {modality}"
            )
        dim = self.dim
        if not items:
            return np.zeros((0, dim), dtype=np.float32)
        size = positive_int(batch_size or self.batch_size, "batch_size", numpy=True)
        order = self._order(items, modality)
        out = np.zeros((len(items), dim), dtype=np.float32)
        starts = range(0, len(items), size)
        show = self.show_progress_bar if show_progress_bar is None else show_progress_bar
        # Default: a bar for more than one batch, on a terminal only (tqdm's disable=None).
        disable = (True if len(starts) < 2 else None) if show is None else not show
        bar = tqdm(starts, desc=f"{self.name} {modality}", unit="batch", disable=disable)
        skipped: list[Skipped] | None = [] if skip else None
        for start in bar:
            index, batch_items = self._prepare_batch(
                items, order[start : start + size], modality, skipped
            )
            if not index:
                continue
            raw = self._encode_batch(batch_items, modality, role)
            try:
                batch = as_matrix(raw, dim=dim, what=f"{self.name} {modality} embeddings")
            except NonFiniteVectorError:
                raise
            except InvalidInputError as exc:
                raise PluginError(f"encoder {self.name!r} returned bad output: {exc}") from exc
            if batch.shape[0] != len(index):
                raise PluginError(
                    f"encoder {self.name!r} returned {batch.shape[0]} vectors "
                    f"for {len(index)} inputs"
                )
            out[index] = batch
        self._warn_skipped(modality, skipped, stacklevel=4)
        return l2_normalize(out)

    def _order(self, items: list[Any], modality: Modality) -> list[int]:
        """The order in which ``items`` are batched: longest first, so that similar lengths
        share a batch (less padding) and memory peaks early."""
        return sorted(range(len(items)), key=lambda i: -self._length(items[i], modality))

    def _prepare_batch(
        self,
        items: list[Any],
        indices: Sequence[int],
        modality: Modality,
        skipped: list[Skipped] | None,
    ) -> tuple[list[int], list[Any]]:
        """:meth:`_prepare` ``items[i]`` for each of ``indices``: the indices kept and the results.

        An input's own error (invalid, undecodable, missing) is raised naming the input, or, when
        ``skipped`` is a list, recorded there and the input left out.
        """
        kept: list[int] = []
        prepared: list[Any] = []
        for i in indices:
            item = items[i]
            try:
                if modality == "audio" and isinstance(item, str) and not Path(item).is_file():
                    raise MissingFileError(f"no such file: {item}")
                prepared.append(self._prepare(item, modality))
            except (InvalidInputError, MissingFileError) as exc:
                if skipped is None:
                    raise type(exc)(f"{_describe(item, modality, i)}: {exc}") from exc
                skipped.append((i, item, exc))
                continue
            kept.append(i)
        return kept, prepared

    def _warn_skipped(
        self, modality: Modality, skipped: list[Skipped] | None, *, stacklevel: int
    ) -> None:
        """One :class:`SkippedInputWarning` for all skipped inputs, in input order."""
        if skipped:
            skipped.sort(key=lambda failure: failure[0])
            warnings.warn(
                SkippedInputWarning(self.name, modality, skipped), stacklevel=stacklevel + 1
            )

    @staticmethod
    def _length(item: Any, modality: Modality) -> int:
        if modality == "text":
            return len(item)
        if isinstance(item, Waveform):
            return int(item.samples.shape[-1])
        try:
            return Path(item).stat().st_size  # a file's size stands in for its duration
        except OSError:
            return 0  # missing: reported when its batch is prepared

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise InvalidInputError("expected a list of strings, got one string; wrap it: [text]")
        items = list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InvalidInputError(f"text {i} is a {type(text).__name__}, not a str")
            if not text.strip():
                raise EmptyQueryError(f"text {i} is empty")
        return items

    @staticmethod
    def _check_audio(audio: Sequence[AudioInput]) -> list[str | Waveform]:
        single: object = audio
        if isinstance(single, (str, os.PathLike, Waveform)):
            raise InvalidInputError("expected a list of audio inputs, got one; wrap it: [audio]")
        items: list[str | Waveform] = []
        for i, given in enumerate(audio):
            item: object = given
            if isinstance(item, (str, os.PathLike)):
                items.append(os.fspath(item))
                continue
            if isinstance(item, tuple) and len(item) == 2:
                item = Waveform(np.asarray(item[0]), item[1])
            if not isinstance(item, Waveform):
                hint = " (give its sample rate: (samples, rate))" if hasattr(item, "shape") else ""
                raise InvalidInputError(
                    f"audio {i} is a {type(item).__name__}: expected a path, a Waveform or a "
                    f"(samples, sample_rate) pair{hint}"
                )
            items.append(_check_waveform(item, i))
        return items


def _describe(item: Any, modality: Modality, i: int) -> str:
    return (
        f"{modality} {i} ({item})"
        if isinstance(item, str) and modality == "audio"
        else f"{modality} {i}"
    )


def _check_waveform(wave: Waveform, i: int) -> Waveform:
    samples = np.asarray(wave.samples)
    rate = positive_int(wave.sample_rate, f"audio {i}: sample rate", numpy=True)
    if not np.issubdtype(samples.dtype, np.floating):
        raise InvalidInputError(
            f"audio {i}: samples must be floating point in [-1, 1], got dtype {samples.dtype}"
        )
    if samples.ndim not in (1, 2) or samples.shape[-1] == 0:
        raise InvalidInputError(
            f"audio {i}: samples must have shape (n,) or (channels, n) with n > 0, "
            f"got {samples.shape}"
        )
    if not np.isfinite(samples).all():
        raise InvalidInputError(f"audio {i}: samples contain NaN or infinity")
    return Waveform(samples, rate)
