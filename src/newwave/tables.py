"""Search results as tables: rows with per-channel scores and ranks, HTML, pandas, Arrow, CSV, M3U.

Each hit is one row: ``rank``, ``id``, ``title``, ``artist``, ``album``, ``audio``, the fused
``score``, then for each channel ``score_<channel>`` (its cosine similarity, or BM25 score)
and ``rank_<channel>`` (the track's place in that channel's ranking, 1 = its best), empty
where the channel did not return the track. pandas and pyarrow are imported only when asked
for (``newwave-music[pandas]``, ``newwave-music[parquet]``).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from newwave._optional import import_optional
from newwave.errors import InvalidInputError

if TYPE_CHECKING:
    from newwave.query.base import ParsedQuery
    from newwave.recommender import Recommender
    from newwave.types import Hit

__all__ = [
    "TRACK_COLUMNS",
    "hits_csv",
    "hits_html",
    "hits_m3u",
    "hits_rows",
    "hits_to_arrow",
    "hits_to_pandas",
    "parsed_query_dict",
    "parsed_query_text",
    "recommender_html",
]

#: The columns every row has, before the per-channel ones.
TRACK_COLUMNS = ("rank", "id", "title", "artist", "album", "audio", "score")


def channels_of(hits: Sequence[Hit]) -> list[str]:
    """The channels any hit has a score from, in order of first appearance."""
    return list(dict.fromkeys(name for hit in hits for name in hit.scores))


def hits_rows(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """One dict per hit, with the same keys in the same order (see the module docstring)."""
    channels = channels_of(hits)
    rows = []
    for hit in hits:
        track = hit.track
        row: dict[str, Any] = {
            "rank": hit.rank,
            "id": track.id,
            "title": track.title,
            "artist": track.artist,
            "album": track.album,
            "audio": track.audio,
            "score": hit.score,
        }
        for name in channels:
            row[f"score_{name}"] = hit.scores.get(name)
            row[f"rank_{name}"] = hit.ranks.get(name)
        rows.append(row)
    return rows


def parsed_query_dict(parsed: ParsedQuery | None) -> dict[str, Any] | None:
    """What the rewriter understood, as JSON: the embedded text and the attributes."""
    if parsed is None:
        return None
    return {
        "text": parsed.text,
        "rewriter": parsed.rewriter,
        "wanted": [{"kind": a.kind, "value": a.value} for a in parsed.wanted],
        "unwanted": [{"kind": a.kind, "value": a.value} for a in parsed.unwanted],
    }


def parsed_query_text(parsed: ParsedQuery | None) -> str | None:
    """What the rewriter understood, in one line, or None when no rewriter ran."""
    if parsed is None:
        return None
    parts = [f"searching for {parsed.text!r}"]
    if parsed.wanted:
        parts.append("wanted: " + ", ".join(f"{a.value} ({a.kind})" for a in parsed.wanted))
    if parsed.unwanted:
        parts.append("unwanted: " + ", ".join(f"{a.value} ({a.kind})" for a in parsed.unwanted))
    return "; ".join(parts)


def hits_csv(hits: Sequence[Hit]) -> str:
    """The rows as CSV text, with a header; numbers as Python writes them."""
    rows = hits_rows(hits)
    out = io.StringIO()
    columns = list(rows[0]) if rows else list(TRACK_COLUMNS)
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def hits_m3u(hits: Sequence[Hit]) -> tuple[str, int]:
    """An extended M3U playlist of the hits' audio files, and how many hits had none.

    Each entry is ``#EXTINF:-1,artist - title`` and the track's ``audio`` (a path or URL).
    Raises :class:`InvalidInputError` when no hit has an audio file.
    """
    lines = ["#EXTM3U"]
    missing = 0
    for hit in hits:
        track = hit.track
        if not track.audio or "\n" in track.audio or "\r" in track.audio:
            missing += 1  # no file, or a path that a playlist line cannot hold
            continue
        name = " - ".join(filter(None, (track.artist, track.title))) or track.id
        lines.append(f"#EXTINF:-1,{_one_line(name)}")
        lines.append(track.audio)
    if hits and missing == len(hits):
        raise InvalidInputError(
            "an M3U playlist lists audio files, and none of the hits has one (Track.audio)"
        )
    return "\n".join(lines) + "\n", missing


def hits_html(hits: Sequence[Hit], parsed: ParsedQuery | None = None) -> str:
    """An HTML table of the hits (for notebooks), with what the rewriter understood above it."""
    rows = hits_rows(hits)
    channels = channels_of(hits)
    head = ["#", "id", "title", "artist", "score", *channels]
    parts = []
    understood = parsed_query_text(parsed)
    if understood is not None:
        parts.append(f"<p>{html.escape(understood)}</p>")
    parts.append("<table><thead><tr>")
    parts.extend(f"<th>{html.escape(name)}</th>" for name in head)
    parts.append("</tr></thead><tbody>")
    for row in rows:
        cells = [str(row["rank"]), row["id"], row["title"] or "", row["artist"] or ""]
        cells.append(f"{row['score']:.4f}")
        cells.extend(_channel_cell(row, name) for name in channels)
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    if not rows:
        parts.append("<p>no results</p>")
    return "".join(parts)


def recommender_html(rec: Recommender) -> str:
    """A summary of ``rec`` for notebooks: tracks, directory, each channel, fuser, rewriter."""
    counts = rec.field_counts
    where = "in memory" if rec.directory is None else f"library {rec.directory}"
    rewriter = "none" if rec.rewriter is None else rec.rewriter.name
    parts = [
        f"<p><b>Recommender</b>: {len(rec)} tracks, {html.escape(where)}; fuser "
        f"{html.escape(rec.fuser.name)}; query rewriter {html.escape(rewriter)}</p>",
        "<table><thead><tr><th>channel</th><th>encoder</th><th>model</th><th>tracks</th>"
        "</tr></thead><tbody>",
    ]
    for name, encoder in rec.fields.items():
        cells = [name, encoder.name, encoder.model_id, str(counts.get(name, 0))]
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table>")
    if not rec.fields:
        parts.append("<p>no fields yet: they are chosen at the first add()</p>")
    return "".join(parts)


def hits_to_pandas(hits: Sequence[Hit]) -> Any:
    """A ``pandas.DataFrame`` of the rows (``newwave-music[pandas]``)."""
    pd = import_optional("pandas", purpose="Hits.to_pandas", extra="pandas")
    rows = hits_rows(hits)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else list(TRACK_COLUMNS))


def hits_to_arrow(hits: Sequence[Hit]) -> Any:
    """A ``pyarrow.Table`` of the rows (``newwave-music[parquet]``), with explicit types."""
    pa = import_optional("pyarrow", purpose="Hits.to_arrow", extra="parquet")
    rows = hits_rows(hits)
    types: dict[str, Any] = {
        "rank": pa.int64(),
        "id": pa.string(),
        "title": pa.string(),
        "artist": pa.string(),
        "album": pa.string(),
        "audio": pa.string(),
        "score": pa.float64(),
    }
    for name in channels_of(hits):
        types[f"score_{name}"] = pa.float64()
        types[f"rank_{name}"] = pa.int64()
    schema = pa.schema(list(types.items()))
    return pa.Table.from_pylist(rows, schema=schema)


def _channel_cell(row: Mapping[str, Any], channel: str) -> str:
    """``0.695 #3``: the channel's score and the track's rank in it; ``-`` if not returned."""
    score, rank = row[f"score_{channel}"], row[f"rank_{channel}"]
    if score is None:
        return "-"
    return f"{score:.3f}" + (f" #{rank}" if rank is not None else "")


def _one_line(text: str) -> str:
    printable = "".join(c for c in text if c.isprintable() or c.isspace())
    return " ".join(printable.split())
