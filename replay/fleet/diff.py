"""``replay diff FLEET_A FLEET_B``: two fleets compared job by job, and fleet-wide.

Jobs are matched by trace fingerprint, sweep point and policy, so a renamed trace still
matches and a trace only one fleet holds is listed, not compared. Fleet-wide figures are sums
over the matched jobs per policy and sweep point (and the stall per freed page is recomputed
from those sums). ``--fail-on`` takes the thresholds of ``replay diff`` on runs and applies each
to every fleet-wide figure and every trace: one crossing anywhere exits 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replay.diff.metrics import Row, Threshold, parse_threshold
from replay.errors import ReplayError
from replay.fleet.table import ID_COLUMNS, STATUS_COLUMNS

if TYPE_CHECKING:
    import polars as pl

    from replay.fleet.load import LoadedFleet

MATCH_ON = ("fingerprint", "point", "policy")
KEY_METRICS = (
    "faults_by_attribution.zapped_page_tables",
    "faults_by_attribution.cache_eviction",
    "pages_freed",
    "shrinker_stall_ns",
    "stall_per_freed_page",
)
"""The per-trace figures shown on the terminal (every metric is in ``--json``)."""


@dataclass
class FleetDiff:
    """Fleet B compared with fleet A."""

    a: str
    b: str
    fleet_rows: list[Row]
    """Scope ``<policy> @ <point>``: sums over the matched jobs."""
    trace_rows: list[Row]
    """Scope ``<trace> <policy> @ <point>``."""
    only_a: list[str]
    only_b: list[str]
    failed: list[str]
    thresholds: list[Threshold] = field(default_factory=list)

    @property
    def crossed(self) -> list[tuple[Threshold, Row]]:
        """Every (threshold, row) whose change crossed the limit."""
        return [
            (t, r)
            for t in self.thresholds
            for r in (*self.fleet_rows, *self.trace_rows)
            if r.metric == t.metric and t.crossed(r)
        ]

    def to_json(self) -> dict[str, Any]:
        """The diff as ``replay diff --json`` prints it for fleets."""
        return {
            "command": "diff",
            "kind": "fleet",
            "a": self.a,
            "b": self.b,
            "fleet": [r.to_json() for r in self.fleet_rows if r.status != "same"],
            "traces": [r.to_json() for r in self.trace_rows if r.status != "same"],
            "only_a": self.only_a,
            "only_b": self.only_b,
            "failed": self.failed,
            "fail_on": [
                {"threshold": t.text, "metric": t.metric, "scope": r.scope, "crossed": True}
                for t, r in self.crossed
            ],
        }


def _metrics(table: pl.DataFrame) -> list[str]:
    fixed = {*ID_COLUMNS, *STATUS_COLUMNS}
    return [
        c
        for c in table.columns
        if c not in fixed and table.schema[c].is_numeric() and not _is_sweep_key(table, c)
    ]


def _is_sweep_key(table: pl.DataFrame, column: str) -> bool:
    """Sweep keys' columns come right after ``point``, before ``policy``."""
    cols = table.columns
    return cols.index("point") < cols.index(column) < cols.index("policy")


def _label(row: dict[str, Any]) -> str:
    return f"{row['policy']} @ {row['point']}"


def diff_fleets(a: LoadedFleet, b: LoadedFleet, fail_on: tuple[str, ...] = ()) -> FleetDiff:
    """Compare fleet B with fleet A, job by job and fleet-wide."""
    import polars as pl

    ok_a = a.table.filter(pl.col("status") == "ok")
    ok_b = b.table.filter(pl.col("status") == "ok")
    metrics = [m for m in _metrics(ok_a) if m in set(_metrics(ok_b))]
    known = set(metrics)
    thresholds = [parse_threshold(t, known) for t in fail_on]
    keys_a = {tuple(r[k] for k in MATCH_ON): r for r in ok_a.iter_rows(named=True)}
    keys_b = {tuple(r[k] for k in MATCH_ON): r for r in ok_b.iter_rows(named=True)}
    both = [k for k in keys_a if k in keys_b]
    if not both:
        raise ReplayError(
            f"fleets {a.path} and {b.path} have no job in common (same trace fingerprint, sweep "
            "point and policy); compare fleets of the same traces"
        )
    trace_rows: list[Row] = []
    sums: dict[str, dict[str, list[float]]] = {}
    for key in both:
        ra, rb = keys_a[key], keys_b[key]
        scope = f"{ra['trace']} {_label(ra)}"
        for i, m in enumerate(metrics):
            trace_rows.append(Row(scope, m, ra[m], rb[m], i))
            if m != "stall_per_freed_page":
                acc = sums.setdefault(_label(ra), {}).setdefault(m, [0.0, 0.0])
                acc[0] += ra[m] or 0
                acc[1] += rb[m] or 0
    fleet_rows = []
    for scope, by_metric in sums.items():
        for i, m in enumerate(metrics):
            if m == "stall_per_freed_page":
                fa, fb = by_metric["pages_freed"], by_metric["shrinker_stall_ns"]
                va = fb[0] / fa[0] if fa[0] else None
                vb = fb[1] / fa[1] if fa[1] else None
                fleet_rows.append(Row(scope, m, va, vb, i))
            else:
                fleet_rows.append(Row(scope, m, by_metric[m][0], by_metric[m][1], i))

    def describe(t: pl.DataFrame, keys: set[tuple[Any, ...]]) -> list[str]:
        return [
            f"{r['trace']} {_label(r)}"
            for r in t.iter_rows(named=True)
            if tuple(r[k] for k in MATCH_ON) in keys
        ]

    failed = [
        f"{name}: {r['trace']} {_label(r)}: {r['error']}"
        for name, t in (("A", a.table), ("B", b.table))
        for r in t.filter(pl.col("status") == "failed").iter_rows(named=True)
    ]
    return FleetDiff(
        str(a.path),
        str(b.path),
        sorted(fleet_rows, key=Row.sort_key),
        sorted(trace_rows, key=Row.sort_key),
        describe(ok_a, set(keys_a) - set(keys_b)),
        describe(ok_b, set(keys_b) - set(keys_a)),
        failed,
        thresholds,
    )


HEADERS = ("scope", "metric", "A", "B", "change", "status")


def cells(r: Row) -> tuple[str, ...]:
    """A row's cells, as :data:`HEADERS` names them."""
    rel = r.relative
    change = "-" if rel is None else ("new" if abs(rel) == float("inf") else f"{rel:+.1%}")
    return (r.scope, r.metric, _n(r.a), _n(r.b), change, r.status)


def sections(d: FleetDiff, show_all: bool, limit: int | None) -> list[tuple[str, list[Row]]]:
    """The two tables both views show: fleet-wide, then the traces' key figures."""
    key_rows = [r for r in d.trace_rows if r.metric in KEY_METRICS]
    return [
        (
            "Fleet-wide (sums over the jobs both fleets ran)",
            [r for r in d.fleet_rows if show_all or r.status != "same"][:limit],
        ),
        (
            "Traces that changed most (key figures)",
            [r for r in key_rows if show_all or r.status != "same"][:limit],
        ),
    ]


def notes(d: FleetDiff) -> list[str]:
    """The lines after the tables: jobs one fleet holds, failed jobs, crossed thresholds."""
    return [
        *(f"only in A: {line}" for line in d.only_a),
        *(f"only in B: {line}" for line in d.only_b),
        *(f"failed in {line}" for line in d.failed),
        *(f"--fail-on {t.text}: CROSSED at {r.scope}" for t, r in d.crossed),
    ]


def markdown_fleet_diff(d: FleetDiff, *, show_all: bool = False, limit: int | None = 40) -> str:
    """The comparison as GitHub-flavoured Markdown (for pull requests and CI summaries)."""
    lines = ["## replay diff (fleets)", "", f"- A: `{d.a}`", f"- B: `{d.b}`", ""]
    for title, rows in sections(d, show_all, limit):
        lines += [f"### {title}", ""]
        if not rows:
            lines += ["No change.", ""]
            continue
        sep = ["---" if h in ("scope", "metric", "status") else "---:" for h in HEADERS]
        lines += ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join(sep) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
        lines.append("")
    lines += [f"- {line}" for line in notes(d)]
    lines += ["", "_Stall figures are estimates from the cost model, not measurements._", ""]
    return "\n".join(lines)


def _n(v: float | None) -> str:
    if v is None:
        return "undefined"
    return f"{v:,.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:,.2f}"
