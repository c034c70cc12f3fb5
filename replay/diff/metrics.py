"""The metric-by-metric comparison of two runs' ``summary.json``.

Every number of ``totals`` (and of each VM's block) is a metric, named by its key path with
dots (``faults``, ``faults_by_attribution.zapped_page_tables``). Each metric has a direction:
fewer faults, refills, page-table pages and less stall are better; more freed pages and more
hits are better; counts that describe the input, the pressure or what the shrinker did (accesses,
reclaim passes, scan calls, pages freed) have none: freeing fewer pages is the point of a policy
such as ``none``, and what freeing costs is weighed by ``stall_per_freed_page``. A row is a
regression when B moved the worse way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from replay.errors import ReplayError

if TYPE_CHECKING:
    from replay.run.load import RunDir

Status = Literal["regression", "only_a", "only_b", "improvement", "changed", "same"]
STATUS_ORDER: dict[Status, int] = {
    "regression": 0,
    "improvement": 1,
    "only_a": 2,
    "only_b": 2,
    "changed": 3,
    "same": 4,
}

_LOWER_IS_BETTER = (
    "faults",
    "faults_by_attribution.",
    "faults_by_cause.",
    "refills_by_kind.natural",
    "refills_by_kind.shrinker",
    "pages_refilled",
    "sps_",
    "scan_flush_ns",
    "stall_ns_by_attribution.",
    "stall_per_freed_page",
    "peak_",
)
_HIGHER_IS_BETTER = ("hits",)
_NEUTRAL = ("faults_by_attribution.none", "refills_by_kind.none")
"""Faults attributed to neither shrinker action: a change there is a consequence, not a cost."""


def direction(metric: str) -> int:
    """-1 when lower is better, +1 when higher is better, 0 when neither."""
    if metric in _NEUTRAL:
        return 0
    if _matches(metric, _HIGHER_IS_BETTER):
        return 1
    if _matches(metric, _LOWER_IS_BETTER):
        return -1
    return 0


def _matches(metric: str, patterns: tuple[str, ...]) -> bool:
    """A pattern ending in ``.`` or ``_`` is a prefix; any other must match whole."""
    return any(metric == p or (p.endswith((".", "_")) and metric.startswith(p)) for p in patterns)


def flatten(block: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Numbers (and nulls) of a summary block by dotted key; strings are left out."""
    out: dict[str, float | None] = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[name] = value
    return out


@dataclass(frozen=True)
class Row:
    """One metric in one scope, in both runs."""

    scope: str
    """``total`` or ``vm <id>``."""
    metric: str
    a: float | None
    b: float | None
    order: int
    """Position in the summary, to keep ties in a stable, readable order."""

    @property
    def delta(self) -> float | None:
        """B - A, when both runs have a value."""
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def relative(self) -> float | None:
        """(B - A) / A; infinite when A is 0 and B is not; None when undefined."""
        d = self.delta
        if d is None or self.a is None:
            return None
        if self.a == 0:
            return 0.0 if d == 0 else math.copysign(math.inf, d)
        return d / abs(self.a)

    @property
    def status(self) -> Status:
        """How B compares with A for this metric."""
        if self.a is None and self.b is None:
            return "same"
        if self.a is None:
            return "only_b"
        if self.b is None:
            return "only_a"
        d = self.b - self.a
        if d == 0:
            return "same"
        sense = direction(self.metric)
        if sense == 0:
            return "changed"
        return "regression" if d * sense < 0 else "improvement"

    def sort_key(self) -> tuple[int, float, int, int]:
        """Regressions first, then larger relative changes, totals before VMs."""
        rel = self.relative
        size = math.inf if rel is None else abs(rel)
        return (STATUS_ORDER[self.status], -size, self.scope != "total", self.order)

    def to_json(self) -> dict[str, Any]:
        """The row for ``--json``; an infinite relative change is null with ``new`` true."""
        rel = self.relative
        return {
            "scope": self.scope,
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "relative": None if rel is None or math.isinf(rel) else rel,
            "new": rel is not None and math.isinf(rel),
            "status": self.status,
            "direction": {-1: "lower_is_better", 1: "higher_is_better", 0: "none"}[
                direction(self.metric)
            ],
        }


def _rows(scope: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[Row]:
    fa = flatten(a) if a is not None else {}
    fb = flatten(b) if b is not None else {}
    names = list(fa) + [k for k in fb if k not in fa]
    rows = []
    for i, name in enumerate(names):
        va = fa.get(name) if a is not None else None
        vb = fb.get(name) if b is not None else None
        rows.append(Row(scope, name, va, vb, i))
    return rows


def compare(a: RunDir, b: RunDir) -> list[Row]:
    """Every metric of the totals and of each VM, regressions first, then by size of change."""
    rows = _rows("total", a.summary["totals"], b.summary["totals"])
    vm_a, vm_b = a.summary["per_vm"], b.summary["per_vm"]
    for vm in list(vm_a) + [v for v in vm_b if v not in vm_a]:
        rows += _rows(f"vm {vm}", vm_a.get(vm), vm_b.get(vm))
    return sorted(rows, key=Row.sort_key)


def config_changes(a: RunDir, b: RunDir) -> list[tuple[str, Any, Any]]:
    """Settings that differ between the runs: policy, engine, model constants, costs, buckets."""

    def settings(run: RunDir) -> dict[str, Any]:
        out: dict[str, Any] = {k: run.summary.get(k) for k in ("policy", "engine")}
        out.update({f"config.{k}": v for k, v in flatten(run.summary["config"]).items()})
        out.update(
            {f"vm {k} mmu_mode": v.get("mmu_mode") for k, v in run.summary["per_vm"].items()}
        )
        return out

    sa, sb = settings(a), settings(b)
    keys = list(sa) + [k for k in sb if k not in sa]
    return [(k, sa.get(k), sb.get(k)) for k in keys if sa.get(k) != sb.get(k)]


@dataclass(frozen=True)
class Threshold:
    """``--fail-on METRIC>LIMIT``: crossed when B - A (or its percentage of A) passes LIMIT."""

    text: str
    metric: str
    op: Literal[">", "<"]
    limit: float
    percent: bool

    def value(self, row: Row) -> float | None:
        """The change the threshold is tested on, or None when it is undefined."""
        if self.percent:
            rel = row.relative
            return None if rel is None else rel * 100
        return row.delta

    def crossed(self, row: Row) -> bool:
        """Whether the change crossed the limit; a metric only one run has counts as crossed."""
        if row.status in ("only_a", "only_b"):
            return True
        v = self.value(row)
        if v is None:
            return False
        return v > self.limit if self.op == ">" else v < self.limit


_THRESHOLD = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*([<>])\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*$")


def parse_threshold(text: str, known: set[str]) -> Threshold:
    """Parse ``METRIC>N``, ``METRIC>N%``, ``METRIC<-N`` or ``METRIC<-N%``."""
    m = _THRESHOLD.match(text)
    if m is None:
        raise ReplayError(
            f"--fail-on {text!r}: write METRIC>LIMIT or METRIC<LIMIT, e.g. faults>0 or "
            "stall_ns_by_attribution.zapped_page_tables>5%"
        )
    metric, op, limit, pct = m.groups()
    if metric not in known:
        import difflib

        close = difflib.get_close_matches(metric, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ReplayError(
            f"--fail-on {text!r}: unknown metric {metric!r}{hint} (metrics are the keys of "
            "summary.json's totals, nested ones joined by dots, e.g. faults_by_attribution.none)"
        )
    return Threshold(text.strip(), metric, ">" if op == ">" else "<", float(limit), pct == "%")
