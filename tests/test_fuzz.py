"""Fuzzing: hostile catalogue files and ``where`` filters raise newwave's own errors, nothing else.

Hypothesis writes CSV, TSV, JSONL and Parquet files (random bytes, and well-formed files of random
values, deeply nested ones included) and reads them with random column mappings and options;
it builds ``where`` filters from random nested JSON and applies them to tracks of random
metadata. Any exception outside :class:`~newwave.errors.NewWaveError` fails the test.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newwave.errors import NewWaveError
from newwave.filters import OPERATORS, compile_filter
from newwave.readers import read_tracks
from newwave.types import Track

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = ("id", "title", "artist", "album", "audio", "lyrics", "description", "tags")
NAMES = st.sampled_from([*FIELDS, "metadata", "ytid", "caption", "x", ""]) | st.text(max_size=8)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["['a', 'b']", "[", "[[[", "nan", "-0", "1e999", "true", "00012"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=20,
)
deep = st.sampled_from([2, 70, 1000, 5000, 100_000]).map(lambda n: "[" * n + "]" * n)

options = st.fixed_dictionaries(
    {},
    optional={
        "columns": st.dictionaries(st.sampled_from([*FIELDS, "metadata", "bogus"]), NAMES),
        "tag_separator": st.text(max_size=3),
        "metadata": st.just("rest") | st.lists(NAMES, max_size=3) | st.text(max_size=5),
        "max_field_chars": st.integers(-1, 200),
    },
)


def _read(name: str, content: bytes, read_options: dict[str, Any]) -> None:
    """Read every track of a file holding ``content``; only newwave's errors may come out."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(content)
        try:
            for track in read_tracks(path, **read_options):
                assert isinstance(track, Track)
        except NewWaveError:
            pass


def _table(rows: list[list[Any]], delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
    return out.getvalue().encode("utf-8")


cells = scalars | json_values.map(json.dumps) | deep | st.text()


@FUZZ
@given(
    rows=st.lists(st.lists(cells, min_size=1, max_size=5), max_size=6),
    header=st.lists(NAMES, min_size=1, max_size=5),
    delimiter=st.sampled_from([",", "\t"]),
    read_options=options,
)
def test_csv_and_tsv_of_random_values(
    rows: list[list[Any]], header: list[str], delimiter: str, read_options: dict[str, Any]
) -> None:
    name = "c.csv" if delimiter == "," else "c.tsv"
    _read(name, _table([header, *rows], delimiter), read_options)


@FUZZ
@given(
    content=st.binary(max_size=400),
    name=st.sampled_from(["c.csv", "c.tsv", "c.jsonl", "c.parquet"]),
    read_options=options,
)
def test_random_bytes_in_every_format(
    content: bytes, name: str, read_options: dict[str, Any]
) -> None:
    _read(name, content, read_options)


@FUZZ
@given(
    records=st.lists(
        st.dictionaries(NAMES, json_values, max_size=6) | json_values | deep, max_size=6
    ),
    garbage=st.lists(st.text(max_size=30) | deep, max_size=2),
    read_options=options,
)
def test_jsonl_of_random_json(
    records: list[Any], garbage: list[str], read_options: dict[str, Any]
) -> None:
    lines = [r if isinstance(r, str) and r.startswith("[") else json.dumps(r) for r in records]
    _read("c.jsonl", "\n".join(lines + garbage).encode("utf-8"), read_options)


@FUZZ
@given(
    columns=st.dictionaries(
        NAMES.filter(bool),
        st.sampled_from(["text", "int", "float", "list", "struct", "bool"]),
        min_size=1,
        max_size=4,
    ),
    rows=st.integers(0, 4),
    data=st.data(),
    read_options=options,
)
def test_parquet_of_random_columns(
    columns: dict[str, str], rows: int, data: st.DataObject, read_options: dict[str, Any]
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    values = {
        "text": st.none() | st.text(max_size=10) | deep,
        "int": st.none() | st.integers(-(2**63), 2**63 - 1),
        "float": st.none() | st.floats(),
        "list": st.none() | st.lists(st.none() | st.text(max_size=5), max_size=3),
        "struct": st.none() | st.fixed_dictionaries({"a": st.none() | st.integers(0, 9)}),
        "bool": st.none() | st.booleans(),
    }
    table = pa.table(
        {name: [data.draw(values[kind]) for _ in range(rows)] for name, kind in columns.items()}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    _read("c.parquet", buffer.getvalue(), read_options)


# -- where ------------------------------------------------------------------------------------

conditions = json_values | st.dictionaries(
    st.sampled_from([*OPERATORS, "~", ""]) | st.text(max_size=3), json_values, max_size=3
)
metadata_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    where=st.dictionaries(NAMES, conditions, max_size=4) | json_values,
    metadata=st.lists(st.dictionaries(NAMES, metadata_values, max_size=4), max_size=4),
    known=st.none() | st.lists(NAMES, max_size=4),
)
def test_where_filters_of_random_json(
    where: Any, metadata: list[dict[str, Any]], known: list[str] | None
) -> None:
    tracks = [
        Track(id=str(i), title="t", tags=("jazz", "pop"), metadata=m)
        for i, m in enumerate(metadata)
    ]
    try:
        keep = compile_filter(json.loads(json.dumps(where)), known_keys=known)
        matched = [keep(track) for track in tracks]
    except NewWaveError:
        return
    assert all(isinstance(flag, bool) for flag in matched)
