"""``replay run``: replay a trace under one or more shrinker policies."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replay.cli.console import (
    emit_json,
    fail,
    interrupted,
    make_console,
    note,
    progress,
    say_swept,
    shown,
    user_errors,
)
from replay.cli.options import (
    EngineChoice,
    ForceFlag,
    JsonFlag,
    MmuMode,
    ThreadsOption,
    TraceArgument,
)

if TYPE_CHECKING:
    from replay.trace.reader import TraceFile


@user_errors
def run(  # typer declares a command's options as its parameters: more than 8 here
    trace: TraceArgument,
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Policies, comma-separated: zap, none, cache.")
    ] = "zap,none,cache",
    mmu: Annotated[MmuMode | None, typer.Option(help="Replay every VM with this MMU mode.")] = None,
    engine: Annotated[
        EngineChoice, typer.Option(help="fast (vectorized) or reference (scalar).")
    ] = EngineChoice.FAST,
    costs: Annotated[
        Path | None,
        typer.Option(help="TOML file overriding the cost model's estimates.", readable=False),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="TOML file overriding the MMU model's constants.", readable=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Folder for the runs (default: runs/<trace file stem>).",
            readable=False,
        ),
    ] = None,
    bucket_ms: Annotated[
        float, typer.Option(help="Width of the timeline's time buckets, in ms.")
    ] = 100.0,
    force: ForceFlag = False,
    report: Annotated[
        bool,
        typer.Option("--report", help="Also write report.html (and its PNGs) beside the runs."),
    ] = False,
    threads: ThreadsOption = None,
    json_: JsonFlag = False,
) -> None:
    """Replay a trace under the shrinker policies and attribute every fault."""
    from replay.atomic import raise_if_disk_full
    from replay.mmu.config import CostModel, MmuConfig, parse_policies
    from replay.run.driver import run_policies
    from replay.run.folder import runs_folder
    from replay.run.outputs import caveats, write_runs
    from replay.run.span import bucket_ns_of

    policies = parse_policies(policy)
    bucket_ns = bucket_ns_of(bucket_ms)
    cost_model = CostModel.from_toml(costs) if costs is not None else CostModel()
    cfg = MmuConfig.from_toml(model) if model is not None else MmuConfig()
    tf = _open(trace, mmu)
    out_dir = output if output is not None else Path("runs") / trace.stem
    # Everything imported and built so far lives until the command ends: the cyclic collector
    # need not walk it again at every collection the replay's allocations trigger.
    gc.freeze()
    # The runs folder is locked and checked first (may the runs be written?), before a long
    # replay, and stays locked until the report is written.
    with runs_folder(out_dir, force=force) as folder:
        say_swept(folder.swept)
        try:
            with progress(f"replay {trace.name}", tf.num_rows) as update:
                replay = run_policies(
                    tf,
                    policies,
                    engine="reference" if engine is EngineChoice.REFERENCE else "fast",
                    cfg=cfg,
                    costs=cost_model,
                    bucket_ns=bucket_ns,
                    progress=update,
                    workdir=folder.staging,
                    threads=threads,
                )
            docs = write_runs(replay, out_dir, force=force, folder=folder)
        except OSError as exc:
            raise_if_disk_full(exc, out_dir, "runs folder")
            raise
        except (KeyboardInterrupt, RuntimeError) as exc:
            if not folder.swapped:
                raise  # the folder is as it was
            interrupted(exc, f"the runs in {out_dir} are complete")
        report_path = _report_phase(out_dir, docs) if report else None
    _tell(out_dir, docs, report_path, json_, caveats(replay), tf.meta.observed)


def _tell(
    out_dir: Path,
    docs: list[dict[str, Any]],
    report_path: Path | None,
    json_: bool,
    notes: list[str],
    observed: dict[str, Any],
) -> None:
    """Say what was written: JSON, or the tables with ``notes`` and what the log ``observed``.

    The runs are in place by now: a Ctrl-C here cuts short only what is printed, and says so.
    """
    try:
        if json_:
            _emit_json(out_dir, docs, report_path)
        else:
            _say_written(out_dir, docs, notes, observed, report_path)
    except (KeyboardInterrupt, RuntimeError) as exc:
        interrupted(exc, f"the runs in {out_dir} are complete", "while printing the results")


def _emit_json(out_dir: Path, docs: list[dict[str, Any]], report_path: Path | None) -> None:
    emit_json(
        {
            "command": "run",
            "output": str(out_dir),
            "runs": {d["policy"]: d for d in docs},
            "report": None if report_path is None else str(report_path),
        }
    )


def _say_written(
    out_dir: Path,
    docs: list[dict[str, Any]],
    notes: list[str],
    observed: dict[str, Any],
    report_path: Path | None,
) -> None:
    """The tables on stdout, and what was written on stderr."""
    _print_fidelity(docs)  # first: how much of the log the model explains (issue 12 item 19)
    _print_table(docs, notes)
    if observed.get("per_vm"):
        _print_observed(observed, docs)
    note(f"wrote {', '.join(str(out_dir / d['policy']) for d in docs)}")
    if report_path is not None:
        note(f"wrote {report_path} and its PNGs")


def _open(trace: Path, mmu: MmuMode | None) -> TraceFile:
    """The trace, with every VM's MMU mode set to ``mmu`` if given."""
    from replay.trace.reader import open_trace
    from replay.trace.schema import TraceMeta

    tf = open_trace(trace)
    if mmu is None:
        return tf
    meta = tf.meta
    vms = tuple(replace(vm, mmu_mode=mmu.value) for vm in meta.vms)
    return replace(
        tf, meta=TraceMeta(vms, meta.coverage, meta.provenance, meta.observed, meta.schema_version)
    )


def _report_phase(out_dir: Path, docs: list[dict[str, Any]]) -> Path:
    """The report of the runs just put in place; whatever stops it, the runs stay complete."""
    from replay.errors import ReplayError

    try:
        return _write_report(out_dir, docs)
    except (KeyboardInterrupt, RuntimeError) as exc:
        interrupted(exc, f"the runs in {out_dir} are complete", "while writing the report")
    except ReplayError as exc:
        fail(f"{exc}; the runs in {out_dir} are complete, write the report with replay report")


def _write_report(out_dir: Path, docs: list[dict[str, Any]]) -> Path:
    """``report.html`` of the runs just written, beside them."""
    from replay.report import write_report
    from replay.run.load import load_run

    report_path = out_dir / "report.html"
    write_report([load_run(out_dir / d["policy"]) for d in docs], report_path, force=True)
    return report_path


def _print_observed(observed: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """What the kernel's own events said (a converted trace), beside what each replay did."""
    from rich.table import Table

    per_vm = observed["per_vm"]

    def total(prefix: str) -> int:
        return sum(
            v for counts in per_vm.values() for k, v in counts.items() if k.startswith(prefix)
        )

    console = make_console()
    table = Table(title="Observed in the log vs replayed", title_justify="left")
    table.add_column("")
    table.add_column("log", justify="right")
    for d in docs:
        table.add_column(d["policy"], justify="right")
    scans = observed.get("kvm_shrinker_scans", {})
    rows = [
        ("page-table pages allocated", total("sp_new_"), "sps_allocated"),
        ("page-table pages zapped", total("sp_zapped_"), "sps_zapped"),
        ("KVM shrinker scan calls", scans.get("calls", 0), "scan_calls"),
        ("pages freed by the KVM shrinker", scans.get("freed", 0), "pages_freed"),
    ]
    for label, seen, key in rows:
        table.add_row(label, f"{seen:,}", *(f"{d['totals'][key]:,}" for d in docs))
    console.print(table)
    console.print(
        "note: the log counts what this host's kernel did (its MMU mode, its shrinker, all "
        "zap causes); a replay of a faults-only trace sees only the faults"
    )


def _print_fidelity(docs: list[dict[str, Any]]) -> None:
    """A faults-only trace: logged faults the model explains and does not, and likely why."""
    from rich.table import Table

    from replay.run.fidelity import FIDELITY_TITLE, NEVER_SEEN, fidelity_rows

    rows = fidelity_rows(docs)
    if not rows:
        return
    console = make_console()
    table = Table(title=FIDELITY_TITLE, title_justify="left")
    table.add_column("")
    for d in docs:
        table.add_column(d["policy"], justify="right")
    for label, cells in rows:
        table.add_row(label, *cells)
    console.print(table)
    reasons = docs[0]["trace"].get("likely_reasons", [])
    console.print("likely reasons for faults not explained:", markup=False)
    for reason in [*reasons, NEVER_SEEN]:
        console.print(f"  - {reason}", markup=False)
    console.print()


def _print_table(docs: list[dict[str, Any]], notes: list[str]) -> None:
    from rich.table import Table

    from replay.run.table import TITLE, policy_rows

    console = make_console()
    table = Table(title=TITLE, title_justify="left")
    table.add_column("")
    for d in docs:
        table.add_column(d["policy"], justify="right")
    for label, cells in policy_rows(docs):
        table.add_row(shown(label), *cells)  # a label may name a VM
    console.print(table)
    for line in notes:
        console.print(f"note: {shown(line)}")  # notes name files and VMs
