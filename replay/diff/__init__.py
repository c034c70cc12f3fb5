"""``replay diff``: the exact difference between two runs.

:func:`diff_runs` compares two run directories metric by metric (:mod:`.metrics`) and fault by
fault (:mod:`.faults`); :mod:`.render` words the result for people (the lines of the terminal
view, Markdown) and :meth:`Diff.to_json` for programs. Nothing here prints: ``replay.cli``
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replay.diff.metrics import Row, Threshold, compare, config_changes, flatten, parse_threshold
from replay.errors import ReplayError
from replay.run.fidelity import sampling_note

if TYPE_CHECKING:
    from replay.diff.faults import FaultDiff
    from replay.run.load import RunDir

__all__ = ["Diff", "DifferentTracesError", "diff_runs"]


class DifferentTracesError(ReplayError):
    """The two runs replayed different traces."""


@dataclass
class Diff:
    """Two runs compared."""

    a: RunDir
    b: RunDir
    rows: list[Row]
    config: list[tuple[str, Any, Any]]
    faults: FaultDiff | None
    thresholds: list[tuple[Threshold, Row]] = field(default_factory=list)

    @property
    def same_trace(self) -> bool:
        """Whether both runs replayed the same trace (by fingerprint)."""
        return self.a.fingerprint == self.b.fingerprint

    def total(self, metric: str) -> Row:
        """The totals row of a metric."""
        return next(r for r in self.rows if r.scope == "total" and r.metric == metric)

    def _sampling(self) -> list[str]:
        """The sampling caveat of a DAMON-sampled trace's runs (MODEL.md D13), if any."""
        line = sampling_note([("A", self.a.summary), ("B", self.b.summary)])
        return [] if line is None else [line]

    @property
    def crossed(self) -> list[tuple[Threshold, Row]]:
        """The ``--fail-on`` thresholds the change crossed."""
        return [(t, r) for t, r in self.thresholds if t.crossed(r)]

    def to_json(self) -> dict[str, Any]:
        """The whole comparison as one JSON document."""

        def run(r: RunDir) -> dict[str, Any]:
            return {
                "path": str(r.path),
                "policy": r.policy,
                "engine": r.summary.get("engine"),
                "trace_fingerprint": r.fingerprint,
                "kvm_mmu_replay_version": r.summary.get("kvm_mmu_replay_version"),
            }

        return {
            "command": "diff",
            "a": run(self.a),
            "b": run(self.b),
            "same_trace": self.same_trace,
            "config_changes": [{"key": k, "a": va, "b": vb} for k, va, vb in self.config],
            "rows": [r.to_json() for r in self.rows],
            "faults": None if self.faults is None else self.faults.to_json(),
            "fail_on": [
                {
                    "threshold": t.text,
                    "metric": t.metric,
                    "change": t.value(r),
                    "crossed": t.crossed(r),
                }
                for t, r in self.thresholds
            ],
            "caveats": [
                "stall figures are estimates from the cost model, not measurements",
                *self._sampling(),
            ],
        }


def diff_runs(
    a: RunDir,
    b: RunDir,
    *,
    force: bool = False,
    fail_on: tuple[str, ...] = (),
    faults: bool = True,
) -> Diff:
    """Compare run B with run A (the baseline).

    Parameters
    ----------
    a, b : RunDir
        The runs, as :func:`replay.load_run` reads them; A is the baseline.
    force : bool, optional
        Compare runs of different traces (by fingerprint) anyway.
    fail_on : tuple of str, optional
        Thresholds such as ``"faults>2%"`` or ``"hits<-1%"`` on the change from A to B; the
        result's :attr:`Diff.crossed` lists those crossed.
    faults : bool, optional
        Also match the two runs' faults row by row (:attr:`Diff.faults`).

    Returns
    -------
    Diff
        Every metric of both runs, the settings that differ, and the fault-level comparison.

    Raises
    ------
    DifferentTracesError
        The runs replayed different traces and ``force`` is not set.
    ReplayError
        A threshold is not ``METRIC>LIMIT`` or ``METRIC<LIMIT``, or names an unknown metric.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import diff_runs, generate, load_run, load_scenario, open_trace
    >>> from replay import run_policies, write_runs
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> _ = write_runs(run_policies(open_trace("quick.parquet"), ("zap", "cache")), Path("runs"))
    >>> d = diff_runs(load_run(Path("runs/zap")), load_run(Path("runs/cache")))
    >>> d.faults.counts["only_a"], d.faults.counts["only_b"]  # faults only zap had
    (702, 0)
    >>> row = d.total("faults_by_attribution.zapped_page_tables")
    >>> row.a, row.b, row.status
    (702, 0, 'improvement')
    """
    if a.fingerprint != b.fingerprint and not force:
        raise DifferentTracesError(
            f"runs {a.path} and {b.path} replayed different traces "
            f"({a.summary['trace'].get('path')} and {b.summary['trace'].get('path')}); "
            "pass --force to compare them anyway"
        )
    known = set(flatten(a.summary["totals"])) | set(flatten(b.summary["totals"]))
    thresholds = [parse_threshold(text, known) for text in fail_on]
    rows = compare(a, b)
    fault_diff = None
    if faults:
        from replay.diff.faults import fault_diff as compute

        fault_diff = compute(a, b)
    result = Diff(a, b, rows, config_changes(a, b), fault_diff)
    result.thresholds = [(t, result.total(t.metric)) for t in thresholds]
    return result
