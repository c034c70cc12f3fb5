"""``replay synth``: generate a trace from a scenario."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from replay.cli.console import emit_json, fail, note, progress, user_errors
from replay.cli.options import ForceFlag, JsonFlag, LogLayout

if TYPE_CHECKING:
    from replay.synth import SynthResult


@user_errors
def synth(  # typer declares a command's options as its parameters: more than 8 here
    scenario: Annotated[
        str | None,
        typer.Argument(help="A shipped scenario's name (see --list) or a path to a .toml file."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Trace file to write (default: <scenario name>.parquet)."
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
    as_: Annotated[
        LogLayout | None,
        typer.Option(
            "--as",
            help=(
                "Write kernel trace text instead of Parquet "
                "(accesses as kvm_page_fault lines, passes as mm_shrink_slab lines; the VMs "
                "go to OUTPUT.vms.toml for replay convert --vm-config)."
            ),
        ),
    ] = None,
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
    suffix = ".parquet" if as_ is None else f".{as_.value}.txt"
    out = output if output is not None else Path(f"{sc.name}{suffix}")
    if out.exists() and not force:
        fail(f"output {out} exists; pass --force to overwrite it or choose another -o")
    if as_ is not None:
        _render(sc, out, as_.value, json_)
        return
    with progress(f"synth {sc.name}", 1) as update:
        result = generate(sc, out, progress=update)
    _written(result, sc.name, sc.seed, json_)


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


def _render(sc: object, out: Path, layout: str, as_json: bool) -> None:
    """Generate into a temporary trace beside ``out``, then render it as ``layout`` text."""
    import os
    import tempfile

    from replay.atomic import check_output_path
    from replay.convert.render import render_trace
    from replay.synth import generate
    from replay.trace import open_trace

    check_output_path(out, "log")
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".parquet", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.unlink()
        generate(sc, tmp)  # type: ignore[arg-type]
        report = render_trace(open_trace(tmp), layout, out)
    finally:
        tmp.unlink(missing_ok=True)
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
