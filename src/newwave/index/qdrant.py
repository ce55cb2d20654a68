"""The ``qdrant`` retriever: vectors in a Qdrant collection, local (a folder) or on a server.

**One collection per channel.** A library's channels each own one retriever, so each
``qdrant`` retriever owns one collection: ``{collection}.{channel}`` (``lib.description``,
``lib.tags+minilm``, ``lib.@joint``; ``:`` becomes ``+``), holding one unnamed vector per point.
One collection per library with a named vector per channel was the alternative; Qdrant declares
a collection's named vectors when it creates it, and a library's channels are created one at a
time (a field added later, an embedding fuser's joint index), so that collection would have to be
recreated whenever a channel appears, and removing a track from one channel would mean deleting
one named vector of a point and counting points that have it. A collection per channel keeps
every channel's add, remove, count and rebuild its own.

**Points.** A point's id is the label: the track's row number in the library database (or the
label the base class gave an id, standalone). Points carry no payload: the library database maps
labels to tracks and evaluates ``where=`` (in SQL); a filtered search reaches the retriever as
``among`` labels, which becomes a Qdrant ``HasIdCondition`` filter on an exact search, so no
vector leaves Qdrant. Distance is the dot product, so scores are inner products as with FAISS.

**Persistence.** The vectors live in Qdrant; a saved index (a library's checkpoint, or
:meth:`~newwave.Retriever.save`) holds only a manifest: where Qdrant is (``path`` or ``url``),
the collection, and how many points it held. Reading one connects to that collection as it is
*now*: it is never older than the checkpoint, since every change was written through, and may
be newer; the library then applies the rows newer than the checkpoint's ``seq``, which are
upserts and deletions by label, so applying a row the collection already reflects changes
nothing. A retriever built by the factory (not read from a saved index) is *empty*: at first
use it drops and recreates its collection, as a new FAISS index starts empty; the library builds
one when it rebuilds a channel from its stored vectors (``newwave repair``, or a channel without
a checkpoint). The library database stays the source of truth: a lost or damaged collection is
rebuilt from it by ``newwave repair``.

**Limits.** Local mode (``path=``, or ``location=":memory:"``) is Qdrant's Python
implementation: exact, brute-force search, one process per folder (a second process is refused).
A server or cluster (``url=``; an API key from ``QDRANT_API_KEY``, never saved) serves many
processes, with HNSW search unless ``exact=True``. A collection belongs to one library: two
libraries (or a library and the in-memory Recommender that saved it) writing to one collection
corrupt each other's results. Readers of a live library apply the writer's rows too (idempotent
upserts); a reader applying an older vector of a track while the writer replaces it can leave the
older one in the collection until the track changes again or ``newwave repair`` runs.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from newwave._optional import import_optional
from newwave.errors import (
    ComponentUnavailableError,
    IndexCorruptError,
    InvalidInputError,
    NewWaveError,
)
from newwave.hookspecs import Register, hookimpl
from newwave.index.base import Labels, Retriever
from newwave.types import FloatMatrix

__all__ = ["QdrantRetriever", "close_clients"]

_MANIFEST = "qdrant.json"
_MEMORY = ":memory:"
_BATCH = 512  # points per upsert / retrieve request
_PAD = -np.finfo(np.float32).max  # the score of a missing result, as FAISS pads
_API_KEY = "QDRANT_API_KEY"


class QdrantRetriever(Retriever):
    """Vectors in a Qdrant collection, scored by dot product; see the module docstring.

    Give one of ``path`` (local mode: a folder, one process), ``url`` (a Qdrant server or
    cluster) or ``location=":memory:"`` (local mode in memory, the default). ``collection``
    names the collection, or, inside a library, the prefix of its channels' collections.
    ``exact=True`` makes a server search exhaustively (local mode always does).
    """

    name = "qdrant"

    def __init__(
        self,
        dim: int,
        *,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        location: str | None = None,
        collection: str = "newwave",
        channel: str | None = None,
        exact: bool = False,
    ):
        super().__init__(dim)
        given = [x for x in (path, url, location) if x is not None]
        if len(given) > 1:
            raise InvalidInputError("give one of path=, url= or location=, not several")
        if location is not None and location != _MEMORY:
            raise InvalidInputError(f"location must be {_MEMORY!r}; a server is url=...")
        if not isinstance(collection, str) or not collection or "/" in collection:
            raise InvalidInputError(f"collection must be a name without '/', got {collection!r}")
        if channel is not None and (not isinstance(channel, str) or not channel):
            raise InvalidInputError(f"channel must be a non-empty string, got {channel!r}")
        if not isinstance(exact, bool):
            raise InvalidInputError(f"exact must be True or False, got {exact!r}")
        self.path = None if path is None else str(Path(path).expanduser().resolve())
        self.url = url
        self.collection = collection
        self.channel = channel
        self.exact = exact
        self._client: Any = None
        self._lock: AbstractContextManager[Any] = nullcontext()
        self._fresh = True  # built by the factory: its collection starts over at first use
        #: Search ``among`` labels with Qdrant's id filter (on a server: the vectors stay there)
        #: rather than by fetching their vectors: in local mode, the filter took 2.6 s for 2,000
        #: labels of 20,000 x 384, fetching 0.34 s (benchmarks/test_qdrant.py).
        self.id_filter = url is not None

    @property
    def collection_name(self) -> str:
        """The Qdrant collection that holds the vectors."""
        if self.channel is None:
            return self.collection
        return f"{self.collection}.{quote(self.channel.replace(':', '+'), safe='@+.-_')}"

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"collection": self.collection}
        if self.path is not None:
            config["path"] = self.path
        elif self.url is not None:
            config["url"] = self.url
        else:
            config["location"] = _MEMORY
        if self.channel is not None:
            config["channel"] = self.channel
        if self.exact:
            config["exact"] = True
        return config

    def use_channel(self, name: str) -> None:
        if self._client is not None:
            raise InvalidInputError("use_channel() comes before the retriever's first use")
        self.channel = name

    # -- the hooks ------------------------------------------------------------------------------

    def _add(self, labels: Labels, vectors: FloatMatrix) -> None:
        models = _import_qdrant().models
        _check_labels(labels)
        for start in range(0, len(labels), _BATCH):
            batch = models.Batch(
                ids=labels[start : start + _BATCH].tolist(),
                vectors=vectors[start : start + _BATCH].tolist(),
            )
            self._call("upsert", self.collection_name, points=batch, wait=True)

    def _remove(self, labels: Labels) -> None:
        models = _import_qdrant().models
        _check_labels(labels)
        for start in range(0, len(labels), _BATCH):
            selector = models.PointIdsList(points=labels[start : start + _BATCH].tolist())
            self._call("delete", self.collection_name, points_selector=selector, wait=True)

    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, Labels]:
        return self._query(queries, k, None)

    def _search_among(
        self, queries: FloatMatrix, k: int, labels: Labels
    ) -> tuple[FloatMatrix, Labels]:
        if k == 0 or queries.shape[0] == 0:
            empty = np.zeros((queries.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        if not self.id_filter:
            stored = labels[self._stored(labels)]
            return _pad(*super()._search_among(queries, min(k, len(stored)), stored), k)
        models = _import_qdrant().models
        _check_labels(labels)
        among = models.Filter(must=[models.HasIdCondition(has_id=labels.tolist())])
        return self._query(queries, k, among, exact=True)

    def _reconstruct(self, labels: Labels) -> FloatMatrix:
        found = self._retrieve(labels)
        missing = [label for label in labels.tolist() if label not in found]
        if missing:
            raise IndexCorruptError(
                f"Qdrant collection {self.collection_name!r} lacks {len(missing)} stored "
                f"vector(s) (labels {missing[:5]}); rebuild it from the library: newwave repair"
            )
        return np.array([found[label] for label in labels.tolist()], dtype=np.float32)

    def _stored(self, labels: Labels) -> npt.NDArray[np.bool_]:
        """Which of ``labels`` the collection holds."""
        found = self._retrieve(labels, vectors=False)
        return np.array([label in found for label in labels.tolist()], dtype=bool)

    def _retrieve(self, labels: Labels, *, vectors: bool = True) -> dict[int, Any]:
        """The points of ``labels`` that the collection holds: label -> vector (or None)."""
        _check_labels(labels)
        found: dict[int, Any] = {}
        for start in range(0, len(labels), _BATCH):
            ids = labels[start : start + _BATCH].tolist()
            records = self._call(
                "retrieve", self.collection_name, ids=ids, with_vectors=vectors, with_payload=False
            )
            found.update((int(r.id), r.vector) for r in records)
        return found

    def _write(self, directory: Path) -> None:
        manifest = {"collection": self.collection_name, "points": self._count()}
        (directory / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    def _read(self, directory: Path) -> int:
        path = directory / _MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            named = manifest["collection"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexCorruptError(f"{path} is missing or malformed: {exc}") from exc
        if named != self.collection_name:
            raise IndexCorruptError(
                f"{path} names collection {named!r}, its options {self.collection_name!r}"
            )
        self._fresh = False
        self._connect()
        if not self._call("collection_exists", self.collection_name):
            raise IndexCorruptError(
                f"{directory} refers to Qdrant collection {self.collection_name!r}, which "
                f"{self._where()} does not hold; rebuild it from the library: newwave repair"
            )
        params = self._call("get_collection", self.collection_name).config.params
        size = getattr(params.vectors, "size", None)
        if size != self.dim:
            raise IndexCorruptError(
                f"Qdrant collection {self.collection_name!r} holds {size}-d vectors, "
                f"not {self.dim}-d"
            )
        return self._count()

    # -- Qdrant ---------------------------------------------------------------------------------

    def _query(
        self, queries: FloatMatrix, k: int, among: Any, *, exact: bool = False
    ) -> tuple[FloatMatrix, Labels]:
        models = _import_qdrant().models
        # local mode is always exact (and warns about search parameters)
        remote = self.url is not None
        params = models.SearchParams(exact=True) if remote and (exact or self.exact) else None
        requests = [
            models.QueryRequest(
                query=row.tolist(), limit=k, filter=among, params=params, with_payload=False
            )
            for row in queries
        ]
        responses = self._call("query_batch_points", self.collection_name, requests=requests)
        scores = np.full((len(requests), k), _PAD, dtype=np.float32)
        labels = np.full((len(requests), k), -1, dtype=np.int64)
        for row, response in enumerate(responses):
            # best first, then the smaller label on ties, as the exact search of the base class
            found = sorted((-np.float32(p.score), int(p.id)) for p in response.points)[:k]
            scores[row, : len(found)] = [-s for s, _ in found]
            labels[row, : len(found)] = [label for _, label in found]
        return scores, labels

    def _count(self) -> int:
        return int(self._call("count", self.collection_name, exact=True).count)

    def _connect(self) -> Any:
        if self._client is None:
            self._client, self._lock = _client(self.path, self.url)
        return self._client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The client's ``method(*args, **kwargs)``, the collection ready, Qdrant's errors as
        newwave's."""
        client = self._connect()
        with self._lock:
            try:
                if self._fresh:
                    self._recreate(client)
                    self._fresh = False
                return getattr(client, method)(*args, **kwargs)
            except NewWaveError:
                raise
            except Exception as exc:
                if type(exc).__module__.startswith(("qdrant_client", "httpx", "grpc")) or (
                    isinstance(exc, (ValueError, RuntimeError, OSError))
                ):
                    raise ComponentUnavailableError(
                        f"Qdrant ({self._where()}, collection {self.collection_name!r}) failed: "
                        f"{' '.join(str(exc).split())[:300]}"
                    ) from exc
                raise

    def _recreate(self, client: Any) -> None:
        models = _import_qdrant().models
        name = self.collection_name
        if client.collection_exists(name):
            client.delete_collection(name)
        client.create_collection(
            name, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.DOT)
        )

    def _where(self) -> str:
        if self.path is not None:
            return f"local folder {self.path}"
        return self.url if self.url is not None else "local memory"


# -- clients ------------------------------------------------------------------------------------

# One client per folder or server in a process: local mode locks its folder against any second
# client, and retrievers of one library (one per channel) share it. Local mode is not
# thread-safe, so its calls take the folder's lock.
_clients: dict[tuple[str, str], tuple[Any, AbstractContextManager[Any]]] = {}
_clients_lock = threading.Lock()
_closing_registered = False


def _client(path: str | None, url: str | None) -> tuple[Any, AbstractContextManager[Any]]:
    qdrant = _import_qdrant()
    key = ("path", path) if path is not None else ("url", url) if url else ("memory", _MEMORY)
    global _closing_registered
    with _clients_lock:
        if not _closing_registered:  # close at exit: a client closed by __del__ then fails
            atexit.register(close_clients)
            _closing_registered = True
        if key not in _clients:
            if path is not None:
                try:
                    client = qdrant.QdrantClient(path=path)
                except RuntimeError as exc:  # another process holds the folder
                    raise ComponentUnavailableError(
                        f"Qdrant local folder {path} is in use by another process (local mode "
                        "serves one process; use a Qdrant server, url=, for several)"
                    ) from exc
                _clients[key] = (client, threading.RLock())
            elif url is not None:
                client = qdrant.QdrantClient(url=url, api_key=os.environ.get(_API_KEY))
                _clients[key] = (client, nullcontext())
            else:
                _clients[key] = (qdrant.QdrantClient(location=_MEMORY), threading.RLock())
        return _clients[key]


def close_clients() -> None:
    """Close every Qdrant client this process opened, releasing local folders; the retrievers
    that used them cannot be used afterwards."""
    with _clients_lock:
        for client, _ in _clients.values():
            client.close()
        _clients.clear()


def _pad(scores: FloatMatrix, labels: Labels, k: int) -> tuple[FloatMatrix, Labels]:
    """``k`` columns: the missing ones score :data:`_PAD` with label -1, as :meth:`_query`."""
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, labels
    rows = scores.shape[0]
    return (
        np.hstack([scores, np.full((rows, missing), _PAD, dtype=np.float32)]),
        np.hstack([labels, np.full((rows, missing), -1, dtype=np.int64)]),
    )


def _check_labels(labels: Labels) -> None:
    if len(labels) and int(labels.min()) < 0:
        raise InvalidInputError("Qdrant point ids are unsigned: labels must be >= 0")


def _import_qdrant() -> Any:
    return import_optional(
        "qdrant_client", purpose="the 'qdrant' retriever", extra="qdrant", package="qdrant-client"
    )


@hookimpl
def register_retrievers(register: Register) -> None:
    register(QdrantRetriever)
