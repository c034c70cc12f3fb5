"""``replay synth``: generate a trace from a scenario."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replay.cli.console import emit_json, fail, note, progress, sweep, user_errors
from replay.cli.options import (
    DamonFormat,
    DamonFormatOption,
    DamonIntervalsOption,
    FaultsUnderOption,
    ForceFlag,
    JsonFlag,
    SynthAs,
    SynthAsOption,
)

if TYPE_CHECKING:
    from replay.synth import SynthResult
    from replay.trace.reader import TraceFile


@user_errors
def synth(  # typer declares a command's options as its parameters: more than 8 here
    scenario: Annotated[
        str | None,
        typer.Argument(help="A shipped scenario's name (see --list) or a path to a .toml file."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Trace file to write (default: <scenario name>.parquet).",
            readable=False,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (overrides the scenario's).")
    ] = None,
    accesses: Annotated[
        int | None,
        typer.Option(help="Total guest accesses; every vCPU's rate is scaled to meet it."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Trace length in seconds (overrides the scenario's).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="NAME=VALUE",
            help="Give a scenario variable a value (repeatable): --set vcpus=4 --set mem=256MiB.",
        ),
    ] = None,
    force: ForceFlag = False,
    as_: SynthAsOption = None,
    damon_format: DamonFormatOption = DamonFormat.FTRACE,
    damon_intervals: DamonIntervalsOption = None,
    faults_under: FaultsUnderOption = None,
    list_: Annotated[bool, typer.Option("--list", help="List the shipped scenarios.")] = False,
    json_: JsonFlag = False,
) -> None:
    """Generate a seeded synthetic trace from a scenario file."""
    from replay.synth import generate, list_scenarios, load_scenario

    if list_:
        _list(list_scenarios(), json_)
        return
    if scenario is None:
        fail(
            "give a SCENARIO (a name or a .toml path); replay synth --list shows the shipped ones",
            2,
        )
    sc = load_scenario(
        scenario,
        seed=seed,
        accesses=accesses,
        duration_s=duration,
        variables=_assignments(set_ or []),
    )
    how = _how(as_, damon_format, damon_intervals, faults_under)
    suffix = ".parquet" if as_ is None else f".{as_.value}.txt"
    out = output if output is not None else Path(f"{sc.name}{suffix}")
    if out.exists() and not force:
        fail(f"output {out} exists; pass --force to overwrite it or choose another -o")
    sweep(out.parent)
    if as_ is not None:
        _render(sc, out, (as_.value, how), json_, force=force)
        return
    with progress(f"synth {sc.name}", 1) as update:
        result = generate(sc, out, progress=update, force=force)
    _written(result, sc.name, sc.seed, json_)


def _how(
    as_: SynthAs | None,
    damon_format: DamonFormat,
    damon_intervals: str | None,
    faults_under: str | None,
) -> str:
    """What ``--as`` renders besides the layout: ``FORMAT[:SAMPLE_US,AGGR_US]`` or ``none``."""
    if faults_under not in (None, "none") or (faults_under and as_ in (None, SynthAs.DAMON)):
        fail("--faults-under takes none, with --as ftrace, perf or trace-cmd")
    how = (damon_format.value if as_ == SynthAs.DAMON else faults_under) or ""
    if damon_intervals is not None:
        from replay.convert.options import parse_intervals

        sample_us, aggr_us = parse_intervals(damon_intervals)
        if sample_us <= 0 or aggr_us < sample_us or as_ != SynthAs.DAMON:
            fail("--damon-intervals goes with --as damon: SAMPLE_US > 0 and AGGR_US >= it")
        how += f":{sample_us},{aggr_us}"
    return how


def _written(result: SynthResult, name: str, seed: int, as_json: bool) -> None:
    """Say what a generation wrote: JSON on stdout, or one line on stderr."""
    out = result.path
    if as_json:
        emit_json(
            {
                "command": "synth",
                "output": str(out),
                "scenario": name,
                "seed": seed,
                "rows": result.rows,
                "accesses": result.accesses,
                "host_events": result.host_events,
                "size_bytes": out.stat().st_size,
            }
        )
        return
    note(
        f"wrote {out}: {result.rows:,} events ({result.accesses:,} accesses, "
        f"{result.host_events:,} host events), scenario {name}, seed {seed}"
    )


def _assignments(items: list[str]) -> dict[str, str]:
    """``--set NAME=VALUE`` options as a mapping; a later one for the same name wins."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            fail(f"--set {item!r}: write NAME=VALUE, e.g. --set vcpus=4")
        out[name.strip()] = value.strip()
    return out


def _render(
    sc: object, out: Path, layout_how: tuple[str, str], as_json: bool, *, force: bool
) -> None:
    """Generate into a temporary trace beside ``out``, then render it as ``layout`` text.

    ``layout_how`` is (layout, how): ``("damon", damon format)`` for DAMON's record,
    ``(layout, "none")`` for only the faults of a ``none`` replay.
    """
    layout, how = layout_how
    import os

    from replay.atomic import DiskFullError, check_output_path
    from replay.convert.render import render_trace
    from replay.synth import generate
    from replay.trace import open_trace

    check_output_path(out, "log")
    # A temporary name with the pid: sweep_leftovers recognises it if this process is killed.
    tmp = out.with_name(f".{out.name}.trace.{os.getpid()}.partial")
    try:
        try:
            generate(sc, tmp)  # type: ignore[arg-type]
        except DiskFullError as exc:
            raise DiskFullError(out, "log", exc.reason) from None  # named as the user knows it
        if layout == "damon" or how == "none":
            done = _render_modern(open_trace(tmp), out, layout_how, sc, force=force)
        else:
            report = render_trace(open_trace(tmp), layout, out, force=force)
    finally:
        tmp.unlink(missing_ok=True)
    if layout == "damon" or how == "none":
        _say_modern(out, layout_how, done, as_json)
        return
    config = out.with_name(out.name + ".vms.toml")
    if as_json:
        emit_json(
            {
                "command": "synth",
                "output": str(out),
                "vm_config": str(config),
                "layout": layout,
                "lines": report.lines,
                "rows": report.rows,
                "left_out": report.left_out,
            }
        )
        return
    left = ", ".join(f"{n:,} {k}" for k, n in report.left_out.items() if n)
    note(
        f"wrote {out}: {report.lines:,} {layout} lines ({report.rows.get('access', 0):,} "
        f"kvm_page_fault, {report.rows.get('reclaim', 0):,} reclaim passes); VMs in {config}"
        + (f"; left out (no kernel text that converts back): {left}" if left else "")
    )


def _render_modern(
    trace: TraceFile, out: Path, layout_how: tuple[str, str], sc: object, *, force: bool
) -> dict[str, Any]:
    """What a 6.13+ host records: DAMON's record, or the faults of a ``none`` replay."""
    from replay.synth.damon import MonitorSettings
    from replay.synth.damonrender import write_damon, write_none_faults

    layout, how = layout_how
    if layout == "damon":
        fmt, _, given = how.partition(":")
        settings = MonitorSettings(seed=int(getattr(sc, "seed", 0)))
        if given:
            sample_us, aggr_us = (int(x) for x in given.split(","))
            settings = MonitorSettings(sample_us, aggr_us, seed=settings.seed)
        return write_damon(trace, out, fmt, settings, force=force)
    return write_none_faults(trace, layout, out, force=force)


def _say_modern(
    out: Path, layout_how: tuple[str, str], done: dict[str, Any], as_json: bool
) -> None:
    layout, how = layout_how
    if as_json:
        emit_json({"command": "synth", "output": str(out), "as": layout, **done})
        return
    if layout == "damon":
        note(
            f"wrote {out}: DAMON record ({how.partition(':')[0]}), "
            f"{done['aggregations']:,} aggregations, "
            f"{done['regions']:,} regions (sample {done['intervals']['sample_us']} us, "
            f"aggregation {done['intervals']['aggr_us']} us); VMs with hva_start and "
            f"damon_target in {done['vm_config']}, QEMU memslot lines in {out}.qemu-*.log"
        )
        return
    note(
        f"wrote {out}: {done['lines']:,} {layout} lines, the {done['faults']:,} faults of a "
        f"{how} replay with the host's events; VMs in {done['vm_config']}"
    )


def _list(names: list[str], as_json: bool) -> None:
    import tomllib

    from replay.synth.scenario import SCENARIO_DIR

    rows = []
    for name in names:
        with (SCENARIO_DIR / f"{name}.toml").open("rb") as fh:
            rows.append((name, tomllib.load(fh).get("scenario", {}).get("description", "")))
    if as_json:
        emit_json(
            {"command": "synth", "scenarios": [{"name": n, "description": d} for n, d in rows]}
        )
        return
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
