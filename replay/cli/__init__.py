"""The ``replay`` command line: one module per subcommand, registered here.

Heavy libraries (numpy, pyarrow, polars) are imported inside the commands, so ``replay --help``
stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

import replay.cli._process  # noqa: F401  (tunes this process before numpy and pyarrow load)
from replay.cli import convert as convert_cmd
from replay.cli import diff as diff_cmd
from replay.cli import fleet as fleet_cmd
from replay.cli import inspect as inspect_cmd
from replay.cli import report as report_cmd
from replay.cli import run as run_cmd
from replay.cli import synth as synth_cmd
from replay.cli._guard import run_guarded

app = typer.Typer(
    name="replay",
    help=(
        "Replay guest memory accesses and host memory pressure through a model of the x86 KVM "
        "MMU, and attribute every guest fault to the MMU shrinker: zapped page tables, "
        "cache eviction, or neither."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("run")(run_cmd.run)
app.command("convert")(convert_cmd.convert)
app.command("synth")(synth_cmd.synth)
app.command("inspect")(inspect_cmd.inspect)
app.command("diff")(diff_cmd.diff)
app.command("report")(report_cmd.report)
app.command("fleet")(fleet_cmd.fleet)

COMMANDS = {"run", "convert", "synth", "inspect", "diff", "report", "fleet"}


def main() -> None:
    """Console-script entry point; handles the ``replay TRACE.parquet`` shorthand."""
    args = sys.argv[1:]
    debug = args[:1] == ["--debug"]
    if debug:
        args = args[1:]
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        first = Path(args[0])
        if first.suffix == ".parquet" or first.is_file():
            # `replay TRACE.parquet` is shorthand for `replay run TRACE.parquet`.
            args = ["run", *args]
    run_guarded(app, ["--debug", *args] if debug else args)
