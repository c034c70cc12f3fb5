"""``replay run``: replay a trace under one or more shrinker policies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from replay.cli.console import emit_json, fail, note, progress, user_errors

ENGINES = ("fast", "reference")
MMU_MODES = ("tdp_mmu", "shadow_direct")


@user_errors
def run(
    trace: Annotated[Path, typer.Argument(help="A trace file (.parquet).")],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Policies, comma-separated: zap, none, cache.")
    ] = "zap,none,cache",
    mmu: Annotated[
        str | None,
        typer.Option(help="Replay every VM with this MMU mode: tdp_mmu or shadow_direct."),
    ] = None,
    engine: Annotated[str, typer.Option(help="fast (vectorized) or reference (scalar).")] = "fast",
    costs: Annotated[
        Path | None, typer.Option(help="TOML file overriding the cost model's estimates.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Folder for the runs (default: runs/<trace file stem>)."
        ),
    ] = None,
    bucket_ms: Annotated[
        float, typer.Option(help="Width of the timeline's time buckets, in ms.")
    ] = 100.0,
    force: Annotated[bool, typer.Option("--force", help="Replace existing runs.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Replay a trace under the shrinker policies and attribute every fault."""
    from replay.mmu.config import CostModel, MmuConfig, parse_policies
    from replay.run.driver import run_policies
    from replay.run.outputs import caveats, run_staging, write_runs
    from replay.trace.reader import open_trace
    from replay.trace.schema import TraceMeta

    policies = parse_policies(policy)
    if engine not in ENGINES:
        fail(f"unknown engine {engine!r}; use fast or reference")
    if mmu is not None and mmu not in MMU_MODES:
        fail(f"unknown MMU mode {mmu!r}; use tdp_mmu or shadow_direct")
    if bucket_ms <= 0:
        fail(f"--bucket-ms {bucket_ms:g} must be > 0")
    cost_model = CostModel.from_toml(costs) if costs is not None else CostModel()
    tf = open_trace(trace)
    if mmu is not None:
        vms = tuple(replace(vm, mmu_mode=mmu) for vm in tf.meta.vms)
        tf = replace(
            tf,
            meta=TraceMeta(
                vms, tf.meta.coverage, tf.meta.provenance, tf.meta.observed, tf.meta.schema_version
            ),
        )
    out_dir = output if output is not None else Path("runs") / trace.stem
    for p in policies:
        if (out_dir / p).exists() and not force:
            fail(
                f"run directory {out_dir / p} exists; pass --force to replace it or choose "
                "another -o"
            )
    with run_staging(out_dir, policies, force=force) as staging:
        with progress(f"replay {trace.name}", tf.num_rows) as update:
            replay = run_policies(
                tf,
                policies,
                engine="reference" if engine == "reference" else "fast",
                cfg=MmuConfig(),
                costs=cost_model,
                bucket_ns=int(bucket_ms * 1e6),
                progress=update,
                workdir=staging,
            )
        docs = write_runs(replay, out_dir, force=force, staging=staging)
    if json_:
        emit_json(
            {
                "command": "run",
                "output": str(out_dir),
                "runs": {d["policy"]: d for d in docs},
            }
        )
        return
    _print_table(docs, caveats(replay))
    note(f"wrote {', '.join(str(out_dir / d['policy']) for d in docs)}")


def _fmt(value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return f"{value:,}"


def _ms(ns: int) -> str:
    if ns and ns < 1_000_000:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns / 1e6:,.1f} ms"


def _print_table(docs: list[dict[str, Any]], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    table = Table(title="Policies side by side (stall figures are estimates)", title_justify="left")
    table.add_column("")
    for d in docs:
        table.add_column(d["policy"], justify="right")

    def row(label: str, get: Any, fmt: Any = _fmt) -> None:
        table.add_row(label, *(fmt(get(d["totals"])) for d in docs))

    row("accesses", lambda t: t["accesses"])
    row("faults", lambda t: t["faults"])
    row("  zapped page tables", lambda t: t["faults_by_attribution"]["zapped_page_tables"])
    row("  cache eviction", lambda t: t["faults_by_attribution"]["cache_eviction"])
    row("  neither", lambda t: t["faults_by_attribution"]["none"])
    for cause in ("cold", "zapped", "notifier", "recycled", "invalidated", "mmio"):
        row(f"  cause {cause}", lambda t, c=cause: t["faults_by_cause"][c])
    row("refills natural", lambda t: t["refills_by_kind"]["natural"])
    row("refills after shrinker", lambda t: t["refills_by_kind"]["shrinker"])
    row("pages refilled", lambda t: t["pages_refilled"])
    row(
        "SPs allocated / relinked",
        lambda t: (t["sps_allocated"], t["sps_relinked"]),
        lambda v: f"{v[0]:,} / {v[1]:,}",
    )
    row("pages freed by shrinker", lambda t: t["pages_freed"])
    row("scan calls", lambda t: t["scan_calls"])
    row("peak SP pages", lambda t: t["peak_sp_pages"])
    row("peak cache pages", lambda t: t["peak_cache_pages"])
    row(
        "est. stall, zapped tables",
        lambda t: t["stall_ns_by_attribution"]["zapped_page_tables"],
        _ms,
    )
    row("est. stall, cache eviction", lambda t: t["stall_ns_by_attribution"]["cache_eviction"], _ms)
    row("est. TLB flushes of scans", lambda t: t["scan_flush_ns"], _ms)
    row(
        "est. stall per freed page",
        lambda t: t["stall_per_freed_page"],
        lambda v: "undefined (nothing freed)" if v is None else f"{v:,.0f} ns",
    )
    table.add_row("engine time", *(f"{d['wall_s']:.2f} s ({d['engine']})" for d in docs))
    console.print(table)
    for line in notes:
        console.print(f"note: {line}")
