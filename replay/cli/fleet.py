"""``replay fleet``: many traces, and sweeps of the model, on a Dask cluster (local by default)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replay.cli.console import emit_json, fail, note, user_errors
from replay.cli.options import JsonFlag, MmuMode

if TYPE_CHECKING:
    from replay.fleet.driver import FleetResult, FleetSettings

INTERRUPTED_EXIT = 130


@user_errors
def fleet(  # typer declares a command's options as its parameters: more than 8 here
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Traces, folders of traces (searched recursively), globs, or URIs "
            "(s3://bucket/prefix/, file:///path).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="The fleet folder (runs, fleet.parquet, fleet.json)."),
    ],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Policies, comma-separated: zap, none, cache.")
    ] = "zap,none,cache",
    mmu: Annotated[MmuMode | None, typer.Option(help="Replay every VM with this MMU mode.")] = None,
    costs: Annotated[
        Path | None, typer.Option(help="TOML file overriding the cost model's estimates.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="TOML file overriding the MMU model's constants.")
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=V1,V2,... over an MMU constant (cache_capacity=20,40,80) or a cost "
            "estimate (costs.refill_page_pressure_ns=1000,2500); several make a grid."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="A running Dask scheduler (tcp://HOST:PORT; default $DASK_SCHEDULER_ADDRESS), "
            "or inprocess (no cluster). Without it: a local cluster."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes of the local cluster (default: one per core).", min=1),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a fleet of other settings in the folder.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Replay many traces, under sweeps of the model, on a Dask cluster; compare the fleet."""
    from replay.fleet.driver import run_fleet

    settings = _settings(policy, mmu, costs, model, sweep or [])
    bar = _Progress()
    try:
        with bar:
            result = run_fleet(
                inputs,
                output,
                settings,
                scheduler=scheduler,
                workers=workers,
                force=force,
                on_plan=bar.planned,
                on_outcome=bar.ended,
            )
    except (KeyboardInterrupt, RuntimeError) as exc:
        from replay.cli._guard import TERMINATED_EXIT, Terminated, stop_behind

        stop = stop_behind(exc)
        if stop is None:
            raise  # a bug
        fail(
            f"interrupted; {bar.finished} finished job(s) are kept in {output}; run the same "
            "command again to resume",
            TERMINATED_EXIT if isinstance(stop, Terminated) else INTERRUPTED_EXIT,
        )
    _finish(result, output, json_)


def _settings(
    policy: str, mmu: MmuMode | None, costs: Path | None, model: Path | None, sweep: list[str]
) -> FleetSettings:
    """The fleet's settings from the options, each checked (one line on a mistake)."""
    from replay.fleet.driver import FleetSettings
    from replay.fleet.settings import parse_sweep
    from replay.mmu.config import CostModel, MmuConfig, parse_policies

    return FleetSettings(
        policies=parse_policies(policy),
        mmu=None if mmu is None else str(mmu.value),
        cfg=MmuConfig.from_toml(model) if model is not None else MmuConfig(),
        costs=CostModel.from_toml(costs) if costs is not None else CostModel(),
        sweeps=tuple(parse_sweep(s) for s in sweep),
    )


def _finish(result: FleetResult, output: Path, json_: bool) -> None:
    """Print the fleet's tables (or its JSON), the summary line, and exit 1 if a job failed."""
    from replay.cli.fleet_view import print_fleet

    if json_:
        emit_json({"command": "fleet", "output": str(output), **result.doc})
    else:
        print_fleet(result.doc)
    counts = result.doc["counts"]
    note(
        f"wrote {output}: {counts['jobs']} job(s) over {counts['traces']} trace(s): "
        f"{counts['done']} run, {counts['skipped']} already done, {counts['failed']} failed"
    )
    if result.failed:
        for job in result.failed:
            note(f"failed: {job['trace']} at {job['point']}: {job['error']}")
        raise typer.Exit(1)


class _Progress:
    """Jobs done of the total, accesses replayed per second, ETA and failures, on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("fleet"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[failures]}"),
            console=self.console,
            disable=not self.console.is_terminal,
            transient=True,
        )
        self.task: Any = None
        self.finished = 0
        self.failures = 0
        self.accesses = 0
        self.started = time.perf_counter()

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def planned(self, jobs: list[Any], pending: list[Any]) -> None:
        self.finished = len(jobs) - len(pending)
        self.started = time.perf_counter()
        self.task = self.progress.add_task(
            "fleet", total=len(jobs), completed=self.finished, rate="", failures=""
        )

    def ended(self, job: Any, outcome: dict[str, Any]) -> None:
        del job
        if outcome["status"] == "failed":
            self.failures += 1
        else:
            self.finished += 1
        self.accesses += int(outcome.get("accesses") or 0)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(
            self.task,
            advance=1,
            rate=f"{self.accesses / elapsed / 1e6:,.2f} M accesses/s",
            failures=f"{self.failures} failed" if self.failures else "",
        )
