"""FAISS index files whose stored counts claim more than the file holds are refused unread."""

from __future__ import annotations

import struct
from pathlib import Path

import faiss
import pytest

from newwave import IndexCorruptError, Retriever
from newwave._storage import resolve_directory
from newwave.index._faiss_file import check_index_file
from newwave.index.faiss import FaissRetriever

from .conftest import unit_rows

_GIB = 2**30


def _saved(tmp_path: Path, factory: str, count: int = 300, dim: int = 8) -> Path:
    retriever = FaissRetriever(dim, factory=factory)
    retriever.add([f"t{i}" for i in range(count)], unit_rows(count, dim))
    return retriever.save(tmp_path / factory.replace(",", "_"))


def _index_file(root: Path) -> Path:
    return resolve_directory(root) / "index.faiss"


def _patch(path: Path, offset: int, fmt: str, value: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


@pytest.fixture
def no_faiss_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """FAISS must not be asked to read the file at all."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("faiss.read_index was called on a crafted file")

    monkeypatch.setattr(faiss, "read_index", refuse)


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "IVF64,Flat", "HNSW8", "PCA4,Flat"])
def test_valid_files_pass_and_load(tmp_path: Path, factory: str) -> None:
    root = _saved(tmp_path, factory)
    check_index_file(_index_file(root))
    assert len(Retriever.load(root)) == 300


def test_flat_data_claiming_2_gib_is_refused_before_reading(
    tmp_path: Path, no_faiss_read: None
) -> None:
    root = _saved(tmp_path, "Flat")
    path = _index_file(root)
    # IxM2 header (37 bytes), IxFI header (37 bytes), then the count of the flat's floats
    assert path.read_bytes()[37:41] == b"IxFI"
    _patch(path, 74, "<Q", _GIB // 2)  # 2 GiB of floats
    with pytest.raises(IndexCorruptError, match=r"vector data claims 536,870,912 items"):
        Retriever.load(root)


def test_header_vector_count_past_the_file_size_is_refused(
    tmp_path: Path, no_faiss_read: None
) -> None:
    root = _saved(tmp_path, "HNSW8")  # a layout walked no further than its header
    path = _index_file(root)
    _patch(path, 8, "<q", _GIB)
    with pytest.raises(IndexCorruptError, match="header claims 1,073,741,824 vectors"):
        Retriever.load(root)


def test_ivf_list_sizes_past_the_file_are_refused(tmp_path: Path, no_faiss_read: None) -> None:
    root = _saved(tmp_path, "IVF4,Flat")
    path = _index_file(root)
    data = path.read_bytes()
    sizes_at = data.index(b"full") + 4 + 8  # the tag, the count, then one size per list
    _patch(path, sizes_at, "<Q", _GIB)
    with pytest.raises(IndexCorruptError, match="inverted lists hold"):
        Retriever.load(root)
    _patch(path, 8, "<q", _GIB // 16)  # a header agreeing with the lists: still past the file
    with pytest.raises(IndexCorruptError, match="header claims"):
        check_index_file(path)


def test_id_map_and_truncation_are_refused(tmp_path: Path, no_faiss_read: None) -> None:
    root = _saved(tmp_path, "Flat", count=10)
    path = _index_file(root)
    data = path.read_bytes()
    ids_at = len(data) - 8 * 10 - 8
    _patch(path, ids_at, "<Q", 2**40)
    with pytest.raises(IndexCorruptError, match="id map claims"):
        check_index_file(path)
    path.write_bytes(data[:-3])
    with pytest.raises(IndexCorruptError, match="id map claims"):
        check_index_file(path)
    path.write_bytes(data[:30])
    with pytest.raises(IndexCorruptError, match="ends inside a field"):
        check_index_file(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(IndexCorruptError, match="1 bytes follow the index"):
        check_index_file(path)


@pytest.mark.parametrize("factory", ["IVF4,Flat", "HNSW8", "Flat"])
def test_untrained_or_empty_indexes_load(tmp_path: Path, factory: str) -> None:
    root = FaissRetriever(8, factory=factory).save(tmp_path / "index")
    check_index_file(_index_file(root))
    assert len(Retriever.load(root)) == 0


def test_sparse_list_sizes_are_checked(tmp_path: Path) -> None:
    retriever = FaissRetriever(8, factory="IVF64,Flat")
    retriever.add([f"t{i}" for i in range(300)], unit_rows(300, 8))
    retriever.remove([f"t{i}" for i in range(3, 300)])  # most lists empty: sizes stored sparse
    root = retriever.save(tmp_path / "index")
    path = _index_file(root)
    data = path.read_bytes()
    assert b"sprs" in data
    assert b"full" not in data
    assert len(Retriever.load(root)) == 3
    pairs_at = data.index(b"sprs") + 4 + 8  # the tag, the count, then (list, size) pairs
    _patch(path, pairs_at, "<Q", 64)  # a list number past the last list
    with pytest.raises(IndexCorruptError, match="sizes name list 64 of 64"):
        check_index_file(path)
    path.write_bytes(data)
    _patch(path, pairs_at + 8, "<Q", 2**40)
    with pytest.raises(IndexCorruptError, match="inverted lists hold"):
        check_index_file(path)
