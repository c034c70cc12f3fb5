"""``replay fleet`` and ``replay diff FLEET_A FLEET_B`` on the terminal, as rich tables.

The figures are made in ``replay.fleet`` (:mod:`~replay.fleet.figures`, the distributions in
``fleet.json``; :mod:`~replay.fleet.diff`, the comparison's cells); this module only lays them
out and prints them, since the CLI is the only printer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replay.cli.console import make_console

if TYPE_CHECKING:
    from rich.console import Console

    from replay.fleet.diff import FleetDiff


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _spread(d: dict[str, Any]) -> str:
    """``p50 (p90, max)``: the middle trace, a bad one, and the worst."""
    if not d.get("n"):
        return "undefined"
    return f"{_num(d['p50'])} ({_num(d['p90'])}, {_num(d['max'])})"


def _scaled(d: dict[str, Any], factor: float) -> dict[str, Any]:
    return {k: (v * factor if k != "n" and v is not None else v) for k, v in d.items()}


def _first_n(figures: dict[str, Any]) -> int:
    """How many traces a policy's distributions cover (the fault rates are always defined)."""
    return int(figures["faults_per_m_accesses.none"]["n"])


def print_fleet(doc: dict[str, Any], console: Console | None = None) -> None:
    """Print ``fleet.json``'s figures as tables.

    Per sweep point, the distributions across traces with the policies side by side; then the
    worst traces, the frontier of a sweep, and the failed jobs.
    """
    from rich.table import Table

    from replay.fleet.figures import key_figures

    console = console or make_console()
    for point, by_policy in doc.get("distributions", {}).items():
        table = Table(
            title=f"Across traces at sweep point {point}: p50 (p90, max); stall figures are "
            "estimates",
            title_justify="left",
        )
        table.add_column("")
        for policy in by_policy:
            table.add_column(policy, justify="right")
        table.add_row("traces", *(f"{_first_n(by_policy[p]):,}" for p in by_policy))
        for name, label in key_figures():
            if name == "shrinker_stall_ns":  # ms read more easily than nine-digit ns
                table.add_row(
                    "est. shrinker stall (ms)",
                    *(_spread(_scaled(by_policy[p][name], 1e-6)) for p in by_policy),
                )
                continue
            table.add_row(label, *(_spread(by_policy[p][name]) for p in by_policy))
        console.print(table)
    _print_worst(console, doc.get("worst", []))
    _print_frontier(console, doc.get("frontier", []))
    for job in doc.get("jobs", []):
        if job["status"] == "failed":
            console.print(f"failed: {job['trace']} at {job['point']}: {job['error']}")


def _print_worst(console: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not rows:
        return
    table = Table(
        title="Worst traces by estimated shrinker stall (their runs: fleet.json, the report)",
        title_justify="left",
    )
    for name in ("trace", "point", "policy", "shrinker stall", "pages freed", "per freed page"):
        table.add_column(name, justify="left" if name in ("trace", "point", "policy") else "right")
    for r in rows:
        per = r["stall_per_freed_page"]
        table.add_row(
            r["trace"],
            r["point"],
            r["policy"],
            f"{r['shrinker_stall_ns'] / 1e6:,.2f} ms",
            f"{r['pages_freed']:,}",
            "-" if per is None else f"{per:,.0f} ns",
        )
    console.print(table)


def _print_frontier(console: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    # Under none nothing is freed, nor where a policy freed nothing at any point: no choice.
    rows = [r for r in rows if any(p["pages_freed"] for p in r["points"])]
    if not rows:
        return
    table = Table(
        title="Frontier: sweep points no other beats on both pages freed and shrinker stall",
        title_justify="left",
    )
    table.add_column("trace")
    table.add_column("policy")
    table.add_column("points (pages freed / est. shrinker stall)")
    for r in rows:
        points = ", ".join(
            f"{p['point']} ({p['pages_freed']:,} / {p['shrinker_stall_ns'] / 1e6:,.2f} ms)"
            for p in r["points"]
        )
        table.add_row(r["trace"], r["policy"], points)
    console.print(table)


def print_fleet_diff(d: FleetDiff, *, show_all: bool = False, limit: int | None = 40) -> None:
    """The comparison on the terminal: fleet-wide changes, then the traces that changed most."""
    from rich.table import Table

    from replay.fleet.diff import HEADERS, cells, notes, sections

    console = make_console()
    console.print(f"A: {d.a}\nB: {d.b}")
    for title, rows in sections(d, show_all, limit):
        table = Table(title=title, title_justify="left")
        for name in HEADERS:
            table.add_column(name, justify="right" if name in ("A", "B", "change") else "left")
        for r in rows:
            table.add_row(*cells(r))
        console.print(table)
        if not rows:
            console.print("no change")
    for line in notes(d):
        console.print(line)
