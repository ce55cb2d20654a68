"""The built-in ``faiss`` retriever: any FAISS index (inner product) behind string ids."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from newwave.errors import ComponentUnavailableError, IndexCorruptError, InvalidInputError
from newwave.hookspecs import Register, hookimpl
from newwave.index.base import Labels, Retriever
from newwave.types import FloatMatrix

__all__ = ["FaissRetriever"]

_INDEX_FILE = "index.faiss"


class FaissRetriever(Retriever):
    """A FAISS index built from a factory string, scored by inner product (cosine on unit vectors).

    ``factory`` is any FAISS index-factory string (``"Flat"`` is exact search; ``"HNSW32"``,
    ``"IVF1024,Flat"``, ``"IVF1024,PQ64"`` are approximate). Indexes that need training are trained
    on the vectors of the first :meth:`add`, which must then hold enough of them.
    """

    name = "faiss"

    def __init__(self, dim: int, *, factory: str = "Flat"):
        super().__init__(dim)
        if not isinstance(factory, str) or not factory.strip():
            raise InvalidInputError(f"factory must be an index-factory string, got {factory!r}")
        if factory.replace(" ", "").upper().startswith("IDMAP"):
            raise InvalidInputError("leave IDMap out of the factory string: ids are mapped for you")
        self.factory = factory
        self._index: Any = self._new_index()

    def get_config(self) -> dict[str, Any]:
        return {"factory": self.factory}

    def _new_index(self) -> Any:
        faiss = _import_faiss()
        try:
            inner = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InvalidInputError(
                f"FAISS cannot build index {self.factory!r} for dimension {self.dim}: "
                f"{_first_line(exc)}"
            ) from exc
        return faiss.IndexIDMap2(inner)

    def _add(self, labels: Labels, vectors: FloatMatrix) -> None:
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
        try:
            self._index.remove_ids(faiss.IDSelectorBatch(labels))
        except RuntimeError as exc:
            raise ComponentUnavailableError(
                f"FAISS index {self.factory!r} does not support removing vectors "
                f"({_first_line(exc)}); rebuild the index without them, or use 'Flat' or 'IVF…'"
            ) from exc

    def _search(self, queries: FloatMatrix, k: int) -> tuple[FloatMatrix, Labels]:
        scores, labels = self._index.search(queries, k)
        return scores, labels

    def _reconstruct(self, labels: Labels) -> FloatMatrix:
        try:
            vectors: FloatMatrix = self._index.reconstruct_batch(labels)
        except RuntimeError as exc:
            raise ComponentUnavailableError(
                f"FAISS index {self.factory!r} cannot return stored vectors: {_first_line(exc)}"
            ) from exc
        return vectors

    def _write(self, directory: Path) -> None:
        _import_faiss().write_index(self._index, str(directory / _INDEX_FILE))

    def _read(self, directory: Path) -> int:
        faiss = _import_faiss()
        path = directory / _INDEX_FILE
        if not path.is_file():
            raise IndexCorruptError(f"{directory} is incomplete: {_INDEX_FILE} is missing")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{path} is not a FAISS index: {_first_line(exc)}") from exc
        if index.d != self.dim:
            raise IndexCorruptError(f"{path} holds {index.d}-d vectors, not {self.dim}-d")
        if not hasattr(index, "id_map"):
            raise IndexCorruptError(f"{path} is not an id-mapped FAISS index")
        self._index = faiss.IndexIDMap2.cast(index) if hasattr(faiss.IndexIDMap2, "cast") else index
        return int(index.ntotal)


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        from newwave.errors import MissingDependencyError

        raise MissingDependencyError(
            "the 'faiss' retriever needs FAISS: pip install faiss-cpu (a dependency of newwave)"
        ) from exc
    return faiss


def _first_line(exc: BaseException) -> str:
    """The useful part of a FAISS C++ error: the message after its source location."""
    text = " ".join(str(exc).split())
    match = re.search(r" at \S+:\d+: (.*)", text)
    return match.group(1) if match else text


@hookimpl
def register_retrievers(register: Register) -> None:
    register(FaissRetriever)
