"""The built-in ``faiss`` retriever: any FAISS index (inner product) behind string ids."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from newwave._checks import positive_int
from newwave._optional import import_optional
from newwave.errors import (
    ComponentUnavailableError,
    IndexCorruptError,
    InvalidInputError,
    StorageError,
)
from newwave.hookspecs import Register, hookimpl
from newwave.index._faiss_file import check_index_file
from newwave.index.base import Labels, Retriever
from newwave.types import FloatMatrix

__all__ = ["FaissRetriever"]

_INDEX_FILE = "index.faiss"
_AUTO = "auto"
_SEED = 0  # the sample that trains and calibrates an "auto" index
_TRAIN_PER_LIST = 40  # k-means sample per inverted list (FAISS asks for at least 39)
_PROBE_QUERIES = 256  # held-out catalogue vectors that choose nprobe
_RECALL_AT = 10
_GROWTH = 4  # "auto" retries / rebuilds once the catalogue has grown this much
_BLOCK = 65_536  # rows per block when streaming the stored vectors

Block = tuple[FloatMatrix, Labels]


class FaissRetriever(Retriever):
    """A FAISS index built from a factory string, scored by inner product (cosine on unit vectors).

    ``factory`` is any FAISS index-factory string (``"Flat"`` is exact search; ``"HNSW32"``,
    ``"IVF1024,Flat"``, ``"IVF1024,PQ64"`` are approximate), or ``"auto"``. Indexes that need
    training are trained on the vectors of the first :meth:`add`, which must then hold enough of
    them. ``nprobe`` sets how many inverted lists an IVF index visits per query (FAISS's default
    is 1). IVF indexes keep the ids themselves (an ``IDMap`` around IVF mislabels results after
    a removal) and can return their stored vectors.

    ``factory="auto"`` is exact (``Flat``) until the catalogue reaches :attr:`auto_threshold`
    vectors, then is rebuilt as ``IVF{nlist},Flat``, ``nlist = 4·√n``, trained on a fixed-seed
    sample of the stored vectors, and rebuilt again each time the catalogue grows 4x. Unless
    ``nprobe`` is given, it is the smallest that finds :attr:`auto_recall` of the exact 10
    nearest neighbours of 256 stored vectors used as queries (each left out of its own
    neighbours, all left out of training); if that takes more than :attr:`auto_max_probe_share`
    of the lists, the index stays exact and tries again at 4x the size (or after a reload).
    Scores stay exact inner products, and a query that finds fewer than ``k`` vectors is searched
    again with more lists. A rebuild runs inside the :meth:`add` that crosses the size and holds
    the old and the new index at once; the index never goes back to ``Flat``. Queries from
    another distribution than the catalogue (text queries against audio vectors) can need a
    larger ``nprobe`` than the one calibrated on catalogue vectors: pass it.

    The threshold comes from benchmarks/test_ann.py on a 2-core machine (faiss-cpu 1.15.1,
    clustered unit vectors, 512 dimensions). One exact query takes 3.0 ms over 20,000 vectors,
    7.5 ms over 50,000, 14.6 ms over 100,000 and 143 ms over 1,000,000; "auto" (recall@10 0.97)
    takes 0.21, 0.26, 0.28 and 1.07 ms: 14x, 29x, 51x and 134x more queries/s (batches of 64:
    2x, 3.4x, 6.6x and 14x). Below 50,000 vectors an exact query costs a few milliseconds, too
    little to trade for approximate results and a k-means pause in :meth:`add` (about 2 s at
    50,000; adding 1,000,000 in 20 chunks took 79 s with its three builds, 7 s for ``Flat``).
    Its vectors take as much memory as ``Flat``'s (2.06 GB at 1,000,000 x 512), but the
    rebuilds and the lists grown by later adds leave the process larger: adding 1,000,000 grew it
    by 3.8 GB (2.8 GB once freed memory went back to the system), against 2.2 GB for ``Flat``,
    with a peak of 4.6 GB against 3.6 GB.

    Batches of 16 or more queries (8 or more over 20,000+ vectors) whose count x width is under
    FAISS's ``distance_compute_blas_threshold`` (128,000 in faiss-cpu 1.15: under 334 queries of
    384 dimensions) would take FAISS's per-query kernel, which is 3-4x slower there than its
    BLAS kernel (16 x 20,000 x 384: 11.9 ms against 3.9 ms; NumPy takes 4.6 ms). With
    :attr:`batch_blas` (the default), such a search lowers that process-wide setting for its
    duration, under a lock, and restores it afterwards unless someone changed it meanwhile; other
    threads' FAISS calls meanwhile see the lowered value. Results are those of FAISS's BLAS
    kernel, which can differ from its per-query kernel in the last bit of a score and in the
    order of tied scores (as a query alone and in a large batch already do in plain FAISS).
    """

    name = "faiss"

    #: ``"auto"``: the catalogue size at which the exact index is rebuilt as IVF.
    auto_threshold: int = 50_000
    #: ``"auto"``: the recall@10 on held-out catalogue vectors that chooses ``nprobe``.
    auto_recall: float = 0.97
    #: ``"auto"``: stay exact when that recall needs more than this share of the lists.
    auto_max_probe_share: float = 0.125
    #: Send batches of queries through FAISS's BLAS kernel (see the class docstring).
    batch_blas: bool = True

    def __init__(self, dim: int, *, factory: str = "Flat", nprobe: int | None = None):
        super().__init__(dim)
        if not isinstance(factory, str) or not factory.strip():
            raise InvalidInputError(f"factory must be an index-factory string, got {factory!r}")
        if factory.replace(" ", "").upper().startswith("IDMAP"):
            raise InvalidInputError("leave IDMap out of the factory string: ids are mapped for you")
        if nprobe is not None:
            positive_int(nprobe, "nprobe")
        self.factory = _AUTO if factory.strip().lower() == _AUTO else factory
        self._nprobe = nprobe
        self._declined_at = 0  # "auto": the size at which a build did not pay (retry at 4x)
        self._index: Any = self._new_index("Flat" if self.factory == _AUTO else self.factory)
        if nprobe is not None and self.factory != _AUTO:
            ivf = _import_faiss().try_extract_index_ivf(self._index)
            if ivf is None:
                raise InvalidInputError(
                    f"nprobe applies to IVF indexes; {self.factory!r} has no inverted lists"
                )
            if nprobe > ivf.nlist:
                raise InvalidInputError(
                    f"nprobe {nprobe} is more than the {ivf.nlist} lists of {self.factory!r}"
                )
            ivf.nprobe = nprobe

    @property
    def nlist(self) -> int | None:
        """The inverted lists of the current index; None for an index without (``Flat``)."""
        ivf = _import_faiss().try_extract_index_ivf(self._index)
        return None if ivf is None else int(ivf.nlist)

    @property
    def nprobe(self) -> int | None:
        """The lists an IVF index visits per query; None for an index without lists."""
        ivf = _import_faiss().try_extract_index_ivf(self._index)
        return None if ivf is None else int(ivf.nprobe)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"factory": self.factory}
        if self._nprobe is not None:
            config["nprobe"] = self._nprobe
        return config

    def _new_index(self, factory: str) -> Any:
        faiss = _import_faiss()
        try:
            inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InvalidInputError(
                f"FAISS cannot build index {factory!r} for dimension {self.dim}: {_first_line(exc)}"
            ) from exc
        ivf = _native_ivf(faiss, inner)
        if ivf is None:
            return faiss.IndexIDMap2(inner)
        _map_ids(faiss, ivf)
        return inner

    # -- adding, removing, searching -------------------------------------------------------

    def _add(self, labels: Labels, vectors: FloatMatrix) -> None:
        if self.factory == _AUTO and self._auto_rebuild(labels, vectors):
            return
        if not self._index.is_trained:
            try:
                self._index.train(vectors)
            except RuntimeError as exc:
                raise InvalidInputError(
                    f"FAISS index {self.factory!r} must be trained before use and could not be "
                    f"trained on the {len(vectors)} vectors of this first add: {_first_line(exc)}; "
                    "add more vectors at once, or choose an index that needs no training ('Flat')"
                ) from exc
        self._index.add_with_ids(vectors, labels)

    def _remove(self, labels: Labels) -> None:
        faiss = _import_faiss()
        ivf = _native_ivf(faiss, self._index)
        hashed = ivf is not None and ivf.direct_map.type == faiss.DirectMap.Hashtable
        try:  # a hashed IVF finds an id array directly; IDSelectorBatch hashes the ids
            selector = faiss.IDSelectorArray(labels) if hashed else faiss.IDSelectorBatch(labels)
            self._index.remove_ids(selector)
        except RuntimeError as exc:
            raise ComponentUnavailableError(
                f"FAISS index {self.factory!r} does not support removing vectors "
                f"({_first_line(exc)}); rebuild the index without them, or use 'Flat' or 'IVF…'"
            ) from exc

    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, Labels]:
        count = self.nlist or int(self._index.ntotal)  # IVF: the batch meets its list centres
        with _batch_blas(queries.shape[0], self.dim, count, enabled=self.batch_blas):
            scores, labels = self._index.search(queries, k)
            if self.factory == _AUTO:
                self._search_short_rows_again(queries, k, scores, labels)
        return scores, labels

    def _search_short_rows_again(
        self, queries: FloatMatrix, k: int, scores: FloatMatrix, labels: Labels
    ) -> None:
        """Search the rows that found fewer than ``k`` vectors with 4x the lists, until none."""
        faiss = _import_faiss()
        ivf = _native_ivf(faiss, self._index)
        if ivf is None:
            return
        rows, nprobe = np.flatnonzero(labels[:, -1] < 0), int(ivf.nprobe)
        while rows.size and nprobe < ivf.nlist:
            nprobe = min(int(ivf.nlist), 4 * nprobe)
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            scores[rows], labels[rows] = self._index.search(queries[rows], k, params=params)
            rows = rows[labels[rows, -1] < 0]

    def _search_among(
        self, queries: FloatMatrix, k: int, labels: Labels
    ) -> tuple[FloatMatrix, Labels]:
        """Exact search over those of ``labels`` the index holds (a label it lacks, e.g. a track
        without this field's value, is ignored; looked up only when one is missing)."""
        try:
            return super()._search_among(queries, k, labels)
        except ComponentUnavailableError:
            if not hasattr(self._index, "id_map"):
                raise
            held = labels[np.isin(labels, _import_faiss().vector_to_array(self._index.id_map))]
            if len(held) == len(labels):
                raise
            return super()._search_among(queries, min(k, len(held)), held)

    def _reconstruct(self, labels: Labels) -> FloatMatrix:
        try:
            vectors: FloatMatrix = self._index.reconstruct_batch(labels)
        except RuntimeError as exc:
            raise ComponentUnavailableError(
                f"FAISS index {self.factory!r} cannot return stored vectors: {_first_line(exc)}"
            ) from exc
        return vectors

    # -- "auto" ------------------------------------------------------------------------------

    def _auto_rebuild(self, labels: Labels, vectors: FloatMatrix) -> bool:
        """Rebuild as IVF holding the stored and the new vectors, if it is time; True if so."""
        total = int(self._index.ntotal) + len(vectors)
        if total < self.auto_threshold:
            return False
        nlist, current = _auto_nlist(total), self.nlist
        if current is not None and nlist < 2 * current:  # 4x the vectors since the last build
            return False
        if self._declined_at and total < _GROWTH * self._declined_at:
            return False
        index = self._build_ivf(nlist, lambda: self._blocks((vectors, labels)), total)
        if index is None:
            self._declined_at = total
            return False
        self._index, self._declined_at = index, 0
        return True

    def _blocks(self, extra: Block) -> Iterator[Block]:
        """The stored vectors and labels in blocks (views where possible), then ``extra``."""
        faiss = _import_faiss()
        index, count = self._index, int(self._index.ntotal)
        ivf = _native_ivf(faiss, index)
        if count and ivf is None:  # IDMap2 around the Flat index of a small catalogue
            flat = faiss.downcast_index(index.index)
            rows = faiss.rev_swig_ptr(flat.get_xb(), count * self.dim).reshape(count, self.dim)
            ids = faiss.vector_to_array(index.id_map)
            for start in range(0, count, _BLOCK):
                yield rows[start : start + _BLOCK], ids[start : start + _BLOCK]
        elif count:  # the IVF-Flat index of an earlier build: its inverted lists, a few at a time
            invlists, parts, held = ivf.invlists, [], 0
            for list_no in range(ivf.nlist):
                size = invlists.list_size(list_no)
                if not size:
                    continue
                codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * ivf.code_size)
                ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
                parts.append((codes.view(np.float32).reshape(size, self.dim), ids))
                held += size
                if held >= _BLOCK:
                    yield _concat(parts)
                    parts, held = [], 0
            if parts:
                yield _concat(parts)
        yield extra

    def _build_ivf(self, nlist: int, blocks: Callable[[], Iterator[Block]], total: int) -> Any:
        """An IVF-Flat index of all ``blocks``, or None if it needs too many lists per query."""
        faiss = _import_faiss()
        rng = np.random.default_rng(_SEED)
        probe_at = np.sort(rng.choice(total, size=_probe_count(total), replace=False))
        rest = np.delete(np.arange(total), probe_at)  # k-means never sees the probes
        size = min(len(rest), _TRAIN_PER_LIST * nlist)
        train_at = np.sort(rng.choice(rest, size=size, replace=False))
        index = faiss.index_factory(self.dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(_gather(blocks(), train_at, self.dim))
        nprobe = self._nprobe
        if nprobe is None:
            nprobe = self._calibrate(index.quantizer, nlist, probe_at, blocks)
            if nprobe is None:
                return None
        index.nprobe = min(nprobe, nlist)
        _map_ids(faiss, index)
        # Assign first and size each list once: adding block by block would grow every list
        # several times over and leave the index ~1.5x the size of its vectors.
        lists = [np.ascontiguousarray(index.quantizer.search(v, 1)[1][:, 0]) for v, _ in blocks()]
        sizes = np.bincount(np.concatenate(lists), minlength=nlist)
        for list_no in np.flatnonzero(sizes).tolist():
            index.invlists.resize(list_no, int(sizes[list_no]))  # allocates, then empties:
            index.invlists.resize(list_no, 0)  # the capacity stays
        for (vectors, labels), assigned in zip(blocks(), lists, strict=True):
            rows, ids = np.ascontiguousarray(vectors), np.ascontiguousarray(labels)
            ptr = faiss.swig_ptr
            index.add_core(len(rows), ptr(rows), ptr(ids), ptr(assigned))
        return index

    def _calibrate(
        self, quantizer: Any, nlist: int, probe_at: Labels, blocks: Callable[[], Iterator[Block]]
    ) -> int | None:
        """The fewest lists per query that find :attr:`auto_recall` of the exact neighbours.

        The probes are stored vectors at positions ``probe_at``, each left out of its own
        neighbours and all left out of the k-means sample (which would serve them 2-3% better
        than new queries). An IVF-Flat search finds a neighbour exactly when it visits its
        list, so the recall for every ``nprobe`` follows from the ranks of the neighbours' lists.
        """
        faiss = _import_faiss()
        probes = _gather(blocks(), probe_at, self.dim)
        heap = faiss.ResultHeap(len(probes), _RECALL_AT + 1, keep_max=True)
        start = 0
        for vectors, _ in blocks():
            k = min(_RECALL_AT + 1, len(vectors))
            if k:
                scores, found = faiss.knn(probes, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
                heap.add_result(scores, np.where(found >= 0, found + start, -1))
            start += len(vectors)
        heap.finalize()
        neighbours = [
            [int(p) for p in row if p >= 0 and p != own][:_RECALL_AT]
            for row, own in zip(heap.I, probe_at, strict=True)
        ]
        positions = np.unique(np.array([p for row in neighbours for p in row], dtype=np.int64))
        if not positions.size:
            return 1
        cap = max(1, math.floor(self.auto_max_probe_share * nlist))
        _, ranked = quantizer.search(probes, cap)  # each probe's lists, nearest first
        _, home = quantizer.search(_gather(blocks(), positions, self.dim), 1)
        list_of = dict(zip(positions.tolist(), home[:, 0].tolist(), strict=True))
        ranks: list[int] = []  # each neighbour's list's rank among its probe's; cap: not there
        for row, lists in zip(neighbours, ranked.tolist(), strict=True):
            order = {list_no: rank for rank, list_no in enumerate(lists)}
            ranks.extend(order.get(list_of[p], cap) for p in row)
        found_by = np.bincount(np.minimum(ranks, cap), minlength=cap + 1)[:cap].cumsum()
        enough = np.flatnonzero(found_by >= self.auto_recall * len(ranks))
        return int(enough[0]) + 1 if enough.size else None

    # -- persistence -------------------------------------------------------------------------

    def _write(self, directory: Path) -> None:
        path = directory / _INDEX_FILE
        try:
            _import_faiss().write_index(self._index, str(path))
        except RuntimeError as exc:  # FAISS reports a failed write (a full disk) so
            raise StorageError(f"cannot write {path}: {_first_line(exc)}") from exc

    def _read(self, directory: Path) -> int:
        faiss = _import_faiss()
        path = directory / _INDEX_FILE
        if not path.is_file():
            raise IndexCorruptError(f"{directory} is incomplete: {_INDEX_FILE} is missing")
        check_index_file(path)  # before FAISS allocates what the file's counts claim
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{path} is not a FAISS index: {_first_line(exc)}") from exc
        if index.d != self.dim:
            raise IndexCorruptError(f"{path} holds {index.d}-d vectors, not {self.dim}-d")
        ivf = _native_ivf(faiss, index)
        if ivf is not None:
            _map_ids(faiss, ivf)
            if self._nprobe is not None:
                ivf.nprobe = min(self._nprobe, ivf.nlist)
        elif not hasattr(index, "id_map"):
            raise IndexCorruptError(f"{path} is not an id-mapped FAISS index")
        elif faiss.try_extract_index_ivf(index) is not None:
            raise IndexCorruptError(
                f"{path} wraps an IVF index in an id map, which loses ids on removal (written by "
                "an earlier newwave); add the vectors to a new retriever and save that"
            )
        self._index = index
        return int(index.ntotal)


# -- FAISS helpers ---------------------------------------------------------------------------


def _import_faiss() -> Any:
    return import_optional("faiss", purpose="the 'faiss' retriever", package="faiss-cpu")


def _first_line(exc: BaseException) -> str:
    """The useful part of a FAISS C++ error: the message after its source location."""
    text = " ".join(str(exc).split())
    match = re.search(r" at \S+:\d+: (.*)", text)
    return match.group(1) if match else text


def _native_ivf(faiss: Any, index: Any) -> Any:
    """The IVF index that ``index`` is, or that it wraps in transforms only; else None.

    Such an index stores ids itself. An IDMap around it would not do: IVF keeps the positions of
    removed vectors, so the map's positions go wrong after a removal.
    """
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index if isinstance(index, faiss.IndexIVF) else None


def _map_ids(faiss: Any, ivf: Any) -> None:
    """Give ``ivf`` an id -> entry hash table, which reconstruct and fast removal need."""
    fast_scan = getattr(faiss, "IndexIVFFastScan", ())
    if ivf.direct_map.type == faiss.DirectMap.NoMap and not isinstance(ivf, fast_scan):
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)


def _auto_nlist(count: int) -> int:
    """Inverted lists for ``count`` vectors: 4·√count, with 39 to train each (probes aside)."""
    trainable = count - _probe_count(count)
    return max(1, min(int(4 * math.sqrt(count)), trainable // 39, 65_536))


def _probe_count(count: int) -> int:
    return min(count // 2, _PROBE_QUERIES)


def _concat(parts: list[Block]) -> Block:
    return np.concatenate([v for v, _ in parts]), np.concatenate([i for _, i in parts])


def _gather(blocks: Iterable[Block], positions: Labels, dim: int) -> FloatMatrix:
    """The rows at the sorted ``positions`` of the blocks taken end to end."""
    out = np.empty((len(positions), dim), dtype=np.float32)
    start = done = 0
    for vectors, _ in blocks:
        stop = done + int(np.searchsorted(positions[done:], start + len(vectors)))
        out[done:stop] = vectors[positions[done:stop] - start]
        start, done = start + len(vectors), stop
    return out


class _BlasOverride:
    """Lowers ``faiss.cvar.distance_compute_blas_threshold`` while any search needs it lower."""

    # Measured (faiss-cpu 1.15.1, 2 cores, 384 and 512 dims): the BLAS kernel wins from 16
    # queries over 2,000+ vectors (2-5x) and from 8 over 20,000+ (1.5-2x); below, it loses.
    min_rows = 8
    all_rows = 16
    min_count = 20_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0
        self._value = 0

    @contextmanager
    def __call__(self, rows: int, dim: int, count: int, *, enabled: bool) -> Iterator[None]:
        """Lower the setting for ``rows`` queries of ``dim`` over ``count`` vectors if it pays."""
        pays = rows >= self.all_rows or (rows >= self.min_rows and count >= self.min_count)
        joined = enabled and pays and self._join(rows * dim, self.min_rows * dim)
        try:
            yield
        finally:
            if joined:
                self._leave()

    def _join(self, size: int, wanted: int) -> bool:
        cvar = _import_faiss().cvar
        with self._lock:
            current = cvar.distance_compute_blas_threshold
            if self._users == 0:
                if size >= current:  # FAISS takes its BLAS kernel anyway
                    return False
                self._saved = current
            self._value = min(current, wanted)
            cvar.distance_compute_blas_threshold = self._value
            self._users += 1
            return True

    def _leave(self) -> None:
        cvar = _import_faiss().cvar
        with self._lock:
            self._users -= 1
            if self._users == 0 and cvar.distance_compute_blas_threshold == self._value:
                cvar.distance_compute_blas_threshold = self._saved  # unless changed meanwhile


_batch_blas = _BlasOverride()


@hookimpl
def register_retrievers(register: Register) -> None:
    register(FaissRetriever)
