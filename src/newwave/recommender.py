"""The Recommender: a library of tracks, one channel per (field, encoder), natural-language search.

A small front over a :class:`~newwave.store.library.Library` (the SQLite store, the writer lock,
the channels' saved indexes), the :mod:`~newwave.search.channels` that embed, index and search,
and the :mod:`~newwave.search.searcher` that fuses their rankings into hits.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from newwave.config import ComponentConfig, FieldConfig, RecommenderConfig
from newwave.encoders.base import Encoder
from newwave.encoders.shared import share_backbones
from newwave.errors import (
    EmptyQueryError,
    IndexCorruptError,
    InvalidInputError,
    MissingFileError,
    NoAudioFieldError,
    TruncatedTextWarning,
    UnknownTrackError,
)
from newwave.fields import (
    FUNCTION_SOURCE,
    Field,
    FieldEncoder,
    Source,
    as_fields,
    channel_name,
)
from newwave.fusion.base import EmbeddingFuser, Fuser
from newwave.lexical.base import LexicalIndex
from newwave.plugins import load_field_encoder, load_fuser, load_rewriter
from newwave.query.base import ParsedQuery, QueryRewriter
from newwave.search import collaborative
from newwave.search.channels import (
    JOINT,
    Channel,
    DenseChannel,
    JointChannel,
    LexicalChannel,
    Queries,
    Query,
)
from newwave.search.defaults import LEXICAL_WEIGHT, FieldSpec, default_fields
from newwave.search.names import named_filter
from newwave.search.personal import Feedback
from newwave.search.searcher import (
    check_k_and_depth,
    demote_unwanted,
    fused_hits,
    fused_hits_many,
    joint_hits,
)
from newwave.search.windows import WindowChannel
from newwave.store.database import Changes
from newwave.store.library import Library
from newwave.types import AudioInput, FloatMatrix, Hit, Hits, Ranking, Track

__all__ = ["Recommender"]

_FUSER = "fuser"  # an EmbeddingFuser's files, beside the database
#: A query is cut to this many characters before it is read: more than any built-in encoder
#: embeds (MiniLM: 8 windows of 256 tokens, about 7,000 characters), and reading a million
#: characters with the rewriter took 5 s.
MAX_QUERY_CHARS = 20_000

logger = logging.getLogger(__name__)


class Recommender:
    """Search a music catalogue with natural language, across text and audio fields.

    ``fields`` maps a field name to what embeds it: an encoder name or instance (``"minilm"``),
    a list of them for a *hybrid* field whose rankings are fused (``["bm25", "minilm"]``), or a
    :class:`~newwave.Field` with its own source (a metadata key or a function of a track). A
    field's name is its source by default: a :class:`Track` attribute (``description``,
    ``tags``, ``lyrics``, ``title``, ``artist``, ``album``, ``audio``). Left out, the fields are
    chosen at the first :meth:`add` from the text the tracks carry (``description`` and
    ``lyrics`` with ``minilm``, ``tags`` with ``["bm25", "minilm-music"]``) and their
    ``audio`` (with ``clap`` when its weights load; otherwise a warning says why audio is left
    out); see :attr:`config` for what was chosen. Each field's encoder has its own index (a
    *channel*); a query is embedded once by each encoder and the per-channel rankings are
    combined by ``fuser`` (default ``weighted``, the lexical channel of a hybrid field weighing
    as much as the dense one).

    ``rewriter`` (default ``"rules"``, see :mod:`newwave.query`) reads the query first: the
    encoders embed its cleaned text (request boilerplate and negated phrases removed), and a
    track whose description or tags express something the query rules out ("no vocals") has
    its fused score halved. ``None`` embeds queries as they are.

    A new Recommender lives in memory; :meth:`save` writes it to a library directory, and
    :meth:`load` opens one *live*: every :meth:`add` and :meth:`remove` is then a transaction
    committed to the directory at once, other processes may search it meanwhile, and they see
    the change at their next search (docs/architecture.md, "The library directory").
    """

    def __init__(
        self,
        fields: Mapping[str, FieldSpec] | None = None,
        *,
        fuser: str | Fuser | None = None,
        retriever: str = "faiss",
        retriever_options: Mapping[str, Any] | None = None,
        rewriter: str | QueryRewriter | None = "rules",
    ):
        self._default_fuser = fuser is None
        self._fuser = fuser if isinstance(fuser, Fuser) else load_fuser(fuser or "weighted")
        self._rewriter = load_rewriter(rewriter) if isinstance(rewriter, str) else rewriter
        if self._rewriter is not None and not isinstance(self._rewriter, QueryRewriter):
            raise InvalidInputError(
                f"rewriter must be a name, a QueryRewriter or None, got {type(rewriter).__name__}"
            )
        self._rewriter_fitted_at = -1  # the library transaction the rewriter was fitted at
        self._retriever = ComponentConfig(name=retriever, options=dict(retriever_options or {}))
        self._library = Library.in_memory()
        self._channels: dict[str, Channel] = {}  # by name, the joint channel last
        if fields is not None:
            self._set_fields(fields)

    # -- configuration ----------------------------------------------------------------------------

    def _set_fields(
        self, fields: Mapping[str, FieldSpec], dims: Mapping[str, int] | None = None
    ) -> None:
        """Build the channels of ``fields``; ``dims``: their saved vector widths, if known."""
        dims = dims or {}
        if not fields:
            raise InvalidInputError("fields is empty; e.g. fields={'description': 'minilm'}")
        by_name: dict[str, Encoder | LexicalIndex] = {}
        channels: dict[str, Channel] = {}
        for field_name, spec in as_fields(fields).items():
            if not isinstance(field_name, str) or ":" in field_name or not field_name:
                raise InvalidInputError(f"field name {field_name!r} must be a str without ':'")
            source, modality = spec.resolved_source(field_name), spec.resolved_modality(field_name)
            encoders = spec.encoder_list(field_name)
            for item in encoders:
                encoder = _field_encoder(item, by_name)
                if isinstance(encoder, LexicalIndex) and any(
                    c.component is encoder for c in channels.values()
                ):  # an index holds one field's texts
                    raise InvalidInputError(
                        f"field {field_name!r}: this {encoder.name!r} index already serves "
                        "another field; give each field its own (or its name)"
                    )
                if modality not in encoder.modalities:
                    raise InvalidInputError(
                        f"field {field_name!r} holds {modality}, which encoder {encoder.name!r} "
                        f"does not embed (it embeds {', '.join(sorted(encoder.modalities))})"
                    )
                name = channel_name(field_name, encoder.name, hybrid=len(encoders) > 1)
                if name in channels:
                    raise InvalidInputError(f"field {field_name!r} names {encoder.name!r} twice")
                if isinstance(encoder, LexicalIndex):
                    channels[name] = LexicalChannel(name, field_name, source, modality, encoder)
                elif spec.windows:
                    channels[name] = WindowChannel(
                        name, field_name, source, modality, encoder, self._retriever, dims.get(name)
                    )
                else:
                    channels[name] = DenseChannel(
                        name, field_name, source, modality, encoder, self._retriever, dims.get(name)
                    )
        share_backbones(c.component for c in channels.values())  # one model per backbone
        if self._default_fuser:  # see LEXICAL_WEIGHT
            self._fuser = load_fuser(
                "weighted",
                weights={
                    name: LEXICAL_WEIGHT
                    for name, channel in channels.items()
                    if isinstance(channel, LexicalChannel) and name != channel.field
                },
            )
        if isinstance(self._fuser, EmbeddingFuser):
            dense = {n: c for n, c in channels.items() if isinstance(c, DenseChannel)}
            found = {n: c.encoder.dim for n, c in dense.items()}
            for name in self._fuser.fields:
                if found.get(name) != self._fuser.input_dims[name]:
                    raise InvalidInputError(
                        f"the {self._fuser.name!r} fuser combines the fields "
                        f"{self._fuser.input_dims}, which this recommender's embedded fields "
                        f"{found} do not provide"
                    )
            channels[JOINT] = JointChannel(self._fuser, dense, self._retriever)
        self._channels = channels
        self._library.channels = channels

    @property
    def fields(self) -> dict[str, Encoder | LexicalIndex]:
        """The encoder of each channel: ``field``, or ``field:encoder`` in a hybrid field."""
        return {
            name: channel.component
            for name, channel in self._channels.items()
            if isinstance(channel, (DenseChannel, LexicalChannel))
        }

    @property
    def field_counts(self) -> dict[str, int]:
        """How many tracks each channel indexes (tracks without a value are not in a field)."""
        counts = self._library.store.channel_counts()
        return {name: counts.get(name, 0) for name in self.fields}

    @property
    def fuser(self) -> Fuser:
        """The fuser that combines the per-channel rankings."""
        return self._fuser

    @property
    def rewriter(self) -> QueryRewriter | None:
        """The query rewriter, or None."""
        return self._rewriter

    @property
    def directory(self) -> Path | None:
        """The library directory this recommender writes to; None while it lives in memory."""
        return self._library.root

    @property
    def config(self) -> RecommenderConfig:
        """What this recommender is made of, as saved with it."""
        fields = {}
        for name, channel in self._channels.items():
            if isinstance(channel, JointChannel):
                continue
            component = channel.component
            assert isinstance(component, (Encoder, LexicalIndex))
            dim = channel.known_dim if isinstance(channel, DenseChannel) else None
            fields[name] = FieldConfig(
                encoder=ComponentConfig(name=component.name, options=component.get_config()),
                field=None if channel.field == name else channel.field,
                source=None if channel.saved_source == channel.field else channel.saved_source,
                modality=channel.modality,
                model_id=component.model_id,
                dim=dim,
                windows=isinstance(channel, WindowChannel),
            )
        # An embedding fuser's weights are saved with the recommender, not referred to by path.
        fuser_options = {} if isinstance(self._fuser, EmbeddingFuser) else self._fuser.get_config()
        return RecommenderConfig(
            fields=fields,
            fuser=ComponentConfig(name=self._fuser.name, options=fuser_options),
            retriever=self._retriever,
            rewriter=None
            if self._rewriter is None
            else ComponentConfig(name=self._rewriter.name, options=self._rewriter.get_config()),
        )

    @property
    def saved_config(self) -> RecommenderConfig:
        """The config as the library holds it (with the versions that wrote it); :attr:`config`
        before anything was saved."""
        text = self._library.store.meta("config")
        return self.config if text is None else _parse_config(text, self._library)

    # -- the catalogue ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._library.store.count()

    def __contains__(self, track_id: object) -> bool:
        return isinstance(track_id, str) and bool(self._library.store.labels([track_id]))

    def get(self, track_id: str) -> Track:
        """The track with id ``track_id``."""
        return self._library.store.get(track_id)

    def ids(self) -> list[str]:
        """The ids of the tracks, in the order they were first added."""
        return self._library.store.ids()

    def vectors(self, channel: str, ids: Sequence[str]) -> FloatMatrix:
        """The stored vectors of ``ids`` in an embedded channel; zero rows for tracks without it."""
        found = self._channels.get(channel)
        if found is None or isinstance(found, JointChannel):
            raise InvalidInputError(f"no channel {channel!r}; channels: {', '.join(self.fields)}")
        if not isinstance(found, DenseChannel):
            raise InvalidInputError(f"channel {channel!r} is a lexical index: it has no vectors")
        labels = self._library.store.labels(ids)
        unknown = [i for i in ids if i not in labels]
        if unknown:
            raise UnknownTrackError(f"no track with id {unknown[0]!r}")
        return self._library.store.vectors(channel, [labels[i] for i in ids], found.dim)

    def add(
        self,
        tracks: Iterable[Track],
        *,
        vectors: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> dict[str, int]:
        """Embed and index ``tracks``; a track whose id is already present is replaced.

        Returns how many values were embedded in each channel (0 for unchanged content).
        ``vectors`` gives precomputed vectors for some channels, one row per track (computed
        elsewhere with the channel's own encoder, e.g. on a cluster); those are stored as given.
        ``remove`` names tracks to remove in the same transaction (an unknown id, or one of
        ``tracks``, is an error), e.g. those whose files vanished from a scanned folder.

        Everything is embedded before anything is written, and then written in one transaction:
        an error (a missing audio file, an unreachable model) leaves the library as it was. A
        field whose content is unchanged (same text, or the same audio file path, size and
        modification time, with the same model) is not embedded again.
        """
        batch = _check_tracks(tracks)
        gone = _check_removed(remove, batch)
        unknown = set(gone).difference(self._library.store.labels(gone))
        if unknown:  # before anything is embedded; checked again in the transaction
            raise UnknownTrackError(f"no track with id {min(unknown)!r} to remove")
        if not batch:
            if gone:
                self.remove(gone)
            return dict.fromkeys(self.fields, 0)
        if not self._channels:
            self._set_fields(default_fields(batch))
            logger.info("newwave: indexing fields %s", self.config.fields)
        given = self._check_vectors(vectors, len(batch))
        channels = [c for c in self._channels.values() if not isinstance(c, JointChannel)]
        values = {c.name: [c.value(t) for t in batch] for c in channels}
        empty = [t.id for row, t in enumerate(batch) if not any(v[row] for v in values.values())]
        if empty:
            raise InvalidInputError(
                f"{len(empty)} track(s) have none of the fields "
                f"{', '.join(dict.fromkeys(c.field for c in channels))} and "
                f"could never be found: {', '.join(map(repr, empty[:5]))}"
            )
        store = self._library.store
        self._library.check_writable()  # before the embedding, which can take long
        # Embed what changed (by content hash) in every channel before writing anything ...
        embedded = {c.name: self._embed_changed(c, batch, values[c.name], given) for c in channels}
        with self._library.locked():
            # ... and, under the lock, what another writer changed meanwhile.
            for channel in channels:
                done = embedded[channel.name]
                done.update(self._embed_changed(channel, batch, values[channel.name], given, done))
            with store.transaction() as seq:
                removed = self._delete(gone)
                labels = store.put_tracks(batch)
                written: dict[str, Changes] = {}
                for channel in channels:
                    written[channel.name] = self._write(channel, batch, labels, embedded, values)
                joint = self._channels.get(JOINT)
                if isinstance(joint, JointChannel):
                    touched = sorted(
                        {int(label) for c in written.values() for label in c.labels}
                        | {int(label) for c in written.values() for label in c.removed_labels}
                    )
                    fused = joint.fuse(store, touched)
                    joint.put(store, touched, [""] * len(touched), fused)
                    ids = store.ids_of(touched)
                    written[JOINT] = Changes(
                        np.array(touched, dtype=np.int64),
                        [ids[label] for label in touched],
                        fused,
                        None,
                        np.zeros(0, dtype=np.int64),
                        [],
                    )
                store.set_meta("config", self.config.model_dump_json())
            if removed:
                written = {
                    name: _with_removed(written.get(name), removed) for name in self._channels
                }
            self._apply(written, seq)
            self._library.after_write()
        return {name: len(found) for name, found in embedded.items()}

    def _check_vectors(
        self, vectors: Mapping[str, Any] | None, rows: int
    ) -> dict[str, FloatMatrix]:
        from newwave._vectors import as_matrix

        checked: dict[str, FloatMatrix] = {}
        for name, matrix in (vectors or {}).items():
            channel = self._channels.get(name)
            if not isinstance(channel, DenseChannel):
                dense = [n for n, c in self._channels.items() if isinstance(c, DenseChannel)]
                raise InvalidInputError(
                    f"vectors= names {name!r}, which is not an embedded channel; channels: "
                    f"{', '.join(dense)}"
                )
            if isinstance(channel, WindowChannel):
                raise InvalidInputError(
                    f"vectors= names {name!r}, a windowed channel: its window vectors are "
                    "computed by its encoder, not given"
                )
            checked[name] = as_matrix(matrix, dim=channel.dim, what=f"vectors[{name!r}]")
            if checked[name].shape[0] != rows:
                raise InvalidInputError(
                    f"vectors[{name!r}] has {checked[name].shape[0]} rows for {rows} tracks"
                )
        return checked

    def _embed_changed(
        self,
        channel: Channel,
        batch: list[Track],
        values: list[str | None],
        given: Mapping[str, FloatMatrix],
        done: Mapping[str, Any] | None = None,
    ) -> dict[str, tuple[str, Any]]:
        """By track id: the content hash and embedding of each value the store lacks (but those
        of ``done``)."""
        store = self._library.store
        labels = store.labels([t.id for t in batch])
        known = store.hashes(channel.name, list(labels.values()))
        rows, digests = [], []
        for row, (track, value) in enumerate(zip(batch, values, strict=True)):
            if value is None or (done is not None and track.id in done):
                continue
            digest = channel.content_hash(value)
            label = labels.get(track.id)
            if label is None or known.get(label) != digest:
                rows.append(row)
                digests.append(digest)
        if not rows:
            return {}
        if channel.name in given:
            payload: Any = given[channel.name][rows]
        else:
            try:
                payload = channel.embed([str(values[row]) for row in rows])
            except InvalidInputError as exc:  # "text 3 ...": say which track and field
                found = re.match(r"text (\d+) ", str(exc))
                if found is None or int(found.group(1)) >= len(rows):
                    raise
                named = batch[rows[int(found.group(1))]].id
                raise type(exc)(f"track {named!r}, field {channel.field!r}: {exc}") from exc
        return {
            batch[row].id: (digest, payload[i])
            for i, (row, digest) in enumerate(zip(rows, digests, strict=True))
        }

    def _write(
        self,
        channel: Channel,
        batch: list[Track],
        labels: Mapping[str, int],
        embedded: Mapping[str, dict[str, tuple[str, Any]]],
        values: Mapping[str, list[str | None]],
    ) -> Changes:
        """Store one channel's new embeddings and drop the values a replaced track lost."""
        store = self._library.store
        found = embedded[channel.name]
        ids = [t.id for t in batch if t.id in found]
        rows = [labels[i] for i in ids]
        emptied = {
            labels[t.id]: t.id
            for t, value in zip(batch, values[channel.name], strict=True)
            if value is None
        }
        emptied = {label: i for label, i in emptied.items() if store.hashes(channel.name, [label])}
        if emptied:  # a replaced track lost this field
            store.delete_entries(channel.name, emptied)
        vectors = texts = windows = None
        if ids:
            payloads = [found[i][1] for i in ids]
            if isinstance(channel, LexicalChannel):
                texts = [str(p) for p in payloads]
                channel.put(store, rows, [found[i][0] for i in ids], texts)
            elif isinstance(channel, WindowChannel):  # many vectors per track
                windows = payloads
                channel.put(store, rows, [found[i][0] for i in ids], windows)
            else:
                vectors = np.stack(payloads).astype(np.float32)
                channel.put(store, rows, [found[i][0] for i in ids], vectors)
        return Changes(
            np.array(rows, dtype=np.int64),
            ids,
            vectors,
            texts,
            np.array(list(emptied), dtype=np.int64),
            list(emptied.values()),
            windows=windows,
        )

    def _apply(self, written: Mapping[str, Changes], seq: int) -> None:
        """Bring the in-memory indexes to transaction ``seq``, which wrote ``written``."""
        store = self._library.store
        for name, channel in self._channels.items():
            changes = written.get(name)
            try:
                if changes is not None:
                    channel.apply(changes)
            except BaseException:
                channel.reset()  # rebuilt from the store at the next use
                raise
            channel.seq, channel.count = seq, store.channel_count(name)

    def remove(self, ids: Iterable[str]) -> None:
        """Remove tracks by id; an unknown id raises :class:`UnknownTrackError`."""
        id_list = [ids] if isinstance(ids, str) else list(ids)
        store = self._library.store
        with self._library.locked():
            with store.transaction() as seq:
                removed = self._delete(id_list)
            changes = _with_removed(None, removed)
            self._apply(dict.fromkeys(self._channels, changes), seq)
            self._library.after_write()

    def _delete(self, ids: Sequence[str]) -> dict[int, str]:
        """Delete the tracks ``ids`` in the open transaction; their labels (label -> id)."""
        store = self._library.store
        labels = store.labels(ids)
        missing = [i for i in ids if i not in labels]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UnknownTrackError(f"no track with id {missing[0]!r}{more}")
        removed = {labels[i]: i for i in dict.fromkeys(ids)}
        if removed:
            for channel in self._channels.values():
                store.delete_entries(channel.name, removed)
            store.delete_tracks(list(removed))
        return removed

    # -- search -----------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        depth: int | None = None,
        where: Mapping[str, Any] | None = None,
        rewrite: bool = True,
        user: str | Sequence[Feedback] | None = None,
        like: Sequence[str] | None = None,
        dislike: Sequence[str] | None = None,
        diversity: float = 0.0,
    ) -> Hits:
        """The ``k`` tracks that best match ``query``, best first.

        Each channel's index returns its ``depth`` best tracks (default ``max(4 * k, 50)``)
        and the fuser combines them; ``Hit.scores`` has each channel's score (cosine similarity,
        or BM25 for a lexical index) for the channels whose candidates included the track.
        ``where`` keeps only the tracks whose metadata match (see :mod:`newwave.filters`); the
        search is then exact among them. With a rewriter (and ``rewrite``), the encoders embed
        the rewritten query and tracks expressing an unwanted attribute rank last among the
        ``depth`` candidates; ``hits.query`` says what was understood.

        Personal search (docs/personalisation.md): ``user`` (an id whose stored
        :meth:`feedback` is used, or a list of :class:`~newwave.search.personal.Feedback`)
        re-ranks the ``depth`` candidates by relevance plus a bounded taste term
        (``Hit.scores["taste"]``), plus a collaborative term (``Hit.scores["collaborative"]``)
        once :meth:`fit_collaborative` has factors for the user; ``like``/``dislike`` (track
        ids) refine the query per channel (Rocchio); ``diversity`` in [0, 1] spreads the hits (MMR).
        """
        if not (user is not None or like or dislike or diversity):
            return self._search_many([query], k, depth, where, rewrite)[0]
        from newwave.search.personal import check_diversity, personal_search

        query = _check_query(query, stacklevel=3)
        depth = check_k_and_depth(k, depth)
        self._library.refresh()
        parsed = self._rewrite(query) if rewrite else None
        among = self._matching(named_filter(parsed, where))
        self._check_personal()
        found_hits = personal_search(
            self._library.store,
            self._channels,
            self._fuser,
            Query(query if parsed is None else parsed.text),
            parsed,
            k=k,
            depth=depth,
            among=among,
            events=None if user is None else self._events(user),
            like=like,
            dislike=dislike,
            diversity=check_diversity(diversity),
            collaborative=self._collaborative(user),
        )
        return Hits(found_hits, query=parsed)

    def search_many(
        self,
        queries: Sequence[str],
        *,
        k: int = 10,
        depth: int | None = None,
        where: Mapping[str, Any] | None = None,
        rewrite: bool = True,
    ) -> list[Hits]:
        """:meth:`search` for each of ``queries``, in order: the same hits, found faster.

        Each encoder embeds all the queries in one call (in batches) and each channel's index
        searches them in one call (one per distinct filter, when queries name catalogue
        entities); the store is read once for all of them. Personal search (``user``, ``like``,
        ``dislike``, ``diversity``) takes one query at a time.
        """
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise InvalidInputError(
                f"queries must be a sequence of str, got {type(queries).__name__}"
            )
        return self._search_many(queries, k, depth, where, rewrite)

    def _search_many(
        self,
        queries: Sequence[str],
        k: int,
        depth: int | None,
        where: Mapping[str, Any] | None,
        rewrite: bool,
    ) -> list[Hits]:
        """Search ``queries`` together: one encoder call per encoder, one search per channel
        and filter."""
        at = len(queries) > 1  # name a query's place in the errors of a batch
        texts = [_check_query(q, i if at else None, stacklevel=4) for i, q in enumerate(queries)]
        depth = check_k_and_depth(k, depth)
        if not texts:
            return []
        self._library.refresh()
        parsed = [self._rewrite(text) if rewrite else None for text in texts]
        # Demoting unwanted tracks re-ranks all ``depth`` candidates; otherwise ``k`` suffice.
        kept = [depth if p is not None and p.unwanted else k for p in parsed]
        embedded = Queries([t if p is None else p.text for t, p in zip(texts, parsed, strict=True)])
        # Queries naming catalogue entities ("songs by X") add a filter of their own.
        filters = [named_filter(p, where) for p in parsed]
        groups: dict[str, list[int]] = {}
        for row, found_filter in enumerate(filters):
            key = json.dumps(found_filter, sort_keys=True, default=str)
            groups.setdefault(key, []).append(row)
        store = self._library.store
        joint = self._channels.get(JOINT)
        hits: list[list[Hit]] = [[] for _ in texts]
        rankings: list[dict[str, Ranking]] = [{} for _ in texts]
        for rows in groups.values():
            among = self._matching(filters[rows[0]])
            group = embedded if len(rows) == len(texts) else embedded.take(rows)
            if isinstance(joint, JointChannel):
                for cut in {kept[row] for row in rows}:  # the joint index returns ``kept``
                    at_cut = [i for i, row in enumerate(rows) if kept[row] == cut]
                    some = group.take(at_cut)
                    vectors = joint.query_vectors(some)
                    found = joint.search_many(store, some, cut, among)
                    for j, (i, ranking) in enumerate(zip(at_cut, found, strict=True)):
                        own = {name: v[j : j + 1] for name, v in vectors.items()}
                        hits[rows[i]] = joint_hits(store, joint, ranking, own)
                continue
            for name, channel in self._channels.items():
                if channel.count and channel.takes(group):
                    found = channel.search_many(store, group, depth, among)
                    for row, ranking in zip(rows, found, strict=True):
                        rankings[row][name] = ranking
        if not isinstance(joint, JointChannel):
            hits = fused_hits_many(store, self._fuser, rankings, kept)
        found_hits = []
        for each, p in zip(hits, parsed, strict=True):
            if p is not None and p.unwanted:
                each = demote_unwanted(each, p)
            found_hits.append(Hits(each[:k], query=p))
        return found_hits

    def _rewrite(self, query: str) -> ParsedQuery | None:
        """The rewriter's reading of ``query``, fitted to the catalogue's tags first if stale."""
        if self._rewriter is None:
            return None
        store = self._library.store
        if self._rewriter_fitted_at != store.seq:
            from newwave.search.fitted_rewriter import fit_rewriter

            self._rewriter_fitted_at = fit_rewriter(self._rewriter, self._library)
            if self._rewriter.reads_names:
                from newwave.search.names import catalogue_names

                self._rewriter.fit_names(catalogue_names(self._library))
        return self._rewriter.rewrite(query)

    def similar(
        self,
        track_id: str,
        *,
        k: int = 10,
        depth: int | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> Hits:
        """The ``k`` tracks most like the track ``track_id`` ("more like this"), best first.

        Each channel the track has is searched with the track's own vector (or, in a lexical
        index, its own text), and the per-channel rankings are fused as in :meth:`search`; the
        track itself is left out.
        """
        store = self._library.store
        store.get(track_id)  # UnknownTrackError
        depth = check_k_and_depth(k, depth)
        self._library.refresh()
        among = self._matching(where)
        label = store.labels([track_id])[track_id]
        joint = self._channels.get(JOINT)
        if isinstance(joint, JointChannel):
            found = joint.similar(store, label, track_id, k, among) or Ranking()
            own = {
                name: store.vectors(name, [label], joint.fuser.input_dims[name])
                for name in joint.fuser.fields
            }
            present = {n: v for n, v in own.items() if v.any()}
            return Hits(joint_hits(store, joint, found, present))
        rankings = {}
        for name, channel in self._channels.items():
            ranking = channel.similar(store, label, track_id, depth, among)
            if ranking is not None:
                rankings[name] = ranking
        return Hits(fused_hits(store, self._fuser, rankings, k))

    def search_audio(
        self,
        audio: AudioInput,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        depth: int | None = None,
    ) -> Hits:
        """The ``k`` tracks that sound most like ``audio`` (query by example), best first.

        ``audio`` is a file path, a ``(samples, sample_rate)`` pair or a
        :class:`~newwave.types.Waveform`, e.g. a snippet a listener recorded, or a file that is
        not in the library ("more like this file"). The clip is embedded once by the encoder of
        each channel of an audio field, each of those channels returns its ``depth`` best
        tracks, and the fuser combines them as in :meth:`search`; text and lexical channels
        take no part. ``where`` filters as in :meth:`search`.

        A recommender without an audio field raises :class:`~newwave.errors.NoAudioFieldError`;
        a missing file :class:`~newwave.errors.MissingFileError`, one that is not audio
        :class:`~newwave.errors.AudioDecodeError`.
        """
        from newwave.search.searcher import audio_query

        depth = check_k_and_depth(k, depth)
        query = audio_query(audio)
        if isinstance(self._channels.get(JOINT), JointChannel):
            raise InvalidInputError(
                f"the {self._fuser.name!r} fuser searches one joint index of text queries; "
                "search by audio needs per-channel rankings (a score fuser)"
            )
        channels = {n: c for n, c in self._channels.items() if c.takes(query)}
        if not channels:
            fields = ", ".join(f"{n} ({c.modality})" for n, c in self._channels.items())
            raise NoAudioFieldError(
                f"this recommender has no audio field to compare a clip with (fields: "
                f"{fields or 'none yet'}); index one, e.g. fields={{'audio': 'musicnn'}}"
            )
        self._library.refresh()
        among = self._matching(where)
        store = self._library.store
        rankings = {
            name: channel.search(store, query, depth, among)
            for name, channel in channels.items()
            if channel.count
        }
        return Hits(fused_hits(store, self._fuser, rankings, k))

    # -- feedback and personal search -------------------------------------------------------------

    def feedback(
        self,
        user: str,
        track_id: str,
        event: str,
        *,
        at: object = None,
        weight: float | None = None,
        seconds: float | None = None,
    ) -> Feedback:
        """Record that ``user`` gave ``event`` (``like``, ``dislike``, ``skip``, or ``play``
        with the ``seconds`` played) on track ``track_id``; stored in the library at once.

        ``at`` (Unix seconds, a datetime or ISO 8601 text) defaults to now; ``weight`` replaces
        the event's default magnitude (docs/personalisation.md).
        """
        event_ = Feedback.checked(user, track_id, event, at=at, seconds=seconds, weight=weight)
        self.add_feedback([event_])
        return event_

    def add_feedback(self, events: Iterable[Feedback]) -> int:
        """Record many events in one transaction (e.g. :func:`~newwave.search.personal.
        read_interactions` of a log); every track must be in the library. How many."""
        batch = list(events)
        for item in batch:
            if not isinstance(item, Feedback):
                raise InvalidInputError(f"expected Feedback events, got {type(item).__name__}")
        store = self._library.store
        with self._library.locked(refresh=False):
            known = store.labels(list({e.track for e in batch}))
            unknown = [e.track for e in batch if e.track not in known]
            if unknown:
                raise UnknownTrackError(f"feedback on an unknown track: {unknown[0]!r}")
            with store.transaction(catalogue=False):
                store.add_feedback([e.row() for e in batch])
            store.checkpoint_wal()
        return len(batch)

    def feedback_events(self, user: str) -> list[Feedback]:
        """``user``'s feedback events, oldest first."""
        from newwave.search.personal import from_row

        return [from_row(row) for row in self._library.store.feedback(user)]

    def feedback_users(self) -> dict[str, int]:
        """Every user with feedback, with their number of events."""
        return self._library.store.feedback_users()

    def export_feedback(self, path: str | os.PathLike[str], user: str | None = None) -> int:
        """Write the feedback of ``user`` (default: every user) as an interaction log
        (CSV, or JSON lines for ``.jsonl``; docs/personalisation.md). How many events."""
        from newwave.search.personal import write_interactions

        users = list(self.feedback_users()) if user is None else [user]
        return write_interactions(path, [e for u in users for e in self.feedback_events(u)])

    def forget(self, user: str) -> int:
        """Remove everything about ``user`` from the library: their feedback is deleted, its
        space zeroed, the database rewritten (VACUUM) and the write-ahead log emptied.
        How many events were deleted."""
        if not isinstance(user, str) or not user:
            raise InvalidInputError(f"user must be a non-empty str, got {user!r}")
        store = self._library.store
        with self._library.locked(refresh=False):
            with store.transaction(catalogue=False):
                deleted = store.forget_feedback(user)
            store.vacuum()
            collaborative.forget(store, self._library.root, user)
        return deleted

    def fit_collaborative(
        self,
        *,
        factors: int = collaborative.FACTORS,
        iterations: int = collaborative.ITERATIONS,
        regularization: float = collaborative.REGULARIZATION,
    ) -> collaborative.Factors:
        """Fit ALS factors of every user's positive feedback (the ``implicit`` extra) and store
        them in the library: personal searches then add a collaborative term for the users and
        tracks they cover, until refitted or stale (docs/personalisation.md)."""
        with self._library.locked(refresh=False):
            return collaborative.fit(
                self._library.store,
                self._library.root,
                factors=factors,
                iterations=iterations,
                regularization=regularization,
            )

    def _collaborative(
        self, user: str | Sequence[Feedback] | None
    ) -> Callable[[Sequence[str]], np.ndarray] | None:
        """The collaborative scorer of a stored ``user`` with fitted factors, else None."""
        if not isinstance(user, str):
            return None
        factors = collaborative.load(self._library.store, self._library.root)
        return None if factors is None else factors.scorer(user)

    def recommend(
        self,
        user: str | Sequence[Feedback],
        *,
        k: int = 10,
        depth: int | None = None,
        where: Mapping[str, Any] | None = None,
        diversity: float = 0.0,
    ) -> Hits:
        """The ``k`` tracks closest to ``user``'s taste, with no query ("play me something").

        Each embedded channel is searched with the user's taste vector (``depth`` candidates);
        tracks the user's feedback is net negative about are left out; ``Hit.scores["taste"]``
        is the score. ``diversity`` in [0, 1] spreads the hits (MMR).
        """
        from newwave.search.personal import check_diversity, recommend

        depth = check_k_and_depth(k, depth)
        self._check_personal()
        self._library.refresh()
        events = self._events(user)
        if not events:
            raise InvalidInputError(f"no feedback from user {user!r} yet; use search() instead")
        hits = recommend(
            self._library.store,
            self._channels,
            events,
            k=k,
            depth=depth,
            among=self._matching(where),
            diversity=check_diversity(diversity),
        )
        return Hits(hits)

    def _events(self, user: str | Sequence[Feedback]) -> list[Feedback]:
        from newwave.search.personal import TASTE_WINDOW, from_row

        if isinstance(user, str):
            if not user:
                raise InvalidInputError("user must be a non-empty str")
            return [from_row(r) for r in self._library.store.feedback(user, limit=TASTE_WINDOW)]
        events = list(user)
        if not all(isinstance(e, Feedback) for e in events):
            raise InvalidInputError("user must be a user id or a list of Feedback events")
        return events

    def _check_personal(self) -> None:
        if isinstance(self._channels.get(JOINT), JointChannel):
            raise InvalidInputError(
                f"personal search and refinement need per-channel rankings; the "
                f"{self._fuser.name!r} fuser searches one joint index"
            )

    def _matching(self, where: Mapping[str, Any] | None) -> Any:
        """The labels of the tracks ``where`` keeps, or None without a filter."""
        return None if where is None else self._library.store.matching(where)

    # -- persistence ------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], *, replace: bool = True) -> Path:
        """Write the library to ``directory``, or, if it is this recommender's own, save the
        indexes that changed since they were last saved (everything else is already there).

        ``directory`` must be new, empty, or a library, which is replaced whole (atomically for
        its readers) unless ``replace=False``: then an existing library is left as it is. A
        recommender in memory stays in memory: :meth:`load` the directory to work on it live.
        """
        target = Path(directory)
        library = self._library
        if library.root is not None and target.resolve() == library.root.resolve():
            with library.locked():
                library.checkpoint(force=True)
                library.store.checkpoint_wal()
            return target
        folders = []
        if isinstance(self._fuser, EmbeddingFuser):
            folders.append((_FUSER, self._fuser.save))
        meta = {"config": self.config.model_dump_json()} if self._channels else {}
        library.export(target, folders, meta=meta, replace=replace)
        return target

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        sources: Mapping[str, Callable[[Track], str | None]] | None = None,
        lock_timeout: float = 60.0,
        open_indexes: bool = True,
    ) -> Recommender:
        """Open the library in ``directory`` live; its encoders load their models lazily.

        ``sources`` gives again the functions of fields computed by a function (functions are
        not saved). Without them the recommender searches, but :meth:`add` raises. A writer
        waits at most ``lock_timeout`` seconds for another process writing the library, then
        raises :class:`~newwave.errors.LibraryLockedError`. A library written by an earlier
        version (format 1) is converted first.
        """
        root = Path(directory)
        if not root.exists():
            raise MissingFileError(f"no such directory: {root}")
        if not root.is_dir():
            raise InvalidInputError(f"{root} is not a directory")
        from newwave.store.migrate import is_format_1, migrate_format_1

        if is_format_1(root):
            migrate_format_1(root, sources=sources, lock_timeout=lock_timeout)
        library = Library.open(root, lock_timeout=lock_timeout)
        text = library.store.meta("config")
        config = RecommenderConfig() if text is None else _parse_config(text, library)
        fuser_files = None
        if library.store.meta(f"files:{_FUSER}") is not None:
            fuser_files = library.verify_files(_FUSER)
        rec = cls._from_config(config, sources, fuser_files=fuser_files)
        rec._library.store.close()
        rec._library = library
        library.channels = rec._channels
        unknown = set(library.store.channel_counts()) - set(rec._channels)
        if unknown:
            raise IndexCorruptError(
                f"{root / 'library.sqlite'} holds channels {sorted(unknown)} that its config "
                "does not name"
            )
        if open_indexes:
            library.open_channels()
        return rec

    @classmethod
    def _from_config(
        cls,
        config: RecommenderConfig,
        sources: Mapping[str, Callable[[Track], str | None]] | None,
        *,
        fuser_files: Path | None,
    ) -> Recommender:
        """A recommender in memory made of what ``config`` names (the registry builds each)."""
        sources = dict(sources or {})
        specs: dict[str, list[FieldEncoder]] = {}
        field_sources: dict[str, tuple[str, Any]] = {}
        shared: dict[str, Encoder] = {}  # fields with the same encoder share one (one model)
        windowed: dict[str, bool] = {}
        for name, saved in config.fields.items():
            key = saved.encoder.model_dump_json()
            encoder = shared.get(key) or load_field_encoder(
                saved.encoder.name, **saved.encoder.options
            )
            if isinstance(encoder, Encoder):
                shared[key] = encoder
            if saved.model_id is not None and encoder.model_id != saved.model_id:
                raise IndexCorruptError(
                    f"field {name!r} was indexed with model {saved.model_id!r}, but its "
                    f"encoder now loads {encoder.model_id!r}"
                )
            field_name = saved.field or name
            specs.setdefault(field_name, []).append(encoder)
            field_sources[field_name] = (saved.source or field_name, saved.modality)
            windowed[field_name] = saved.windows
        functions = {f for f, (s, _) in field_sources.items() if s == FUNCTION_SOURCE}
        unknown = set(sources) - functions
        if unknown:
            raise InvalidInputError(
                f"sources= names {', '.join(sorted(unknown))}, which are not fields computed by "
                "a function in this recommender"
            )
        fields: dict[str, FieldSpec] = {}
        for field_name, encoders in specs.items():
            saved_source, modality = field_sources[field_name]
            source: Source = saved_source
            if saved_source == FUNCTION_SOURCE:
                source = sources.get(field_name, _function_not_given)
            fields[field_name] = Field(
                encoders=encoders, source=source, modality=modality, windows=windowed[field_name]
            )
        if fuser_files is not None:  # an embedding fuser's weights
            fuser = load_fuser(config.fuser.name, fuser_files)
        else:
            fuser = load_fuser(config.fuser.name, **config.fuser.options)
        saved_rewriter = config.rewriter
        rec = cls(
            fuser=fuser,
            retriever=config.retriever.name,
            retriever_options=config.retriever.options,
            rewriter=None
            if saved_rewriter is None
            else load_rewriter(saved_rewriter.name, **saved_rewriter.options),
        )
        if fields:
            dims = {n: f.dim for n, f in config.fields.items() if f.dim is not None}
            rec._set_fields(fields, dims)
        for channel in rec._channels.values():
            if channel.source is _function_not_given:
                channel.source = None
        return rec

    @classmethod
    def repair(
        cls, directory: str | os.PathLike[str], *, lock_timeout: float = 60.0
    ) -> dict[str, int]:
        """Rebuild every index of the library in ``directory`` from its stored vectors and texts.

        Returns how many tracks each channel indexes. The database itself, the source of truth,
        is checked in full; if it is damaged, restore it from a backup.
        """
        rec = cls.load(directory, lock_timeout=lock_timeout, open_indexes=False)
        return rec._library.repair()

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={e.name}" for f, e in self.fields.items())
        fields = fields or "no fields yet"
        return f"Recommender({len(self)} tracks; {fields}; fuser={self._fuser.name})"

    def _repr_html_(self) -> str:
        from newwave.tables import recommender_html

        return recommender_html(self)


def _field_encoder(
    item: FieldEncoder, by_name: dict[str, Encoder | LexicalIndex]
) -> Encoder | LexicalIndex:
    """What a field names: one encoder instance per name, shared by its fields."""
    encoder: object = item
    if isinstance(item, str):
        encoder = by_name.get(item) or load_field_encoder(item)
        if isinstance(encoder, Encoder):
            by_name[item] = encoder
    if not isinstance(encoder, (Encoder, LexicalIndex)):
        raise InvalidInputError(
            f"expected an encoder name, an Encoder or a LexicalIndex, got {type(encoder).__name__}"
        )
    return encoder


def _parse_config(text: str, library: Library) -> RecommenderConfig:
    try:
        return RecommenderConfig.from_json(text)
    except InvalidInputError as exc:
        raise IndexCorruptError(f"{library.root} has an invalid config: {exc}") from exc


def _check_query(query: object, at: int | None = None, *, stacklevel: int) -> str:
    """``query`` checked, cut to :data:`MAX_QUERY_CHARS`; ``at``: its place in a batch."""
    where = "" if at is None else f" (query {at})"
    if not isinstance(query, str):
        raise InvalidInputError(f"query must be a str, got {type(query).__name__}{where}")
    if not query.strip():
        raise EmptyQueryError(f"query is empty{where}")
    if len(query) > MAX_QUERY_CHARS:  # no encoder sees more; the rewriter need not read it
        warnings.warn(
            TruncatedTextWarning("recommender", [(at or 0, len(query), MAX_QUERY_CHARS)]),
            stacklevel=stacklevel,
        )
        query = query[:MAX_QUERY_CHARS]
    return query


def _check_tracks(tracks: Iterable[Track]) -> list[Track]:
    single: object = tracks
    if isinstance(single, Track):
        raise InvalidInputError("add() takes a list of tracks; wrap one track: [track]")
    batch = list(tracks)
    seen: set[str] = set()
    for i, track in enumerate(batch):
        if not isinstance(track, Track):
            raise InvalidInputError(f"item {i} is a {type(track).__name__}, not a Track")
        if track.id in seen:
            raise InvalidInputError(f"track id {track.id!r} appears twice in one add()")
        seen.add(track.id)
    return batch


def _check_removed(ids: Iterable[str], batch: Sequence[Track]) -> list[str]:
    """The ids of ``add(remove=...)``: strings, none of them also added."""
    gone = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
    for track_id in gone:
        if not isinstance(track_id, str):
            raise InvalidInputError(f"remove takes track ids, got {type(track_id).__name__}")
    both = {t.id for t in batch}.intersection(gone)
    if both:
        raise InvalidInputError(f"track {min(both)!r} is both added and removed")
    return gone


def _with_removed(changes: Changes | None, removed: Mapping[int, str]) -> Changes:
    """``changes`` (or none) plus the removal of ``removed`` (label -> id)."""
    gone = np.array(list(removed), dtype=np.int64)
    if changes is None:
        nothing = np.zeros(0, dtype=np.int64)
        return Changes(nothing, [], None, None, gone, list(removed.values()))
    return Changes(
        changes.labels,
        changes.ids,
        changes.vectors,
        changes.texts,
        np.concatenate([changes.removed_labels, gone]),
        [*changes.removed_ids, *removed.values()],
    )


def _function_not_given(track: Track) -> str | None:
    """Stands for a field function that load() was not given again."""
    raise AssertionError("replaced by None in Recommender.load")
