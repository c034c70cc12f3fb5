"""``replay diff`` for people, as text: table cells, the verdict line, Markdown.

These return strings and print nothing: the terminal view (``replay.cli.diff_view``) lays the
same lines out as tables, and :func:`markdown` is a document a program can write anywhere (a
pull request comment, a CI summary), like :meth:`~replay.diff.Diff.to_json`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from replay.diff.metrics import Row
from replay.run.fidelity import sampling_note

if TYPE_CHECKING:
    from replay.diff import Diff

STATUS_TEXT = {
    "regression": "worse",
    "improvement": "better",
    "changed": "changed",
    "only_a": "only in A",
    "only_b": "only in B",
    "same": "same",
}
HEADERS = ("metric", "A", "B", "change", "relative", "")
VM_METRICS = (
    ("faults", "faults"),
    ("zapped page tables", "faults_by_attribution.zapped_page_tables"),
    ("cache eviction", "faults_by_attribution.cache_eviction"),
    ("pages freed", "pages_freed"),
)
SHRINKER_STALL = (
    "stall_ns_by_attribution.zapped_page_tables",
    "stall_ns_by_attribution.cache_eviction",
)
VM_HEADERS = ("VM", *(label for label, _ in VM_METRICS), "est. shrinker stall", "")


def value(metric: str, v: float | None) -> str:
    """A metric's value for people; ns figures in ms; null as 'undefined'."""
    if v is None:
        return "undefined"
    if metric.endswith("_ns") or "stall_ns" in metric or metric.endswith("stall_per_freed_page"):
        return duration(v)
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def duration(ns: float) -> str:
    """Nanoseconds in the largest unit that keeps the figure at or above 1."""
    size = abs(ns)
    if size == 0:
        return "0"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if size >= scale:
            return f"{ns / scale:,.1f} {unit}"
    return f"{ns:,.0f} ns"


def change(metric: str, d: float | None) -> str:
    """A signed change in the metric's unit."""
    if d is None:
        return ""
    text = value(metric, abs(d))
    return ("+" if d > 0 else "-" if d < 0 else "") + text


def relative(rel: float | None) -> str:
    """A relative change: ``+12.5%``; ``new`` when A was 0."""
    if rel is None:
        return ""
    if math.isinf(rel):
        return "new" if rel > 0 else "gone"
    return f"{rel * 100:+.1f}%"


def cells(row: Row) -> tuple[str, ...]:
    """One table row's text."""
    return (
        row.metric,
        value(row.metric, row.a),
        value(row.metric, row.b),
        change(row.metric, row.delta),
        relative(row.relative),
        STATUS_TEXT[row.status],
    )


def verdict(diff: Diff) -> str:
    """The one-line headline: total faults and their attribution, A to B."""

    def arrow(metric: str) -> str:
        r = diff.total(metric)
        if r.delta == 0:
            return f"{value(metric, r.a)} (same)"
        rel = relative(r.relative)
        return f"{value(metric, r.a)} -> {value(metric, r.b)}" + (f" ({rel})" if rel else "")

    return (
        f"faults {arrow('faults')}: zapped page tables "
        f"{arrow('faults_by_attribution.zapped_page_tables')}, cache eviction "
        f"{arrow('faults_by_attribution.cache_eviction')}, neither "
        f"{arrow('faults_by_attribution.none')}; pages freed {arrow('pages_freed')}"
    )


def fidelity_line(diff: Diff) -> str | None:
    """Runs of a faults-only trace: logged faults each run's model explains, A to B.

    Shown before anything else (issue 12 item 19): how much of the log the model accounts for
    says how far to trust the rest. None when neither run has the figures.
    """
    names = ("logged_faults", "faults_unexplained")
    got = {
        n: next((r for r in diff.rows if r.scope == "total" and r.metric == n), None) for n in names
    }
    logged, unexplained = got["logged_faults"], got["faults_unexplained"]
    if logged is None or unexplained is None:
        return None

    def side(n: float | None, u: float | None) -> str:
        if n is None or u is None:
            return "no figure (not a faults-only trace)"
        share = f" ({100 * u / n:.1f}%)" if n else ""
        return f"{int(u):,} of {int(n):,} logged faults{share}"

    return (
        f"fidelity (faults-only trace): logged faults the model does not explain (it replays "
        f"them as hits): A {side(logged.a, unexplained.a)}, B {side(logged.b, unexplained.b)}"
    )


def sampling_line(diff: Diff) -> str | None:
    """Runs of a DAMON-sampled trace: which figures are estimates, and how far off they were.

    None when neither run replayed a ``sampled`` or ``faults+sampled`` trace (MODEL.md D13).
    """
    return sampling_note([("A", diff.a.summary), ("B", diff.b.summary)])


def header_lines(diff: Diff) -> list[str]:
    """Who is compared with whom, and what differs besides the policy."""
    lines = []
    for tag, run in (("A", diff.a), ("B", diff.b)):
        lines.append(
            f"{tag}: {run.path}  (policy {run.policy}, engine {run.summary.get('engine')}, "
            f"trace {run.summary['trace'].get('path')})"
        )
    if not diff.same_trace:
        lines.append("warning: the runs replayed DIFFERENT traces (--force); faults matched by key")
    for key, va, vb in diff.config:
        if key != "policy":
            lines.append(f"setting differs: {key}: {va} -> {vb}")
    return lines


def shown_rows(diff: Diff, show_all: bool, limit: int | None) -> tuple[list[Row], int, int]:
    """The totals rows to print, how many changed ones the limit left out, how many are same."""
    totals = [r for r in diff.rows if r.scope == "total"]
    changed = [r for r in totals if r.status != "same"]
    same = len(totals) - len(changed)
    rows = totals if show_all else changed
    cut = 0
    if limit is not None and len(rows) > limit:
        cut = len(rows) - limit
        rows = rows[:limit]
    return rows, cut, same


def vm_rows(diff: Diff) -> list[tuple[str, ...]]:
    """Per VM, the headline metrics as 'A -> B', VMs with regressions first, then by change."""
    by_vm: dict[str, dict[str, Row]] = {}
    for r in diff.rows:
        if r.scope != "total":
            by_vm.setdefault(r.scope, {})[r.metric] = r
    names = {
        f"vm {k}": v.get("name", "")
        for run in (diff.b, diff.a)
        for k, v in run.summary["per_vm"].items()
    }

    def cell(r: Row | None) -> str:
        if r is None:
            return ""
        if r.delta == 0:
            return value(r.metric, r.a)
        return f"{value(r.metric, r.a)} -> {value(r.metric, r.b)}"

    out = []
    for scope, rows in by_vm.items():
        picked = [rows.get(metric) for _, metric in VM_METRICS]
        parts = [rows[m] for m in SHRINKER_STALL if m in rows]
        a_sum = None if any(p.a is None for p in parts) else sum(p.a or 0 for p in parts)
        b_sum = None if any(p.b is None for p in parts) else sum(p.b or 0 for p in parts)
        stall = Row(scope, "shrinker_stall_ns", a_sum, b_sum, 0) if parts else None
        faults = rows.get("faults")
        state = _vm_state(rows)
        size = abs(faults.delta or 0) if faults is not None else 0
        out.append(
            (
                (state != "worse", -size),
                (f"{scope} {names[scope]}".strip(), *map(cell, [*picked, stall]), state),
            )
        )
    return [cells for _, cells in sorted(out, key=lambda x: x[0])]


def _vm_state(rows: dict[str, Row]) -> str:
    """A VM's verdict: only in one run, worse, better, mixed, changed or same."""
    faults = rows.get("faults")
    if faults is not None and faults.b is None:
        return "only in A"
    if faults is not None and faults.a is None:
        return "only in B"
    statuses = {r.status for r in rows.values()}
    worse, better = "regression" in statuses, "improvement" in statuses
    if worse and better:
        return "mixed"
    if worse or better:
        return "worse" if worse else "better"
    return "changed" if statuses - {"same"} else "same"


def fault_lines(diff: Diff) -> list[tuple[str, ...]]:
    """Changed faults by attribution in A and in B."""
    if diff.faults is None:
        return []
    return [(t["a"], t["b"], f"{t['faults']:,}") for t in diff.faults.transitions]


def fault_summary(diff: Diff) -> str | None:
    """One line: how many faults each kind of change holds."""
    f = diff.faults
    if f is None:
        return None
    c = f.counts
    return (
        f"fault rows: {c['only_a']:,} only in A, {c['only_b']:,} only in B, "
        f"{c['attribution_changed']:,} attributed differently, {c['detail_changed']:,} changed "
        f"in cause, refill or cost, {f.same:,} unchanged"
    )


def threshold_lines(diff: Diff) -> list[str]:
    """One line per ``--fail-on`` threshold."""
    out = []
    for t, r in diff.thresholds:
        v = t.value(r)
        if v is None:
            shown = "undefined"
        elif t.percent:
            shown = relative(v / 100)
        else:
            shown = change(t.metric, v)
        state = "CROSSED" if t.crossed(r) else "ok"
        out.append(f"fail-on {t.text}: change {shown} ({STATUS_TEXT[r.status]}): {state}")
    return out


def markdown(diff: Diff, *, show_all: bool = False, limit: int | None = None) -> str:
    """The diff as GitHub-flavoured Markdown (for pull requests and CI summaries)."""

    def table(headers: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
        sep = ["---" if i == 0 or h == "" else "---:" for i, h in enumerate(headers)]
        out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return out

    lines = ["## replay diff", ""]
    fidelity = fidelity_line(diff)
    if fidelity is not None:
        lines += [f"**{fidelity[0].upper() + fidelity[1:]}.**", ""]
    lines += [f"- {line}" for line in header_lines(diff)]
    lines += ["", f"**{verdict(diff)}**", ""]
    accounting = fault_summary(diff)
    if accounting is not None:
        lines += [accounting[0].upper() + accounting[1:] + ".", ""]
        trans = fault_lines(diff)
        if trans:
            lines += [*table(("in A", "in B", "faults"), trans), ""]
    rows, cut, same = shown_rows(diff, show_all, limit)
    lines += ["### Totals, regressions first", ""]
    lines += table(HEADERS, [cells(r) for r in rows]) if rows else ["No total changed."]
    notes = []
    if cut:
        notes.append(f"{cut} more changed totals not shown.")
    if same and not show_all:
        notes.append(f"{same} unchanged totals hidden.")
    if notes:
        lines += ["", " ".join(notes)]
    vms = [v for v in vm_rows(diff) if show_all or v[-1] != "same"]
    if vms:
        lines += ["", "### Per VM (A -> B)", "", *table(VM_HEADERS, vms)]
    if diff.thresholds:
        lines += ["", *(f"- {t}" for t in threshold_lines(diff))]
    lines += ["", "_Stall figures are estimates from the cost model, not measurements._", ""]
    sampling = sampling_line(diff)
    if sampling is not None:
        lines[-1:] = [f"_{sampling}._", ""]
    return "\n".join(lines)
