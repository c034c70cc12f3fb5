"""``replay diff`` on the terminal: the lines of :mod:`replay.diff.render` as rich tables.

The comparison and its text (cells, verdict, Markdown) are made in ``replay.diff``; this module
only lays them out and prints them, since the CLI is the only printer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay.cli.console import make_console, shown, visible
from replay.diff.render import (
    HEADERS,
    VM_HEADERS,
    cells,
    fault_lines,
    fault_summary,
    fidelity_line,
    header_lines,
    sampling_line,
    shown_rows,
    threshold_lines,
    verdict,
    vm_rows,
)

if TYPE_CHECKING:
    from rich.console import Console

    from replay.diff import Diff

MIN_WIDTH = 150
"""Columns of the view in a pipe or a file: the totals table's metric names are long."""


def _table(
    console: Console,
    title: str,
    headers: tuple[str, ...],
    body: list[tuple[str, ...]],
    styles: list[str | None] | None = None,
) -> None:
    """A table with its first and unnamed columns left, the figures right, on one line each."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i == 0 or h == "" else "right", no_wrap=True)
    for cells_, style in zip(body, styles or [None] * len(body), strict=True):
        t.add_row(*(shown(c) for c in cells_), style=style)  # VM names among them
    console.print(t)


def print_terminal(diff: Diff, *, show_all: bool = False, limit: int | None = 40) -> None:
    """The diff on the terminal: who, the verdict, fault accounting, totals, per VM."""
    console = make_console(min_width=MIN_WIDTH)

    def say(line: str) -> None:
        console.print(visible(line), markup=False)  # run folders and VM names among them

    fidelity = fidelity_line(diff)
    if fidelity is not None:
        say(fidelity)
    sampling = sampling_line(diff)
    if sampling is not None:
        say(sampling)
    for line in header_lines(diff):
        say(line)
    say(verdict(diff))
    accounting = fault_summary(diff)
    if accounting is not None:
        say(accounting)
        trans = fault_lines(diff)
        if trans:
            _table(console, "Changed faults by attribution", ("in A", "in B", "faults"), trans)
    rows, cut, same = shown_rows(diff, show_all, limit)
    if rows:
        colour = {"regression": "red", "improvement": "green"}
        _table(
            console,
            "Totals, regressions first (B against A; stall figures are estimates)",
            HEADERS,
            [cells(r) for r in rows],
            [colour.get(r.status) for r in rows],
        )
    else:
        say("no total changed")
    if cut:
        say(f"{cut} more changed totals not shown (--limit 0 shows all)")
    if same and not show_all:
        say(f"{same} unchanged totals hidden (--all shows them)")
    vms = vm_rows(diff)
    if vms and (show_all or any(v[-1] != "same" for v in vms)):
        listed = vms if show_all else [v for v in vms if v[-1] != "same"]
        _table(console, "Per VM (A -> B)", VM_HEADERS, listed)
    for line in threshold_lines(diff):
        say(line)
