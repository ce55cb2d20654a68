"""``where`` ignoring case: the cost of the case-folding operators in SQL.

The data: the ``track_values`` table of 1,000,000 tracks (2,000 under ``--benchmark-disable``),
each with an ``artist`` among 10,000 names in mixed case ("Artist 7 Ø" ... ), built with
:func:`newwave.filters.filter_values` in an in-memory SQLite database, as a library stores them.

- **baseline**: ``{"artist": "Artist 7 Ø"}``, exact equality, which the ``(key, kind, text)``
  index answers directly.
- **newwave**: ``{"artist": {"~=": "artist 7 ø"}}``, equality by Unicode case folding: SQLite
  reads every ``artist`` string of the index and calls the registered ``casefold`` function on
  it, so its cost grows with the number of tracks, not with the number of matches.

Both run the SQL :func:`newwave.filters.filter_sql` compiles and return the same 100 tracks.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from newwave.filters import VALUES_SCHEMA, add_sql_functions, filter_sql, filter_values
from newwave.types import Track

ARTISTS = 10_000


@pytest.fixture(scope="module")
def database(request: pytest.FixtureRequest) -> sqlite3.Connection:
    disabled = request.config.getoption("benchmark_disable", default=False)
    tracks = 2_000 if disabled else 1_000_000
    db = sqlite3.connect(":memory:")
    add_sql_functions(db)
    db.executescript(VALUES_SCHEMA)
    rows = (
        (i, *row)
        for i in range(tracks)
        for row in filter_values(Track(id=str(i), artist=f"Artist {i % ARTISTS} Ø"))
    )
    db.executemany(
        "INSERT INTO track_values (track, key, kind, text, num) VALUES (?,?,?,?,?)", rows
    )
    db.commit()
    db.execute("ANALYZE")
    return db


def matches(db: sqlite3.Connection, where: dict[str, Any]) -> list[int]:
    sql, params = filter_sql(where)
    return [row[0] for row in db.execute(sql, params)]


def expected(db: sqlite3.Connection) -> int:
    tracks = db.execute("SELECT count(DISTINCT track) FROM track_values").fetchone()[0]
    return int(tracks) // ARTISTS or 1


@pytest.mark.benchmark(group="where: one artist among 10,000")
def test_exact_string_filter_baseline(benchmark: Any, database: sqlite3.Connection) -> None:
    found = benchmark(matches, database, {"artist": "Artist 7 Ø"})
    assert len(found) == expected(database)


@pytest.mark.benchmark(group="where: one artist among 10,000")
def test_case_folded_filter(benchmark: Any, database: sqlite3.Connection) -> None:
    found = benchmark(matches, database, {"artist": {"~=": "ARTIST 7 ø"}})
    assert sorted(found) == sorted(matches(database, {"artist": "Artist 7 Ø"}))
    assert len(found) == expected(database)
