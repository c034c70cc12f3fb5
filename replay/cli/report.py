"""``replay report``: an HTML report (plots inline) and the same plots as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replay.cli.console import emit_json, fail, note, sweep, user_errors
from replay.cli.options import ForceFlag, JsonFlag


def default_output(runs: list[Path]) -> Path:
    """``report.html`` in the folder that holds the runs, when they share one."""
    from replay.run.load import is_run

    parents = {(p.parent if is_run(p) else p).resolve() for p in runs}
    if len(parents) == 1:
        return Path(parents.pop()) / "report.html"
    return Path("report.html")


@user_errors
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders (runs/quick/zap), or folders of runs (runs/quick: every policy).",
            readable=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="The HTML file (default: report.html beside the runs). PNGs go beside it.",
            readable=False,
        ),
    ] = None,
    force: ForceFlag = False,
    json_: JsonFlag = False,
) -> None:
    """Write one self-contained HTML report of runs, with its plots also as PNGs."""
    from replay.fleet.load import is_fleet

    if len(runs) == 1 and is_fleet(runs[0]):
        _fleet_report(runs[0], output, force, json_)
        return
    from replay.report import write_report
    from replay.report.data import expand

    loaded = expand(runs)
    out = output if output is not None else default_output(runs)
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"report {out} must end in .html (the PNGs are written beside it)")
    if out.parent.is_dir():
        sweep(out.parent)
    result = write_report(loaded, out, force=force)
    if json_:
        emit_json(
            {
                "command": "report",
                "html": str(result.html),
                "pngs": [str(p) for p in result.pngs],
                "runs": [str(r.path) for r in loaded],
            }
        )
        return
    note(f"wrote {result.html} ({len(loaded)} runs) and {len(result.pngs)} PNGs beside it")


def _fleet_report(folder: Path, output: Path | None, force: bool, json_: bool) -> None:
    """``replay report FLEET_DIR``: the fleet's report (default: FLEET_DIR/report.html)."""
    from replay.fleet.load import load_fleet
    from replay.fleet.report import write_fleet_report

    out = output if output is not None else folder / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        from replay.cli.console import fail

        fail(f"report {out} must end in .html (the PNGs are written beside it)")
    result = write_fleet_report(load_fleet(folder), out, force=force)
    if json_:
        emit_json(
            {
                "command": "report",
                "html": str(result.html),
                "pngs": [str(p) for p in result.pngs],
                "fleet": str(folder),
            }
        )
        return
    note(f"wrote {result.html} (fleet {folder}) and {len(result.pngs)} PNGs beside it")
