"""The benchmark report: a pytest-benchmark JSON file in, ``REPORT.md`` and ``ann.png`` out.

    python benchmarks/report.py benchmarks/results/latest.json    # what `make bench` runs

The conventions it reads (benchmarks/README.md):

- A benchmark whose name contains ``baseline`` is a timed baseline of its group; every other
  benchmark of the group is reported with its median over the baseline's median.
- A benchmark that measures its baseline inside the test (a first run against a second, a model
  before and after training) names that baseline in ``extra_info["baseline"]``.
- A benchmark with neither is an error, as is a file with no timed benchmarks.
- Quality: the numbers in ``extra_info`` whose key names a ranking metric (``mrr``,
  ``recall@10`` or ``recall_at_10``, ``hit_rate@1``, ``ndcg@10``, ``map``, ``accuracy`` ...);
  the rest of the key is the variant (``before_mrr``: variant ``before``).
- The ANN plot: the benchmarks of ``test_ann.py`` with ``extra_info["recall_at_10"]``, at the
  batch size / median queries per second.

Only the standard library is needed; matplotlib draws the plot when it is installed. newwave is
not imported.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "ANN_MODULE",
    "BASELINE_KEY",
    "BASELINE_WORD",
    "AnnPoint",
    "Benchmark",
    "BenchmarkReportError",
    "Group",
    "QualityRow",
    "Results",
    "ann_points",
    "group_benchmarks",
    "load_results",
    "main",
    "plot_ann",
    "quality_rows",
    "ratios_to_baselines",
    "render_markdown",
    "write_report",
]

BASELINE_WORD = "baseline"
BASELINE_KEY = "baseline"
ANN_MODULE = "test_ann.py"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLOT_NAME = "ann.png"
REPORT_NAME = "REPORT.md"

_METRIC = re.compile(
    r"(?:^|_)(?P<metric>(?:recall|hit_rate|ndcg|precision|map)(?:@|_at_)\d+|mrr|map|accuracy)"
    r"(?=_|$)"
)
_BATCH = re.compile(r",\s*\d+ quer(?:y|ies)")
_RATIO_KEY = re.compile(r"(?:^|_)over(?:_|$)|(?:^|_)ratio$|speedup")
_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


class BenchmarkReportError(ValueError):
    """The results cannot be reported: unreadable, empty, or a benchmark without a baseline."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of a pytest-benchmark run: its timing statistics and ``extra_info``."""

    name: str
    fullname: str
    group: str | None
    median: float
    iqr: float
    stddev: float
    rounds: int
    params: Mapping[str, Any]
    extra_info: Mapping[str, Any]

    @property
    def label(self) -> str:
        """The file and test name, without the directory: ``test_ann.py::test_auto_index[1]``."""
        path, _, test = self.fullname.partition("::")
        return f"{Path(path).name}::{test}" if test else self.name

    @property
    def module(self) -> str:
        return self.label.split("::", 1)[0]

    @property
    def is_baseline(self) -> bool:
        return BASELINE_WORD in self.name.lower()

    @property
    def in_test_baseline(self) -> str | None:
        """What the test measured itself as its baseline, from ``extra_info["baseline"]``."""
        value = self.extra_info.get(BASELINE_KEY)
        return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class Results:
    """A pytest-benchmark JSON file: the benchmarks and what the run recorded about itself."""

    source: str
    benchmarks: tuple[Benchmark, ...]
    machine: Mapping[str, Any]
    commit: Mapping[str, Any]
    datetime: str
    version: str


@dataclass(frozen=True)
class Group:
    """The benchmarks of one pytest-benchmark group (``None``: ungrouped), in run order."""

    name: str | None
    benchmarks: tuple[Benchmark, ...]

    @property
    def title(self) -> str:
        return self.name if self.name is not None else "(no group)"

    @property
    def baselines(self) -> tuple[Benchmark, ...]:
        """The timed baselines; ungrouped benchmarks have none, they are unrelated."""
        if self.name is None:
            return ()
        return tuple(b for b in self.benchmarks if b.is_baseline)


@dataclass(frozen=True)
class QualityRow:
    """The quality metrics one benchmark recorded for one variant (``""``: the only one)."""

    benchmark: str
    variant: str
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class AnnPoint:
    """One ANN benchmark: its index, the queries per search call, its speed and recall."""

    index: str
    queries: int
    queries_per_s: float
    recall: float
    group: str | None = None


def load_results(path: str | Path) -> Results:
    """Read a ``--benchmark-json`` file; raise :class:`BenchmarkReportError` if unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchmarkReportError(f"cannot read the results file {path}: {exc}") from exc
    if not text.strip():
        raise BenchmarkReportError(f"{path} is empty: the benchmark run wrote no results")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkReportError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchmarkReportError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks')")
    benchmarks = tuple(_benchmark(entry, path) for entry in data["benchmarks"])
    if not benchmarks:
        raise BenchmarkReportError(
            f"{path} holds no benchmarks: were they all skipped, deselected, or run with "
            "--benchmark-disable?"
        )
    return Results(
        source=path.name,
        benchmarks=benchmarks,
        machine=data.get("machine_info") or {},
        commit=data.get("commit_info") or {},
        datetime=str(data.get("datetime", "")),
        version=str(data.get("version", "")),
    )


def _benchmark(entry: Any, path: Path) -> Benchmark:
    name = entry.get("name") if isinstance(entry, dict) else None
    stats = entry.get("stats") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not isinstance(stats, dict):
        raise BenchmarkReportError(f"{path}: a benchmark entry without a name or stats: {entry!r}")
    try:
        median, iqr, stddev = (float(stats[key]) for key in ("median", "iqr", "stddev"))
        rounds = int(stats["rounds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchmarkReportError(f"{path}: benchmark {name!r} has incomplete stats") from exc
    group = entry.get("group")
    return Benchmark(
        name=name,
        fullname=str(entry.get("fullname") or name),
        group=group if isinstance(group, str) else None,
        median=median,
        iqr=iqr,
        stddev=stddev,
        rounds=rounds,
        params=entry.get("params") or {},
        extra_info=entry.get("extra_info") or {},
    )


def group_benchmarks(benchmarks: Iterable[Benchmark]) -> list[Group]:
    """The groups in the order they ran, baselines first; raise if a benchmark has no baseline."""
    members: dict[str | None, list[Benchmark]] = {}
    for benchmark in benchmarks:
        members.setdefault(benchmark.group, []).append(benchmark)
    groups = [
        Group(name, tuple(sorted(items, key=lambda b: not b.is_baseline)))
        for name, items in members.items()
    ]
    orphans = {
        group.title: [b.label for b in group.benchmarks if b.in_test_baseline is None]
        for group in groups
        if not group.baselines
    }
    listed = "; ".join(f"group {g!r}: {', '.join(names)}" for g, names in orphans.items() if names)
    if listed:
        raise BenchmarkReportError(
            f"no baseline in {listed}. A group needs a benchmark whose name contains "
            f"{BASELINE_WORD!r}, or each benchmark an extra_info[{BASELINE_KEY!r}] naming the "
            "baseline it measures itself (benchmarks/README.md)"
        )
    return groups


def ratios_to_baselines(benchmark: Benchmark, group: Group) -> list[tuple[Benchmark, float]]:
    """The benchmark's median over each timed baseline's median of its group (none for itself)."""
    return [
        (baseline, benchmark.median / baseline.median)
        for baseline in group.baselines
        if baseline is not benchmark and baseline.median > 0
    ]


def quality_rows(benchmarks: Iterable[Benchmark]) -> list[QualityRow]:
    """The quality metrics of each benchmark's ``extra_info``, one row per variant."""
    rows: list[QualityRow] = []
    for benchmark in benchmarks:
        variants: dict[str, dict[str, float]] = {}
        for key, value in benchmark.extra_info.items():
            match = _METRIC.search(key)
            if match is None or not _is_number(value):
                continue
            metric = match["metric"].replace("_at_", "@")
            variant = (key[: match.start("metric")] + key[match.end("metric") :]).strip("_")
            variants.setdefault(variant, {})[metric] = float(value)
        rows.extend(QualityRow(benchmark.label, v, m) for v, m in variants.items())
    return rows


def ann_points(benchmarks: Iterable[Benchmark]) -> list[AnnPoint]:
    """The ``test_ann.py`` benchmarks that recorded ``recall_at_10``, as plot points."""
    points = []
    for benchmark in benchmarks:
        recall = benchmark.extra_info.get("recall_at_10")
        if benchmark.module != ANN_MODULE or not _is_number(recall) or benchmark.median <= 0:
            continue
        size = benchmark.params.get("size", 1)
        queries = size if isinstance(size, int) and size > 0 else 1
        index = benchmark.name.split("[", 1)[0].removeprefix("test_")
        nlist, nprobe = benchmark.extra_info.get("nlist"), benchmark.extra_info.get("nprobe")
        if nlist is not None:
            index += f" (IVF, nlist {nlist}, nprobe {nprobe})"
        speed = queries / benchmark.median
        points.append(AnnPoint(index, queries, speed, float(recall), benchmark.group))
    return points


def plot_ann(points: Sequence[AnnPoint], path: str | Path) -> Path:
    """Draw recall@10 against queries/s to a PNG: a colour per index, a marker per batch size.

    Needs matplotlib (ImportError without it).
    """
    if not points:
        raise BenchmarkReportError("no ANN results with recall_at_10 to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sizes = sorted({p.queries for p in points})
    markers = {size: "os^Dv<>p"[number % 8] for number, size in enumerate(sizes)}
    for number, index in enumerate(dict.fromkeys(p.index for p in points)):
        colour = colours[number % len(colours)]
        mine = sorted((p for p in points if p.index == index), key=lambda p: p.queries)
        axes.plot([p.queries_per_s for p in mine], [p.recall for p in mine], ":", color=colour)
        for p in mine:
            per_call = "1 query" if p.queries == 1 else f"{p.queries} queries"
            axes.plot(
                p.queries_per_s,
                p.recall,
                marker=markers[p.queries],
                markersize=8,
                linestyle="none",
                color=colour,
                label=f"{index}, {per_call} per call",
            )
    axes.set_xscale("log")
    axes.margins(x=0.25, y=0.15)
    axes.set_xlabel("queries/s (log scale)")
    axes.set_ylabel("recall@10")
    # the groups without their batch size: "ANN: 1,000,000 x 512, k=10"
    data = {_BATCH.sub("", p.group) for p in points if p.group is not None}
    axes.set_title("recall@10 against queries/s" + (f"\n{', '.join(sorted(data))}" if data else ""))
    axes.grid(True, which="both", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8)
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)
    temporary.replace(path)
    return path


def render_markdown(results: Results, *, plot: str | None = None, plot_note: str = "") -> str:
    """The report: machine, one timing table per group, quality, recorded values, ANN."""
    groups = group_benchmarks(results.benchmarks)
    lines = ["# Benchmark report", ""]
    lines += [*_header(results), "", "## Machine", "", *_machine(results.machine)]
    lines += ["", "## Timings", ""]
    lines += [
        "Medians per call, with the interquartile range and standard deviation of the rounds. "
        "`vs baseline` is the median over the timed baseline's median in the same run (below "
        "1x: faster than the baseline); `in test` names a baseline the test measured itself, "
        "with the ratios it recorded. Compare within a group, not across machines.",
    ]
    for group in groups:
        lines += ["", f"### {_cell(group.title)}", "", *_timing_table(group)]
    rows = quality_rows(results.benchmarks)
    lines += ["", "## Quality", ""]
    lines += _quality_table(rows) if rows else ["No benchmark recorded a quality metric."]
    lines += ["", "## Recorded values (extra_info)", "", *_extra_table(results.benchmarks)]
    points = ann_points(results.benchmarks)
    lines += ["", "## ANN: recall@10 against queries/s", ""]
    if plot is not None:
        lines += [f"![recall@10 against queries/s]({plot})", ""]
    if plot_note:
        lines += [plot_note, ""]
    if points:
        lines += [
            "| index | queries per call | queries/s | recall@10 |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {_cell(p.index)} | {p.queries} | {p.queries_per_s:,.1f} | {p.recall:.4f} |"
            for p in points
        ]
    elif not plot_note:
        lines.append(f"No {ANN_MODULE} benchmark with recall_at_10 in this run.")
    return "\n".join(lines).rstrip() + "\n"


def write_report(results_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``REPORT.md`` (and ``ann.png`` when matplotlib is installed) next to the results."""
    results = load_results(results_path)
    out = Path(out_dir) if out_dir is not None else Path(results_path).parent
    out.mkdir(parents=True, exist_ok=True)
    points = ann_points(results.benchmarks)
    plot, note = None, ""
    if not points:
        note = f"No plot: no {ANN_MODULE} benchmark with recall_at_10 in this run."
    else:
        try:
            plot = plot_ann(points, out / PLOT_NAME).name
        except ImportError:
            note = "No plot: matplotlib is not installed (pip install 'newwave-music[bench]')."
    if note:
        print(note, file=sys.stderr)
    report = out / REPORT_NAME
    text = render_markdown(results, plot=plot, plot_note=note)
    temporary = report.with_name(report.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "results", nargs="?", default=RESULTS_DIR / "latest.json", type=Path,
        help="a pytest-benchmark --benchmark-json file (default: benchmarks/results/latest.json)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="the directory for REPORT.md and ann.png "
        "(default: the results file's)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report = write_report(args.results, args.out)
    except BenchmarkReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report}")
    return 0


# -- formatting -----------------------------------------------------------------------------


def _header(results: Results) -> list[str]:
    commit = results.commit
    revision = str(commit.get("id") or "")[:10] or "unknown"
    if commit.get("dirty"):
        revision += " (uncommitted changes)"
    branch = f", branch {commit['branch']}" if commit.get("branch") else ""
    return [
        f"From `{results.source}`, written by pytest-benchmark {results.version} at "
        f"{results.datetime}; commit {revision}{branch}. {len(results.benchmarks)} benchmarks.",
    ]


def _machine(machine: Mapping[str, Any]) -> list[str]:
    cpu = machine.get("cpu")
    cpu = cpu if isinstance(cpu, dict) else {}
    rows = [
        ("node", machine.get("node")),
        ("CPU", cpu.get("brand_raw") or machine.get("processor")),
        ("logical cores", cpu.get("count")),
        ("clock", cpu.get("hz_actual_friendly") or cpu.get("hz_advertised_friendly")),
        ("architecture", machine.get("machine")),
        ("system", " ".join(str(machine.get(k) or "") for k in ("system", "release")).strip()),
        (
            "Python",
            f"{machine.get('python_implementation', '')} {machine.get('python_version', '')}",
        ),
    ]
    return ["| | |", "| --- | --- |"] + [
        f"| {name} | {_cell(str(value).strip())} |" for name, value in rows if value
    ]


def _timing_table(group: Group) -> list[str]:
    lines = [
        "| benchmark | median | IQR | stddev | rounds | vs baseline |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for b in group.benchmarks:
        ratios = ratios_to_baselines(b, group)
        if b in group.baselines:
            versus = "baseline"
        elif ratios:
            versus = "; ".join(_versus(base.name, r) for base, r in ratios)
        else:
            versus = f"in test: {b.in_test_baseline}"
            recorded = [(k, v) for k, v in b.extra_info.items() if _RATIO_KEY.search(k)]
            if recorded:
                versus += " (" + ", ".join(f"{k} {_value(v)}" for k, v in recorded) + ")"
        unit, scale = _unit(b.median)
        lines.append(
            f"| {_cell(b.name)} | {_number(b.median / scale)} {unit} | "
            f"{_number(b.iqr / scale)} {unit} | {_number(b.stddev / scale)} {unit} | "
            f"{b.rounds:,} | {_cell(versus)} |"
        )
    return lines


def _quality_table(rows: Sequence[QualityRow]) -> list[str]:
    metrics = list(dict.fromkeys(m for row in rows for m in row.metrics))
    lines = [
        "| benchmark | variant | " + " | ".join(metrics) + " |",
        "| --- | --- |" + " ---: |" * len(metrics),
    ]
    for row in rows:
        values = [f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in metrics]
        lines.append(
            f"| {_cell(row.benchmark)} | {_cell(row.variant)} | " + " | ".join(values) + " |"
        )
    return lines


def _extra_table(benchmarks: Sequence[Benchmark]) -> list[str]:
    recorded = [b for b in benchmarks if b.extra_info]
    if not recorded:
        return ["No benchmark recorded extra_info."]
    lines = ["| benchmark | values |", "| --- | --- |"]
    for b in recorded:
        values = ", ".join(f"{key} {_value(value)}" for key, value in b.extra_info.items())
        lines.append(f"| {_cell(b.label)} | {_cell(values)} |")
    return lines


def _unit(seconds: float) -> tuple[str, float]:
    for name, scale in _UNITS:
        if seconds >= scale:
            return name, scale
    return _UNITS[-1]


def _number(value: float) -> str:
    """Three significant digits, without exponents above 100: 0.0123, 4.56, 78.9, 1,234."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _versus(baseline: str, ratio: float) -> str:
    """A median over a baseline's: ``2.4x name``; ``0.0683x name (14.6x faster)`` below 1."""
    if 0 < ratio < 1:
        return f"{ratio:.3g}x {baseline} ({_number(1 / ratio)}x faster)"
    return f"{_number(ratio)}x {baseline}"


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    raise SystemExit(main())
