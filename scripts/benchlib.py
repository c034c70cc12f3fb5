"""Benchmark results kept as data: one JSON record per run, compared with the last like it.

``scripts/bench.py`` hands every figure it prints to :func:`finish`, which builds a record (date,
git commit, machine, benchmark, arguments, figures), compares it with the last record of the same
benchmark and arguments in the history file, prints what got worse or better beyond the noise
margin, and appends the record. ``scripts/PERFORMANCE.md`` explains the figures and margins.

A figure in a record is ``{"value": x, "unit": u}``; a record imported from measurements kept
only as prose may hold ``{"range": [lo, hi], "unit": u}`` instead: a range over several runs, not
one run. A new value is then worse only if it is worse than the whole range by more than the
margin, and better only if it beats the whole range by more than the margin.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HISTORY = Path(__file__).with_name("bench-history.jsonl")
RECORD_VERSION = 1

Better = Literal["lower", "higher", "exact"]
Status = Literal["worse", "better", "same", "changed", "new", "gone"]

TIME_MARGIN = 0.10
"""Times (and rates and ratios of times) on the shared 2-core machine move by this much between
runs of the same code."""
MEMORY_MARGIN = 0.05
"""Peak resident memory is steadier than time."""


@dataclass(frozen=True)
class Figure:
    """One number a benchmark printed, and which way is better."""

    name: str
    value: float
    unit: str
    better: Better
    margin: float


def seconds(name: str, value: float) -> Figure:
    """A time: lower is better."""
    return Figure(name, value, "s", "lower", TIME_MARGIN)


def rate(name: str, value: float, unit: str) -> Figure:
    """A throughput: higher is better."""
    return Figure(name, value, unit, "higher", TIME_MARGIN)


def ratio(name: str, value: float, better: Better) -> Figure:
    """A ratio of two times."""
    return Figure(name, value, "x", better, TIME_MARGIN)


def memory(name: str, value: float) -> Figure:
    """A peak RSS in MiB: lower is better."""
    return Figure(name, value, "MiB", "lower", MEMORY_MARGIN)


def count(name: str, value: float, unit: str = "") -> Figure:
    """A number the code determines (faults, rows, lines): any change is a change of behaviour."""
    return Figure(name, value, unit, "exact", 0.0)


def git_commit(root: Path) -> str:
    """The checked-out commit, with ``-dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def machine() -> dict[str, Any]:
    """What the figures depend on besides the code: cores, memory, platform, Python."""
    memory_mib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mib = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_mib": memory_mib,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def make_record(
    benchmark: str,
    args: dict[str, Any],
    figures: list[Figure],
    *,
    commit: str,
    machine_info: dict[str, Any],
    date: str | None = None,
) -> dict[str, Any]:
    """One benchmark run as a JSON-ready record."""
    return {
        "record_version": RECORD_VERSION,
        "date": date or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": machine_info,
        "benchmark": benchmark,
        "args": args,
        "figures": {f.name: {"value": f.value, "unit": f.unit} for f in figures},
        "imported": False,
    }


def load_history(path: Path) -> list[dict[str, Any]]:
    """Every record of the history file, oldest first (none if the file does not exist)."""
    if not path.exists():
        return []
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            msg = f"{path}, line {lineno}: not a JSON record ({exc}); repair or remove the line"
            raise ValueError(msg) from None
    return records


def last_like(
    history: list[dict[str, Any]], benchmark: str, args: dict[str, Any]
) -> dict[str, Any] | None:
    """The last record of the same benchmark with the same arguments, if any."""
    same = [r for r in history if r.get("benchmark") == benchmark and r.get("args") == args]
    return same[-1] if same else None


@dataclass(frozen=True)
class Verdict:
    """How one figure compares with the previous record's."""

    name: str
    unit: str
    old: tuple[float, float] | None
    """The previous value as (lo, hi): equal ends for one run, a range for imported prose."""
    new: float | None
    status: Status
    margin: float


def _bounds(previous: dict[str, Any]) -> tuple[float, float]:
    if "range" in previous:
        lo, hi = previous["range"]
        return float(lo), float(hi)
    value = float(previous["value"])
    return value, value


def judge(figure: Figure, old: tuple[float, float]) -> Status:
    """Worse, better or the same as ``old``, given the figure's direction and noise margin."""
    lo, hi = old
    new, m = figure.value, figure.margin
    if figure.better == "exact":
        return "same" if lo <= new <= hi else "changed"
    if figure.better == "lower":
        if new > hi * (1 + m):
            return "worse"
        return "better" if new < lo * (1 - m) else "same"
    if new < lo * (1 - m):
        return "worse"
    return "better" if new > hi * (1 + m) else "same"


def compare(previous: dict[str, Any], figures: list[Figure]) -> list[Verdict]:
    """Every figure of this run against the previous record, and the figures it no longer has."""
    old_figures: dict[str, Any] = previous.get("figures", {})
    verdicts = []
    for f in figures:
        if f.name not in old_figures:
            verdicts.append(Verdict(f.name, f.unit, None, f.value, "new", f.margin))
            continue
        old = _bounds(old_figures[f.name])
        verdicts.append(Verdict(f.name, f.unit, old, f.value, judge(f, old), f.margin))
    names = {f.name for f in figures}
    for name, old_fig in old_figures.items():
        if name not in names:
            verdicts.append(
                Verdict(name, old_fig.get("unit", ""), _bounds(old_fig), None, "gone", 0)
            )
    return verdicts


def _num(x: float) -> str:
    if abs(x) >= 1000 or x == int(x):
        return f"{x:,.0f}"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.1f}"


def _old_text(old: tuple[float, float]) -> str:
    lo, hi = old
    return _num(lo) if lo == hi else f"{_num(lo)}..{_num(hi)}"


def describe(previous: dict[str, Any], verdicts: list[Verdict], here: dict[str, Any]) -> list[str]:
    """The comparison in plain words, worse figures first."""
    origin = "imported from the docs" if previous.get("imported") else "measured"
    lines = [
        f"compared with the last {previous['benchmark']} run with the same arguments "
        f"({previous.get('date', '?')}, commit {previous.get('commit', '?')}, {origin}):"
    ]
    there = previous.get("machine", {})
    lines.extend(
        f"  note: another machine ({key} {there[key]} then, {here[key]} now)"
        for key in ("cores", "memory_mib")
        if there.get(key) is not None and here.get(key) is not None and there[key] != here[key]
    )
    order = {"worse": 0, "changed": 1, "better": 2, "new": 3, "gone": 4, "same": 5}
    for v in sorted(verdicts, key=lambda v: order[v.status]):
        unit = f" {v.unit}" if v.unit else ""
        if v.status == "new":
            lines.append(f"  new      {v.name} = {_num(v.new or 0)}{unit} (not in that record)")
            continue
        assert v.old is not None
        if v.status == "gone":
            lines.append(f"  gone     {v.name} (was {_old_text(v.old)}{unit})")
            continue
        assert v.new is not None
        ref = v.old[1] if v.new >= v.old[1] else v.old[0]
        rel = f"{(v.new - ref) / ref * 100:+.1f} %" if ref else "from 0"
        label = {"worse": "WORSE", "better": "better", "same": "same", "changed": "CHANGED"}
        why = {
            "worse": f", beyond the {v.margin * 100:.0f} % noise margin",
            "better": f", beyond the {v.margin * 100:.0f} % noise margin",
            "same": "",
            "changed": ": this figure must not change; the code's behaviour did",
        }[v.status]
        lines.append(
            f"  {label[v.status]:<8} {v.name}: {_old_text(v.old)} -> {_num(v.new)}{unit} "
            f"({rel}{why})"
        )
    tally = {s: sum(v.status == s for v in verdicts) for s in order}
    lines.append(
        f"  {tally['worse']} worse, {tally['changed']} changed, {tally['better']} better, "
        f"{tally['same']} within the noise margin"
    )
    return lines


def finish(
    benchmark: str, args: dict[str, Any], figures: list[Figure], history: Path | None
) -> dict[str, Any]:
    """Compare the run with the history, print the comparison, and append the run's record."""
    root = Path(__file__).resolve().parents[1]
    record = make_record(benchmark, args, figures, commit=git_commit(root), machine_info=machine())
    if history is None:
        return record
    previous = last_like(load_history(history), benchmark, args)
    if previous is None:
        print(f"no earlier {benchmark} run with these arguments in {history}: nothing to compare")
    else:
        print("\n".join(describe(previous, compare(previous, figures), record["machine"])))
    with history.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"recorded in {history}")
    return record


def synth_to(scenario: str, accesses: int, path: Path, *extra: str) -> None:
    """``replay synth`` into ``path`` unless it exists (``extra``: e.g. ``--as ftrace``).

    Benchmarks keep their generated traces between runs; a fresh process writes them so the
    measurement's own process starts clean.
    """
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "replay",
                "synth",
                scenario,
                "--accesses",
                str(accesses),
                *extra,
                "-o",
                str(path),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
