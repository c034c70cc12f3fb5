"""``replay diff``: compare two runs, regressions first; ``--fail-on`` for CI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from replay.cli.console import emit_json, fail, note, sweep, user_errors
from replay.cli.options import JsonFlag

if TYPE_CHECKING:
    from replay.diff import Diff

THRESHOLD_EXIT = 4
"""Exit code when a ``--fail-on`` threshold is crossed."""


@user_errors
def diff(  # typer declares a command's options as its parameters: more than 8 here
    run_a: Annotated[
        Path, typer.Argument(help="Baseline run folder, e.g. runs/quick/zap.", readable=False)
    ],
    run_b: Annotated[
        Path, typer.Argument(help="Run to compare with it, e.g. runs/quick/cache.", readable=False)
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Do it anyway: compare runs of different traces, and replace an existing "
            "--faults file.",
        ),
    ] = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help=(
                "Exit 4 when B - A crosses a limit: METRIC>N, METRIC>N%, METRIC<-N (repeatable). "
                "METRIC is a key of summary.json's totals, nested keys joined by dots, e.g. "
                "faults or faults_by_attribution.zapped_page_tables."
            ),
        ),
    ] = None,
    faults: Annotated[
        Path | None,
        typer.Option(
            "--faults",
            help="Write the fault-level difference (only in A, only in B, changed) to this "
            ".parquet file.",
            readable=False,
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Show unchanged metrics as well.")
    ] = False,
    limit: Annotated[
        int, typer.Option(help="Rows of the metrics table on the terminal (0: no limit).")
    ] = 40,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print GitHub-flavoured Markdown on stdout.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Compare run B with run A: metrics (regressions first), per VM, and fault by fault."""
    from replay.diff import diff_runs
    from replay.diff.faults import write_fault_diff
    from replay.run.load import load_run

    if json_ and markdown:
        fail("choose one of --json and --markdown")
    from replay.fleet.load import is_fleet

    if is_fleet(run_a) or is_fleet(run_b):
        _fleet_diff(run_a, run_b, tuple(fail_on or ()), faults, show_all, limit, json_, markdown)
        return
    if faults is not None:
        _check_faults_output(faults, force)
    a, b = load_run(run_a), load_run(run_b)
    result = diff_runs(a, b, force=force, fail_on=tuple(fail_on or ()))
    if faults is not None and result.faults is not None:
        write_fault_diff(result.faults, faults, a, b, force=force)
    _show(result, faults, show_all, limit, json_, markdown)


def _show(
    result: Diff,
    faults: Path | None,
    show_all: bool,
    limit: int,
    json_: bool,
    markdown: bool,
) -> None:
    """The comparison on stdout in the form asked for; exit 4 past a --fail-on limit."""
    from replay.diff.render import markdown as render_markdown
    from replay.diff.render import threshold_lines

    if json_:
        emit_json(result.to_json())
    elif markdown:
        sys.stdout.write(render_markdown(result, show_all=show_all, limit=limit or None))
    else:
        from replay.cli.diff_view import print_terminal

        print_terminal(result, show_all=show_all, limit=limit or None)
    if faults is not None:
        note(f"wrote {faults}")
    crossed = result.crossed
    if crossed:
        for line in threshold_lines(result):
            if "CROSSED" in line and (json_ or markdown):
                note(line)
        note(f"{len(crossed)} --fail-on threshold(s) crossed; exit {THRESHOLD_EXIT}")
        raise typer.Exit(THRESHOLD_EXIT)


def _fleet_diff(
    fleet_a: Path,
    fleet_b: Path,
    fail_on: tuple[str, ...],
    faults: Path | None,
    show_all: bool,
    limit: int,
    json_: bool,
    markdown: bool,
) -> None:
    """``replay diff FLEET_A FLEET_B``: job by job and fleet-wide; exit 4 past a --fail-on."""
    from replay.cli.console import fail
    from replay.cli.fleet_view import print_fleet_diff
    from replay.fleet.diff import diff_fleets, markdown_fleet_diff
    from replay.fleet.load import load_fleet

    if faults is not None:
        fail("--faults compares two runs fault by fault; give two run folders of the fleets")
    result = diff_fleets(load_fleet(fleet_a), load_fleet(fleet_b), fail_on)
    if json_:
        emit_json(result.to_json())
    elif markdown:
        sys.stdout.write(markdown_fleet_diff(result, show_all=show_all, limit=limit or None))
    else:
        print_fleet_diff(result, show_all=show_all, limit=limit or None)
    crossed = result.crossed
    if crossed:
        if json_ or markdown:
            for t, r in crossed:
                note(f"--fail-on {t.text}: CROSSED at {r.scope}")
        note(f"{len(crossed)} --fail-on crossing(s); exit {THRESHOLD_EXIT}")
        raise typer.Exit(THRESHOLD_EXIT)


def _check_faults_output(faults: Path, force: bool) -> None:
    """Refuse an existing ``--faults`` file without ``force`` (and again when it is written)."""
    from replay.atomic import check_output_path

    check_output_path(faults, "--faults output")
    if faults.exists() and not force:
        fail(f"--faults output {faults} exists; pass --force to replace it or choose another path")
    sweep(faults.parent)
