"""synth -> render (each layout) -> convert gives back the same faults, passes and zaps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.convert import ConvertOptions, convert_logs
from replay.convert.render import LAYOUTS, render_trace
from replay.synth import generate, load_scenario
from replay.trace import open_trace

if TYPE_CHECKING:
    from pathlib import Path

SCENARIOS = (
    "quick",
    "many-small-vms",
    "tdp-host-pressure",
    "legacy-mmu-pressure",
    "huge-pages",
    "host-swap",
)
KINDS = ("access", "reclaim", "zap_all")


def _rows(path: Path, names: dict[int, str], rounding: int) -> pl.DataFrame:
    """Rows a log can carry, with times at the log's resolution and VMs by name."""
    df = pl.read_parquet(path).with_columns(pl.col(pl.Categorical).cast(pl.String))
    df = df.filter(pl.col("event").is_in(KINDS))
    return df.select(
        ((pl.col("t_ns") + rounding) // 1000).alias("t_us"),
        "event",
        pl.col("vm").replace_strict(names, default=None, return_dtype=pl.String).alias("vm"),
        "vcpu",
        "gpa",
        "op",
        "source",
        "priority",
        "nid",
    )


@settings(max_examples=12, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIOS),
    seed=st.integers(0, 10_000),
    layout=st.sampled_from(LAYOUTS),
)
def test_round_trip(tmp_path_factory: object, scenario: str, seed: int, layout: str) -> None:
    tmp = tmp_path_factory.mktemp("rt")  # type: ignore[attr-defined]
    trace = tmp / "synth.parquet"
    generate(load_scenario(scenario, seed=seed, accesses=3_000), trace)
    log = tmp / f"log.{layout}.txt"
    report = render_trace(open_trace(trace), layout, log)
    back = tmp / "back.parquet"
    convert_logs([str(log)], back, ConvertOptions(vm_config=log.with_name(log.name + ".vms.toml")))
    meta, meta_back = open_trace(trace).meta, open_trace(back).meta
    rounding = 500 if layout == "trace-cmd" else 0  # trace-cmd rounds to the microsecond
    want = _rows(trace, {v.id: v.name for v in meta.vms}, rounding)
    got = _rows(back, {v.id: v.name for v in meta_back.vms}, 0)
    assert got.equals(want)
    assert report.rows.get("access", 0) == want.filter(pl.col("event") == "access").height
    # The VM table comes back whole: vCPUs, MMU mode, memslots (ids follow first appearance).
    by_name = {v.name: v for v in meta_back.vms}
    for vm in meta.vms:
        b = by_name[vm.name]
        assert (b.vcpus, b.mmu_mode, b.root_level, b.memslots) == (
            vm.vcpus,
            vm.mmu_mode,
            vm.root_level,
            vm.memslots,
        )


def test_without_a_vm_config_vms_come_from_the_tgid(tmp_path: Path) -> None:
    trace = tmp_path / "s.parquet"
    generate(load_scenario("quick", accesses=4_000), trace)
    for layout in ("ftrace", "perf"):
        log = tmp_path / f"log.{layout}.txt"
        render_trace(open_trace(trace), layout, log)
        back = tmp_path / f"back.{layout}.parquet"
        report = convert_logs([str(log)], back)
        assert "tgid" in open_trace(back).meta.provenance["vm_identity"]
        per_vm = sorted(
            pl.read_parquet(back).filter(pl.col("event") == "access")["vm"].value_counts()["count"]
        )
        want = sorted(
            pl.read_parquet(trace).filter(pl.col("event") == "access")["vm"].value_counts()["count"]
        )
        assert per_vm == want
        assert not any("does not tell VMs apart" in w for w in report.warnings)
