"""The library database: one SQLite file (WAL) that is the source of truth of a library.

Tables::

    meta(key, value)            format, epoch, seq, the RecommenderConfig (JSON), checkpoints
    tracks(label, id, track)    each Track as JSON; ``label`` (never reused) is its row number,
                                which the vector indexes use as its id
    entries(label, channel,     per channel and track: the hash of what was embedded, the
            content_hash, seq,  transaction (``seq``) that last wrote it, and the vector
            vector, text)       (little-endian float32) or, in a lexical channel, the text
    channels(name, count)       how many entries each channel holds
    removals(seq, channel,      what each transaction removed from a channel, so that an index
             label, id)         saved at an earlier ``seq`` can catch up
    track_values(track, key,    the metadata that ``where=`` filters, one row per value
                 kind, text, num)
    windows(channel, label,     in a windowed channel (newwave.search.windows), each track's
            seq, vectors)       window vectors, one after the other (little-endian float32);
                                created when first written
    track_names(track, field,   the artist, title and album names by their lookup key
                name, key)      (newwave.store.names), kept with the tracks; derived data
    feedback(user, track,       listeners' feedback (like, dislike, skip, play), one row per
             event, at, value,  event: ``at`` in Unix seconds, ``value`` the seconds played,
             weight)            ``weight`` the caller's own (see newwave.search.personal);
                                created when missing (libraries written before it)

Every change is a transaction that writes only what changed and increments ``seq``. Vector
indexes are derived data: a channel's index is saved now and then (a *checkpoint*, see
:mod:`newwave.store.checkpoints`) and brought up to date from the rows whose ``seq`` is newer.
Readers never block the writer nor see a half-written state (WAL); one process writes at a time
(:mod:`newwave.store.lock`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from newwave.errors import (
    IndexCorruptError,
    LibraryLockedError,
    StorageError,
    UnknownTrackError,
)
from newwave.filters import add_sql_functions, check_keys, filter_sql, filter_values
from newwave.store.names import (
    FIELDS,
    NAMES_INDEXES,
    NAMES_SCHEMA,
    NAMES_TABLE,
    STYLE_TRACKS,
    add_name_functions,
    key_fingerprint,
    rows_of_values,
)
from newwave.types import FloatMatrix, Track

__all__ = ["DATABASE", "FORMAT", "Changes", "LibraryStore", "Labels"]

DATABASE = "library.sqlite"
#: The library format this version writes and reads (format 1: snapshot directories).
FORMAT = 2
_BLOCK = 50_000  # rows per block when streaming entries
_IN_LIMIT = 30_000  # values per "IN (...)" (SQLite allows 32,766 parameters)

Labels = npt.NDArray[np.int64]

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tracks (
    label INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    track TEXT NOT NULL
);
CREATE TABLE entries (
    label INTEGER NOT NULL,
    channel TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    seq INTEGER NOT NULL,
    vector BLOB,
    text TEXT,
    UNIQUE (label, channel)
);
CREATE INDEX entries_by_seq ON entries (channel, seq);
CREATE TABLE channels (name TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE removals (
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    label INTEGER NOT NULL,
    id TEXT NOT NULL
);
CREATE INDEX removals_by_seq ON removals (channel, seq);
CREATE TABLE track_values (
    track INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT,
    num
);
CREATE INDEX track_values_text ON track_values (key, kind, text);
CREATE INDEX track_values_num ON track_values (key, kind, num);
CREATE INDEX track_values_track ON track_values (track);
"""

_FEEDBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    user TEXT NOT NULL,
    track TEXT NOT NULL,
    event TEXT NOT NULL,
    at REAL NOT NULL,
    value REAL,
    weight REAL
);
CREATE INDEX IF NOT EXISTS feedback_by_user ON feedback (user, at);
"""

_WINDOWS_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    channel TEXT NOT NULL,
    label INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    vectors BLOB NOT NULL,
    PRIMARY KEY (channel, label)
);
CREATE INDEX IF NOT EXISTS windows_by_seq ON windows (channel, seq);
"""

FeedbackRow = tuple[str, str, str, float, "float | None", "float | None"]
"""A stored feedback event: (user, track, event, at, value, weight)."""


@dataclass
class Changes:
    """What one channel gained and lost since some ``seq``: rows to (re)index, rows to drop."""

    labels: Labels  # (re)written rows
    ids: list[str]
    vectors: FloatMatrix | None  # dense channels
    texts: list[str] | None  # lexical channels
    removed_labels: Labels
    removed_ids: list[str]
    windows: list[FloatMatrix] | None = None  # windowed channels: each written row's windows


class LibraryStore:
    """The database of one library; ``path=None`` keeps it in memory (an unsaved library).

    Thread-safe: one connection, used under a lock. Every method that writes takes a
    transaction from :meth:`transaction`; the writer lock is the caller's business.
    """

    def __init__(self, path: Path | None, *, create: bool = False):
        self.path = path
        if path is not None and not create and not path.is_file():
            raise IndexCorruptError(f"{path.parent} is incomplete: {path.name} is missing")
        target = ":memory:" if path is None else str(path)
        try:
            self._db = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, timeout=60.0
            )
            self._db.execute("PRAGMA foreign_keys = OFF")
            add_sql_functions(self._db)
            add_name_functions(self._db)
            if path is not None:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            if path is not None and not all(os.access(p, os.W_OK) for p in (path, path.parent)):
                raise StorageError(
                    f"{path.parent} is read-only: newwave writes to a library's folder and "
                    f"database even to search it (SQLite's write-ahead log); make them writable, "
                    f"or copy the library ({exc})"
                ) from exc
            raise self._corrupt(exc) from exc
        self._lock = threading.RLock()
        self._in_transaction = False
        self._seq: int | None = None  # inside a transaction: its seq
        if create:
            self._create()
        self._check_format()

    # -- opening ----------------------------------------------------------------------------------

    def _create(self) -> None:
        with self._guard():
            if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return
            meta = (
                f"('format', '{FORMAT}'), ('epoch', '{uuid.uuid4().hex}'), ('seq', '0'), "
                f"('names:keys', '{key_fingerprint()}'), ('names:tokens', '0'), ('names:seq', '0')"
            )
            self._db.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} {NAMES_SCHEMA} {_FEEDBACK_SCHEMA} "
                f"INSERT INTO meta VALUES {meta}; COMMIT;"
            )

    def _check_format(self) -> None:
        with self._guard():
            try:
                found = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            except sqlite3.OperationalError:
                found = None
        if found is None:
            raise IndexCorruptError(f"{self._name} is not a newwave library database")
        if found[0] != str(FORMAT):
            raise IndexCorruptError(
                f"{self._name} has library format {found[0]!r}; this newwave reads format {FORMAT}"
            )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @property
    def _name(self) -> str:
        return str(self.path) if self.path is not None else "the in-memory library"

    def _corrupt(self, exc: sqlite3.DatabaseError) -> IndexCorruptError | StorageError:
        if _cannot_write(exc):
            return StorageError(f"cannot write {self._name}: {exc}")
        return IndexCorruptError(
            f"{self._name} cannot be read ({exc}); if it is damaged, restore it from a backup"
        )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Use the connection, turning SQLite's errors into newwave's."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" in message or "busy" in message:
                    raise LibraryLockedError(f"{self._name} is busy: {message}") from exc
                if _cannot_write(exc):
                    raise StorageError(f"cannot write {self._name}: {message}") from exc
                raise self._corrupt(exc) from exc
            except sqlite3.DatabaseError as exc:
                raise self._corrupt(exc) from exc

    # -- meta -------------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value of the meta table, or None."""
        with self._guard():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, delete) a meta value; inside a transaction."""
        self._require_transaction()
        with self._guard():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """The meta values whose key starts with ``prefix``, by the rest of the key."""
        with self._guard():
            rows = self._db.execute(
                "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        return {key[len(prefix) :]: value for key, value in rows}

    @property
    def seq(self) -> int:
        """The number of the last committed transaction (the current one's inside it)."""
        if self._seq is not None:
            return self._seq
        return int(self.meta("seq") or 0)

    @property
    def epoch(self) -> str:
        """Names this library's contents; a new epoch when they are replaced wholesale."""
        return self.meta("epoch") or ""

    def data_version(self) -> int:
        """Changes when another connection commits (SQLite's ``PRAGMA data_version``)."""
        with self._guard():
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- transactions -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, catalogue: bool = True) -> Iterator[int]:
        """A write transaction, yielding its ``seq``; committed on success, else rolled back.

        ``catalogue=False`` (a write that changes no track nor entry: feedback) keeps ``seq``,
        so that nothing derived from the catalogue goes stale.
        """
        with self._lock:
            if self._in_transaction:
                raise AssertionError("transactions do not nest")
            with self._guard():
                self._db.execute("BEGIN IMMEDIATE")
                seq = int(self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0])
            self._in_transaction, self._seq = True, seq + 1
            try:
                yield seq + 1
                with self._guard():
                    if catalogue:
                        self._db.execute(
                            "UPDATE meta SET value = ? WHERE key = 'seq'", (str(seq + 1),)
                        )
                        self._db.execute(  # the names stay current if they were
                            "UPDATE meta SET value = ? WHERE key = 'names:seq' AND value = ?",
                            (str(seq + 1), str(seq)),
                        )
                    self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction, self._seq = False, None

    def _require_transaction(self) -> None:
        if self._seq is None:
            raise AssertionError("this write needs a transaction")

    def new_epoch(self) -> None:
        """Mark the contents as replaced: indexes saved before are not brought up to date."""
        self.set_meta("epoch", uuid.uuid4().hex)

    def copy_to(self, path: Path) -> None:
        """Replace the database at ``path`` (created if missing) by a copy of this one."""
        with self._guard():
            target = sqlite3.connect(str(path), isolation_level=None)
            try:
                self._db.backup(target)
                target.execute("PRAGMA journal_mode = WAL")
            finally:
                target.close()

    def checkpoint_wal(self) -> None:
        """Move the write-ahead log into the database file, as far as readers allow."""
        if self.path is not None:
            with self._guard():
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_errors(self, *, quick: bool = False) -> list[str]:
        """What SQLite's integrity check finds (empty: the file is sound).

        ``quick`` skips checking that indexes match their tables (about twice as fast).
        """
        with self._guard():
            pragma = "quick_check" if quick else "integrity_check"
            rows = self._db.execute(f"PRAGMA {pragma}").fetchall()
        return [] if rows == [("ok",)] else [str(r[0]) for r in rows]

    # -- tracks -----------------------------------------------------------------------------------

    def count(self) -> int:
        """How many tracks the library holds."""
        with self._guard():
            return int(self._db.execute("SELECT count(*) FROM tracks").fetchone()[0])

    def ids(self) -> list[str]:
        """Every track id, in the order the tracks were first added."""
        with self._guard():
            return [row[0] for row in self._db.execute("SELECT id FROM tracks ORDER BY label")]

    def labels(self, ids: Sequence[str]) -> dict[str, int]:
        """The label of each of ``ids`` that is in the library."""
        found: dict[str, int] = {}
        for chunk in _chunks(list(ids)):
            with self._guard():
                rows = self._db.execute(
                    f"SELECT id, label FROM tracks WHERE id IN ({_marks(chunk)})", chunk
                ).fetchall()
            found.update(rows)
        return found

    def ids_of(self, labels: Iterable[int]) -> dict[int, str]:
        """The id of each of ``labels`` that is in the library."""
        found: dict[int, str] = {}
        for chunk in _chunks([int(label) for label in labels]):
            with self._guard():
                rows = self._db.execute(
                    f"SELECT label, id FROM tracks WHERE label IN ({_marks(chunk)})", chunk
                ).fetchall()
            found.update(rows)
        return found

    def tracks(self, ids: Sequence[str]) -> dict[str, Track]:
        """The tracks of ``ids`` that are in the library, by id."""
        found: dict[str, Track] = {}
        for chunk in _chunks(list(ids)):
            with self._guard():
                rows = self._db.execute(
                    f"SELECT id, track FROM tracks WHERE id IN ({_marks(chunk)})", chunk
                ).fetchall()
            for track_id, data in rows:
                found[track_id] = self._track(track_id, data)
        return found

    def get(self, track_id: str) -> Track:
        """The track ``track_id``; UnknownTrackError if absent."""
        found = self.tracks([track_id])
        if track_id not in found:
            raise UnknownTrackError(f"no track with id {track_id!r}")
        return found[track_id]

    def iter_tracks(self) -> Iterator[Track]:
        """Every track, in the order they were first added (read in blocks)."""
        last = 0
        while True:
            with self._guard():
                rows = self._db.execute(
                    "SELECT label, id, track FROM tracks WHERE label > ? ORDER BY label LIMIT ?",
                    (last, _BLOCK),
                ).fetchall()
            if not rows:
                return
            for _, track_id, data in rows:
                yield self._track(track_id, data)
            last = rows[-1][0]

    def _track(self, track_id: str, data: str) -> Track:
        try:
            track = Track.model_validate_json(data)
        except (ValueError, ValidationError) as exc:
            raise IndexCorruptError(
                f"{self._name}: track {track_id!r} is malformed: {exc}"
            ) from exc
        if track.id != track_id:
            raise IndexCorruptError(f"{self._name}: track row {track_id!r} holds {track.id!r}")
        return track

    def put_tracks(self, tracks: Sequence[Track]) -> dict[str, int]:
        """Insert or replace ``tracks`` (a replaced track keeps its label); their labels."""
        self._require_transaction()
        with self._guard():
            self._db.executemany(
                "INSERT INTO tracks (id, track) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET track = excluded.track",
                [(t.id, t.model_dump_json()) for t in tracks],
            )
        labels = self.labels([t.id for t in tracks])
        with self._guard():
            for chunk in _chunks(list(labels.values())):
                self._db.execute(
                    f"DELETE FROM track_values WHERE track IN ({_marks(chunk)})", chunk
                )
            values = [
                (labels[t.id], key, kind, text, num)
                for t in tracks
                for key, kind, text, num in filter_values(t)
            ]
            self._db.executemany("INSERT INTO track_values VALUES (?, ?, ?, ?, ?)", values)
            self._put_names(list(labels.values()), values)
        return labels

    def delete_tracks(self, labels: Sequence[int]) -> None:
        """Delete the tracks of ``labels`` and their filter values (not their entries)."""
        self._require_transaction()
        with self._guard():
            for chunk in _chunks([int(label) for label in labels]):
                marks = _marks(chunk)
                self._db.execute(f"DELETE FROM tracks WHERE label IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM track_values WHERE track IN ({marks})", chunk)
            self._put_names([int(label) for label in labels], [])

    def tag_counts(self) -> dict[str, int]:
        """Every tag of the tracks, with the number of tracks that have it."""
        with self._guard():
            rows = self._db.execute(
                "SELECT text, count(*) FROM track_values WHERE key = 'tags' AND kind = 's' "
                "GROUP BY text"
            ).fetchall()
        return {tag: int(n) for tag, n in rows}

    # -- catalogue names (newwave.store.names) -------------------------------------------------

    def names_current(self) -> bool:
        """Whether ``track_names`` reflects the tracks, its keys made as this newwave makes them."""
        with self.reading(), self._guard():
            if not self._has_table("track_names"):
                return False
            found = self._db.execute(
                "SELECT key, value FROM meta WHERE key IN ('seq', 'names:seq', 'names:keys')"
            )
            meta = dict(found.fetchall())
        fresh = meta.get("names:seq") == meta.get("seq")
        return fresh and meta.get("names:keys") == key_fingerprint()

    def rebuild_names(self) -> None:
        """Build ``track_names`` again from the tracks' values; inside a transaction."""
        self._require_transaction()
        with self._guard():
            self._db.execute("DROP TABLE IF EXISTS track_names")
            self._db.execute(NAMES_TABLE)
            found = self._db.execute(
                f"SELECT track, key, kind, text, num FROM track_values WHERE key IN "
                f"({_marks(FIELDS)}) AND kind = 's'",
                FIELDS,
            )
            longest = 0
            while block := found.fetchmany(_BLOCK):
                rows = rows_of_values(block)
                longest = max([longest, *(row[4] for row in rows)])
                self._db.executemany(
                    "INSERT INTO track_names VALUES (?, ?, ?, ?)", (row[:4] for row in rows)
                )
            for statement in NAMES_INDEXES:  # after the rows: faster than with each row
                self._db.execute(statement)
            seq = self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [
                    ("names:keys", key_fingerprint()),
                    ("names:tokens", str(longest)),
                    ("names:seq", str(seq)),
                ],
            )

    def _put_names(self, labels: list[int], values: list[Any]) -> None:
        """Replace the names of ``labels`` by those of their ``track_values`` rows ``values``."""
        if not self._has_table("track_names"):
            return  # a library written before the table: rebuilt when next needed
        for chunk in _chunks(labels):
            self._db.execute(f"DELETE FROM track_names WHERE track IN ({_marks(chunk)})", chunk)
        rows = rows_of_values(values)
        self._db.executemany(
            "INSERT INTO track_names VALUES (?, ?, ?, ?)", (row[:4] for row in rows)
        )
        longest = max((row[4] for row in rows), default=0)
        if longest > self.longest_name():
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('names:tokens', ?)", (str(longest),)
            )

    def longest_name(self) -> int:
        """The most tokens a name's key has (an upper bound; 0 without names)."""
        return int(self.meta("names:tokens") or 0)

    def names_of_keys(self, keys: Sequence[str]) -> list[tuple[str, str, str]]:
        """The ``(key, field, name)`` of the names whose key is one of ``keys``: artists first,
        then titles, then albums, each in the order of their first track."""
        found: list[tuple[int, int, str, str, str]] = []
        for chunk in _chunks(list(keys)):
            with self._guard():
                rows = self._db.execute(
                    "SELECT key, field, name, min(track) FROM track_names "
                    f"WHERE key IN ({_marks(chunk)}) GROUP BY key, field, name",
                    chunk,
                ).fetchall()
            found.extend((FIELDS.index(f), first, key, f, n) for key, f, n, first in rows)
        return [(key, field, name) for _, _, key, field, name in sorted(found)]

    def name_styles(
        self, key: str, field: str, name: str, limit: int, *, tracks: int = STYLE_TRACKS
    ) -> list[str]:
        """The (at most ``limit``) tags most common among the first ``tracks`` tracks of a name,
        casefolded and spaces collapsed: by the number of those tracks that have them, then by
        where they first appear (the track added first, its tags in order)."""
        with self._guard():
            # The name's tracks first, then their values by track: never every tag's rows.
            rows = self._db.execute(
                "WITH counted AS (SELECT tag_key(v.text) AS tag, count(DISTINCT v.track) AS n, "
                "min(v.track) AS first FROM (SELECT track FROM track_names WHERE key = ? "
                "AND field = ? AND name = ? ORDER BY track LIMIT ?) AS t CROSS JOIN "
                "track_values AS v INDEXED BY track_values_track ON v.track = t.track "
                "WHERE v.key = 'tags' AND v.kind = 's' GROUP BY tag) "
                "SELECT tag FROM counted WHERE tag != '' ORDER BY n DESC, first, (SELECT "
                "min(w.rowid) FROM track_values AS w INDEXED BY track_values_track WHERE "
                "w.track = counted.first AND w.key = 'tags' AND w.kind = 's' "
                "AND tag_key(w.text) = counted.tag) LIMIT ?",
                (key, field, name, tracks, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    # -- filters ----------------------------------------------------------------------------------

    def matching(self, where: Mapping[str, Any]) -> Labels:
        """The labels of the tracks that ``where`` keeps (see :mod:`newwave.filters`), sorted.

        A key no track has is refused, as a typo, with the keys there are.
        """

        def has_key(key: str) -> bool:
            found = self._db.execute("SELECT 1 FROM track_values WHERE key = ? LIMIT 1", (key,))
            return found.fetchone() is not None

        def keys() -> list[str]:
            rows = self._db.execute("SELECT DISTINCT key FROM track_values ORDER BY key LIMIT 100")
            return [row[0] for row in rows]

        with self._guard():
            check_keys(where, has_key, keys)
            sql, params = filter_sql(where)
            found = self._db.execute(sql, params).fetchall()
        return np.array(sorted(row[0] for row in found), dtype=np.int64)

    # -- channel entries --------------------------------------------------------------------------

    def hashes(self, channel: str, labels: Sequence[int]) -> dict[int, str]:
        """The content hash of each of ``labels`` that ``channel`` holds."""
        found: dict[int, str] = {}
        for chunk in _chunks([int(label) for label in labels]):
            with self._guard():
                rows = self._db.execute(
                    "SELECT label, content_hash FROM entries "
                    f"WHERE channel = ? AND label IN ({_marks(chunk)})",
                    [channel, *chunk],
                ).fetchall()
            found.update(rows)
        return found

    def put_entries(
        self,
        channel: str,
        labels: Sequence[int],
        hashes: Sequence[str],
        *,
        vectors: FloatMatrix | None = None,
        texts: Sequence[str] | None = None,
    ) -> None:
        """Insert or replace the entries of ``labels`` in ``channel``."""
        self._require_transaction()
        seq = self.seq
        if vectors is not None:
            little = np.ascontiguousarray(vectors, dtype="<f4")
            payload: Iterable[tuple[bytes | None, str | None]] = (
                (row.tobytes(), None) for row in little
            )
        else:
            assert texts is not None
            payload = ((None, text) for text in texts)
        labels = [int(label) for label in labels]
        new = len(labels) - len(self.hashes(channel, labels))
        with self._guard():
            self._db.execute(
                "INSERT INTO channels VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                "count = count + excluded.count",
                (channel, new),
            )
            self._db.executemany(
                "INSERT INTO entries (label, channel, content_hash, seq, vector, text) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (label, channel) DO UPDATE SET "
                "content_hash = excluded.content_hash, seq = excluded.seq, "
                "vector = excluded.vector, text = excluded.text",
                (
                    (int(label), channel, digest, seq, blob, text)
                    for label, digest, (blob, text) in zip(labels, hashes, payload, strict=True)
                ),
            )

    def delete_entries(self, channel: str, removed: Mapping[int, str]) -> None:
        """Delete ``channel``'s entries of the labels in ``removed`` (label -> id), noting it."""
        self._require_transaction()
        seq = self.seq
        with self._guard():
            for chunk in _chunks(list(removed)):
                present = [
                    row[0]
                    for row in self._db.execute(
                        "SELECT label FROM entries "
                        f"WHERE channel = ? AND label IN ({_marks(chunk)})",
                        [channel, *chunk],
                    )
                ]
                self._db.execute(
                    f"DELETE FROM entries WHERE channel = ? AND label IN ({_marks(present)})",
                    [channel, *present],
                )
                if self._has_table("windows"):
                    self._db.execute(
                        f"DELETE FROM windows WHERE channel = ? AND label IN ({_marks(present)})",
                        [channel, *present],
                    )
                self._db.executemany(
                    "INSERT INTO removals VALUES (?, ?, ?, ?)",
                    ((seq, channel, label, removed[label]) for label in present),
                )
                self._db.execute(
                    "UPDATE channels SET count = count - ? WHERE name = ?", (len(present), channel)
                )

    def channel_labels(self, labels: Sequence[int]) -> dict[str, set[int]]:
        """For each channel, which of ``labels`` it holds."""
        found: dict[str, set[int]] = {}
        for chunk in _chunks([int(label) for label in labels]):
            with self._guard():
                rows = self._db.execute(
                    f"SELECT channel, label FROM entries WHERE label IN ({_marks(chunk)})", chunk
                ).fetchall()
            for channel, label in rows:
                found.setdefault(channel, set()).add(label)
        return found

    def channel_counts(self) -> dict[str, int]:
        """How many entries each channel holds."""
        with self._guard():
            rows = self._db.execute("SELECT name, count FROM channels WHERE count > 0").fetchall()
        return {channel: int(n) for channel, n in rows}

    def channel_count(self, channel: str) -> int:
        """How many entries ``channel`` holds."""
        with self._guard():
            row = self._db.execute(
                "SELECT count FROM channels WHERE name = ?", (channel,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def vectors(self, channel: str, labels: Sequence[int], dim: int) -> FloatMatrix:
        """The stored vectors of ``labels`` in ``channel``; zero rows where it has none."""
        out = np.zeros((len(labels), dim), dtype=np.float32)
        rows_of: dict[int, list[int]] = {}
        for row, label in enumerate(labels):
            rows_of.setdefault(int(label), []).append(row)
        for chunk in _chunks(list(rows_of)):
            with self._guard():
                found = self._db.execute(
                    "SELECT label, vector FROM entries "
                    f"WHERE channel = ? AND label IN ({_marks(chunk)}) AND vector IS NOT NULL",
                    [channel, *chunk],
                ).fetchall()
            for label, blob in found:
                out[rows_of[label]] = self._vector(blob, dim, channel, label)
        return out

    def texts(self, channel: str, labels: Sequence[int]) -> dict[int, str]:
        """The stored texts of ``labels`` in a lexical ``channel``."""
        found: dict[int, str] = {}
        for chunk in _chunks([int(label) for label in labels]):
            with self._guard():
                rows = self._db.execute(
                    "SELECT label, text FROM entries "
                    f"WHERE channel = ? AND label IN ({_marks(chunk)}) AND text IS NOT NULL",
                    [channel, *chunk],
                ).fetchall()
            found.update(rows)
        return found

    def _vector(self, blob: bytes, dim: int, channel: str, label: int) -> npt.NDArray[np.float32]:
        if not isinstance(blob, bytes) or len(blob) != 4 * dim:
            raise IndexCorruptError(
                f"{self._name}: the {channel!r} vector of track row {label} is not {dim} floats"
            )
        return np.frombuffer(blob, dtype="<f4")

    def changes(self, channel: str, since: int, *, dim: int | None) -> Iterator[Changes]:
        """What ``channel`` lost and gained after transaction ``since``, in blocks.

        The first block carries every removal; then each block carries up to 50,000 written
        rows. Apply the removals first: a label removed and written again is written last.
        """
        with self._guard():
            removed = self._db.execute(
                "SELECT label, id FROM removals WHERE channel = ? AND seq > ? ORDER BY seq",
                (channel, since),
            ).fetchall()
        removed_labels = np.array([label for label, _ in removed], dtype=np.int64)
        removed_ids = [track_id for _, track_id in removed]
        last = 0
        first = True
        while True:
            with self._guard():
                rows = self._db.execute(
                    "SELECT e.label, t.id, e.vector, e.text FROM entries AS e "
                    "JOIN tracks AS t ON t.label = e.label "
                    "WHERE e.channel = ? AND e.seq > ? AND e.label > ? ORDER BY e.label LIMIT ?",
                    (channel, since, last, _BLOCK),
                ).fetchall()
            if not rows and not first:
                return
            labels = np.array([row[0] for row in rows], dtype=np.int64)
            vectors = texts = None
            if dim is not None:
                vectors = np.empty((len(rows), dim), dtype=np.float32)
                for i, row in enumerate(rows):
                    vectors[i] = self._vector(row[2], dim, channel, row[0])
            else:
                texts = [str(row[3]) for row in rows]
            yield Changes(
                labels,
                [row[1] for row in rows],
                vectors,
                texts,
                removed_labels if first else np.zeros(0, dtype=np.int64),
                removed_ids if first else [],
            )
            if not rows:
                return
            first, last = False, rows[-1][0]

    # -- window vectors (windowed channels) --------------------------------------------------

    def put_windows(
        self, channel: str, labels: Sequence[int], windows: Sequence[FloatMatrix]
    ) -> None:
        """Insert or replace the window vectors of ``labels`` in ``channel`` (each a
        ``(windows, dim)`` array); inside the transaction that writes their entries. A library
        written before windowed channels existed gets its table here (the migration)."""
        self._require_transaction()
        seq = self.seq
        with self._guard():
            if not self._has_table("windows"):
                for statement in _WINDOWS_SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.executemany(
                "INSERT INTO windows VALUES (?, ?, ?, ?) ON CONFLICT (channel, label) DO UPDATE "
                "SET seq = excluded.seq, vectors = excluded.vectors",
                (
                    (channel, int(label), seq, np.ascontiguousarray(rows, dtype="<f4").tobytes())
                    for label, rows in zip(labels, windows, strict=True)
                ),
            )

    def windows(self, channel: str, labels: Sequence[int], dim: int) -> dict[int, FloatMatrix]:
        """The stored window vectors of each of ``labels`` that ``channel`` holds."""
        found: dict[int, FloatMatrix] = {}
        for chunk in _chunks([int(label) for label in labels]):
            with self._guard():
                if not self._has_table("windows"):
                    return found
                rows = self._db.execute(
                    "SELECT label, vectors FROM windows "
                    f"WHERE channel = ? AND label IN ({_marks(chunk)})",
                    [channel, *chunk],
                ).fetchall()
            for label, blob in rows:
                found[label] = self._windows(blob, dim, channel, label)
        return found

    def window_changes(self, channel: str, since: int, *, dim: int) -> Iterator[Changes]:
        """What a windowed ``channel`` lost and gained after transaction ``since``, in blocks,
        as :meth:`changes` (the first block carries every removal), with ``windows`` set."""
        with self._guard():
            removed = self._db.execute(
                "SELECT label, id FROM removals WHERE channel = ? AND seq > ? ORDER BY seq",
                (channel, since),
            ).fetchall()
            present = self._has_table("windows")
        nothing = np.zeros(0, dtype=np.int64)
        removed_labels = np.array([label for label, _ in removed], dtype=np.int64)
        removed_ids = [track_id for _, track_id in removed]
        last, first, block = 0, True, max(1, _BLOCK // 100)  # a track has many windows
        while True:
            rows: list[Any] = []
            if present:
                with self._guard():
                    rows = self._db.execute(
                        "SELECT w.label, t.id, w.vectors FROM windows AS w "
                        "JOIN tracks AS t ON t.label = w.label WHERE w.channel = ? AND w.seq > ? "
                        "AND w.label > ? ORDER BY w.label LIMIT ?",
                        (channel, since, last, block),
                    ).fetchall()
            if not rows and not first:
                return
            yield Changes(
                np.array([row[0] for row in rows], dtype=np.int64),
                [row[1] for row in rows],
                None,
                None,
                removed_labels if first else nothing,
                removed_ids if first else [],
                windows=[self._windows(row[2], dim, channel, row[0]) for row in rows],
            )
            if not rows:
                return
            first, last = False, rows[-1][0]

    def _windows(self, blob: bytes, dim: int, channel: str, label: int) -> FloatMatrix:
        if not isinstance(blob, bytes) or not blob or len(blob) % (4 * dim):
            raise IndexCorruptError(
                f"{self._name}: the {channel!r} windows of track row {label} are not rows of "
                f"{dim} floats"
            )
        return np.frombuffer(blob, dtype="<f4").reshape(-1, dim)

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def pending(self, channel: str, since: int) -> int:
        """How many rows ``channel`` wrote or removed after transaction ``since``."""
        with self._guard():
            written = self._db.execute(
                "SELECT count(*) FROM entries WHERE channel = ? AND seq > ?", (channel, since)
            ).fetchone()[0]
            removed = self._db.execute(
                "SELECT count(*) FROM removals WHERE channel = ? AND seq > ?", (channel, since)
            ).fetchone()[0]
        return int(written) + int(removed)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """A read transaction: every read inside sees one committed state of the library."""
        with self._lock:
            if self._in_transaction:
                yield
                return
            with self._guard():
                self._db.execute("BEGIN")
                self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
            self._in_transaction = True
            try:
                yield
            finally:
                self._in_transaction = False
                if self._db.in_transaction:
                    self._db.execute("COMMIT")

    # -- feedback ---------------------------------------------------------------------------------

    def _has_feedback(self) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feedback'"
        ).fetchone()
        return row is not None

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> None:
        """Record feedback events; inside a transaction. A library written before feedback
        existed gets its table here (the migration)."""
        self._require_transaction()
        with self._guard():
            if not self._has_feedback():
                for statement in _FEEDBACK_SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)", rows)

    def feedback(self, user: str, *, limit: int | None = None) -> list[FeedbackRow]:
        """``user``'s feedback events, oldest first; with ``limit``, only the latest ``limit``."""
        with self._guard():
            if not self._has_feedback():
                return []
            rows = self._db.execute(
                "SELECT user, track, event, at, value, weight FROM feedback WHERE user = ? "
                "ORDER BY at DESC, rowid DESC LIMIT ?",
                (user, -1 if limit is None else limit),
            ).fetchall()
        return [tuple(row) for row in reversed(rows)]

    def feedback_users(self) -> dict[str, int]:
        """Every user with feedback, with their number of events."""
        with self._guard():
            if not self._has_feedback():
                return {}
            rows = self._db.execute(
                "SELECT user, count(*) FROM feedback GROUP BY user ORDER BY user"
            ).fetchall()
        return {user: int(n) for user, n in rows}

    def all_feedback(self) -> list[FeedbackRow]:
        """Every user's feedback events, in the order they were recorded."""
        with self._guard():
            if not self._has_feedback():
                return []
            rows = self._db.execute(
                "SELECT user, track, event, at, value, weight FROM feedback ORDER BY rowid"
            ).fetchall()
        return [tuple(row) for row in rows]

    def feedback_extent(self) -> int:
        """The largest row number of the feedback table (0 if empty): at least the number of
        events held (equal after :meth:`vacuum`), read without counting them."""
        with self._guard():
            if not self._has_feedback():
                return 0
            return int(self._db.execute("SELECT max(rowid) FROM feedback").fetchone()[0] or 0)

    def forget_feedback(self, user: str) -> int:
        """Delete ``user``'s events, overwriting the freed space with zeros; inside a
        transaction. How many were deleted."""
        self._require_transaction()
        with self._guard():
            if not self._has_feedback():
                return 0
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                deleted = self._db.execute("DELETE FROM feedback WHERE user = ?", (user,)).rowcount
            finally:
                self._db.execute("PRAGMA secure_delete = OFF")
        return int(deleted)

    def vacuum(self) -> None:
        """Rewrite the database file compactly, then empty the write-ahead log (outside a
        transaction): no freed page of the old file survives."""
        if self._in_transaction:
            raise AssertionError("VACUUM runs outside a transaction")
        with self._guard():
            self._db.execute("VACUUM")
        self.checkpoint_wal()

    def forget_removals(self, channel: str, through: int) -> None:
        """Drop ``channel``'s removal notes up to transaction ``through`` (all indexes past it)."""
        self._require_transaction()
        with self._guard():
            self._db.execute(
                "DELETE FROM removals WHERE channel = ? AND seq <= ?", (channel, through)
            )


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _IN_LIMIT):
        yield values[start : start + _IN_LIMIT]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


#: SQLite's result codes for a write the file system refused (a full disk, a file size limit,
#: read-only files), as opposed to a damaged database.
_WRITE_FAILURES = (
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_IOERR_WRITE",
    "SQLITE_IOERR_FSYNC",
    "SQLITE_IOERR_DIR_FSYNC",
    "SQLITE_IOERR_TRUNCATE",
    "SQLITE_IOERR_SHMSIZE",
)


def _cannot_write(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed because the file system refused a write."""
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    if name:
        return any(name == code or name.startswith(code + "_") for code in _WRITE_FAILURES)
    message = str(exc)
    return "full" in message or "readonly" in message or "read-only" in message
