"""What a conversion read, used and skipped: nothing is dropped silently.

A :class:`ConvertReport` counts every line by what became of it; ``replay convert`` prints it
(``--json`` as is) and the messages of a log with nothing usable are built from it here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 5
"""Malformed lines quoted in the report (the rest are counted)."""


@dataclass
class FileReport:
    """One input log."""

    path: str
    layout: str = "unknown"
    compression: str = ""
    lines: int = 0
    sha256: str = ""
    first_t_ns: int | None = None
    last_t_ns: int | None = None
    fault_codes: str | None = None
    region_rows: int = 0
    """DAMON region rows it gave (its time span is then a DAMON record's)."""
    access_rows: int = 0


@dataclass
class ConvertReport:
    """Everything a conversion read, used and skipped."""

    files: list[FileReport] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    """Lines of each event the converter uses, by event name."""
    rows: Counter[str] = field(default_factory=Counter)
    """Trace rows written, by kind."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Lines (or rows) left out, by reason."""
    unknown_events: Counter[str] = field(default_factory=Counter)
    unused_events: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lost_events: int = 0
    reordered: int = 0
    """Lines kept but out of time order within the interleave window (rows re-sorted)."""
    access_source: str = ""
    vms: list[dict[str, Any]] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)
    coverage: str = "faults-only"
    damon: dict[str, Any] = field(default_factory=dict)
    """DAMON's regions: intervals and where they came from, bytes placed, per target."""

    @property
    def lines(self) -> int:
        """Lines read over all files."""
        return sum(f.lines for f in self.files)

    def malformed(self, where: str, text: str, reason: str) -> None:
        """Count a line that could not be read, quoting the first few."""
        self.skipped[reason] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {reason}: {text[:160]}")

    def to_json(self) -> dict[str, Any]:
        """The report as ``replay convert --json`` prints it."""
        return {
            "files": [vars(f) for f in self.files],
            "lines": self.lines,
            "events": dict(self.events),
            "rows": dict(self.rows),
            "skipped": dict(self.skipped),
            "unknown_events": dict(self.unknown_events),
            "unused_events": dict(self.unused_events),
            "lost_events": self.lost_events,
            "reordered": self.reordered,
            "examples": self.examples,
            "warnings": self.warnings,
            "access_source": self.access_source,
            "vms": self.vms,
            "coverage": self.coverage,
            **({"damon": self.damon} if self.damon else {}),
        }


def seen(report: ConvertReport) -> str:
    """What a log held, shortly: rows written, malformed and unknown lines."""
    parts = [f"{k} {v:,}" for k, v in report.rows.items() if v]
    parts += [f"{k} {v:,}" for k, v in report.skipped.most_common(2)]
    parts += [f"unknown {k} {v:,}" for k, v in report.unknown_events.most_common(2)]
    return ", ".join(parts) or "nothing"


def wrap_hint(report: ConvertReport) -> str:
    """A hint when event lines look broken in two (a mail client wraps long lines)."""
    cut = sum(v for k, v in report.skipped.items() if k.startswith("unreadable"))
    if cut and report.skipped["malformed line"] >= cut // 2:
        return " (lines broken in two, as a mail client wraps them? join them back)"
    return ""


def first_example(report: ConvertReport) -> str:
    """The first skipped line quoted, so that a message of a failed conversion names a line."""
    return f" (first: {report.examples[0][:200]})" if report.examples else ""


def nothing_usable(report: ConvertReport) -> str:
    """The message for logs without a single event a replay can use."""
    found = []
    if report.unknown_events:
        top = ", ".join(f"{k} {v:,}" for k, v in report.unknown_events.most_common(3))
        found.append(f"unknown events ({top})")
    if report.unused_events:
        top = ", ".join(f"{k} {v:,}" for k, v in report.unused_events.most_common(3))
        found.append(f"events a replay does not use ({top})")
    if report.skipped:
        top = ", ".join(f"{k} {v:,}" for k, v in report.skipped.most_common(3))
        found.append(f"skipped lines ({top})")
    what = "; ".join(found) or "no event lines"
    return (
        f"no event a replay can use in {report.lines:,} lines: {what}{wrap_hint(report)}"
        f"{first_example(report)}; capture "
        "kvm:kvm_page_fault (or kvmmmu:kvm_mmu_spte_requested) and vmscan:mm_shrink_slab_start/end"
    )
