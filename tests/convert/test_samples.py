"""Real kernel output, converted: every count checked against a plain reading of the text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import polars as pl
import pytest

from tests.convert.helpers import convert, lines_with

if TYPE_CHECKING:
    from pathlib import Path


def _field(pattern: str, line: str) -> str:
    m = re.search(pattern, line)
    assert m is not None, line
    return m.group(1)


KVM_HEADS = ("ftrace-kvm-head.txt", "perf-script-kvm-head.txt", "trace-cmd-kvm-head.txt")


def test_three_recordings_of_one_run_give_the_same_faults(tmp_path: Path) -> None:
    """ftrace, perf script and trace-cmd recorded one KVM run at once.

    Each file was cut at 160 lines (ftrace spends 12 on its header) and perf's clock runs
    behind the tracefs clock: align on the first fault, compare over the span all three hold.
    """
    runs = {}
    for name in KVM_HEADS:
        report, trace = convert(tmp_path, name)
        assert report.access_source == "kvm_mmu_spte_requested"
        acc = trace.filter(pl.col("event") == "access")
        # The converter used every spte_requested line as one fault.
        assert acc.height == len(lines_with(name, "kvm_mmu_spte_requested"))
        runs[name] = acc.with_columns(t_rel=pl.col("t_ns") - pl.col("t_ns").first())
    offset = runs[KVM_HEADS[0]]["t_ns"][0] - runs[KVM_HEADS[1]]["t_ns"][0]
    assert 20_000_000 < offset < 30_000_000  # perf's clock, about 25 ms behind
    span = min(int(r["t_rel"].max()) for r in runs.values())  # type: ignore[arg-type]
    shared = [r.filter(pl.col("t_rel") <= span) for r in runs.values()]
    assert shared[0].height > 50
    for other in shared[1:]:
        assert other.select("vcpu", "gpa", "op").equals(shared[0].select("vcpu", "gpa", "op"))
        # The two clocks tick apart by a microsecond here and there.
        drift = (other["t_rel"] - shared[0]["t_rel"]).abs().to_numpy()
        assert drift.max() <= 2_000


def test_fault_gfns_match_the_text(tmp_path: Path) -> None:
    _, trace = convert(tmp_path, "ftrace-kvm-head.txt")
    gfns = [
        int(_field(r"gfn ([0-9a-f]+) pfn", line), 16)
        for line in lines_with("ftrace-kvm-head.txt", "kvm_mmu_spte_requested")
    ]
    got = trace.filter(pl.col("event") == "access")["gpa"].to_list()
    assert got == [g << 12 for g in gfns]


@pytest.mark.parametrize(
    "name", ["ftrace-vmscan-dropcaches.txt", "perf-script-vmscan-dropcaches.txt"]
)
def test_drop_caches_98_shrinker_lines_are_2_passes(tmp_path: Path, name: str) -> None:
    assert len(lines_with(name, "mm_shrink_slab_start")) == 98
    report, trace = convert(tmp_path, name, "ftrace-kvm-head.txt")
    passes = trace.filter(pl.col("event") == "reclaim")
    assert passes["source"].to_list() == ["drop_caches", "drop_caches"]
    assert passes["priority"].to_list() == [0, 0]
    assert report.events["mm_shrink_slab_start"] == report.events["mm_shrink_slab_end"] == 98
    zaps = trace.filter(pl.col("event") == "zap_all")
    assert zaps.height == len(lines_with(name, "kvm_mmu_zap_all_fast"))


def test_observed_zaps_agree_between_ftrace_and_perf(tmp_path: Path) -> None:
    """perf printed kvm_mmu_prepare_zap_page raw (role=...); ftrace decoded it: same counts."""
    from replay.trace import open_trace

    observed = []
    for name in ("ftrace-vmscan-dropcaches.txt", "perf-script-vmscan-dropcaches.txt"):
        convert(tmp_path, name, "ftrace-kvm-head.txt")
        observed.append(open_trace(tmp_path / "t.parquet").meta.observed["per_vm"])
    assert observed[0] == observed[1]
    zap_lines = lines_with("ftrace-vmscan-dropcaches.txt", "kvm_mmu_prepare_zap_page")
    by_level = {f"sp_zapped_l{lv}": sum(f" l{lv} " in x for x in zap_lines) for lv in (1, 2, 3, 4)}
    counts = observed[0]["0"]
    assert {k: counts.get(k, 0) for k in by_level} == by_level
    sp_lines = zap_lines + lines_with("ftrace-kvm-head.txt", "kvm_mmu_get_page")
    assert counts["sp_indirect"] == sum(" direct " not in x for x in sp_lines)
    new = lines_with("ftrace-kvm-head.txt", "kvm_mmu_get_page", " new")
    assert sum(v for k, v in counts.items() if k.startswith("sp_new_")) == len(new)


def test_own_captures_with_tgid_and_pid(tmp_path: Path) -> None:
    """Captured on the development machine (drop_caches, record-tgid / perf -F +pid)."""
    report, trace = convert(tmp_path, "capture-ftrace-tgid-dropcaches.txt", "ftrace-kvm-head.txt")
    roots = lines_with("capture-ftrace-tgid-dropcaches.txt", "mm_shrink_slab_start", "kfree_rcu")
    passes = trace.filter(pl.col("event") == "reclaim")
    assert passes.height == len(roots) == 3
    assert set(passes["source"]) == {"drop_caches"}
    assert report.unknown_events["sched_process_exec"] == len(
        lines_with("capture-ftrace-tgid-dropcaches.txt", "sched_process_exec")
    )
    assert any("different layouts" not in w for w in report.warnings)
    report, trace = convert(tmp_path, "capture-perf-pid-dropcaches.txt", "ftrace-kvm-head.txt")
    assert trace.filter(pl.col("event") == "reclaim").height == 1
    assert any("different layouts merged (ftrace, perf)" in w for w in report.warnings)


def test_kswapd_passes_follow_priority(tmp_path: Path) -> None:
    report, trace = convert(
        tmp_path,
        "public-vmscan-kswapd-shrink-slab-lkml-2020.txt",
        "public-kvm-page-fault-lkml-2022.txt",
    )
    passes = trace.filter(pl.col("event") == "reclaim")
    assert passes["source"].to_list() == ["kswapd", "kswapd"]
    assert passes["priority"].to_list() == [12, 11]
    assert passes["nid"].to_list() == [1, 1]
    assert report.skipped["blank line"] == 2


def test_vmx_page_faults(tmp_path: Path) -> None:
    report, trace = convert(tmp_path, "public-kvm-page-fault-lkml-2022.txt")
    assert report.access_source == "kvm_page_fault"
    assert report.files[0].fault_codes == "vmx"
    acc = trace.filter(pl.col("event") == "access")
    lines = lines_with("public-kvm-page-fault-lkml-2022.txt", "kvm_page_fault")
    assert acc["vcpu"].to_list() == [int(_field(r"vcpu (\d+)", x)) for x in lines]
    assert acc["gpa"].to_list() == [int(_field(r"address 0x([0-9a-f]+)", x), 16) for x in lines]
    expect = {"0x181": "read", "0x182": "write"}
    assert acc["op"].to_list() == [expect[x.rsplit(" ", 1)[1]] for x in lines]


def test_fast_page_fault_excerpt(tmp_path: Path) -> None:
    name = "public-kvm-fast-page-fault-lkml-2024-rejoined.txt"
    report, trace = convert(tmp_path, name)
    acc = trace.filter(pl.col("event") == "access")
    assert acc.height == len(lines_with(name, "kvm_page_fault"))
    assert set(acc["op"]) == {"exec"}  # 0x184: instruction fetch
    assert report.unused_events["kvm_exit"] == len(lines_with(name, "kvm_exit"))
    assert report.unused_events["fast_page_fault"] == len(lines_with(name, "fast_page_fault"))
    assert sorted(acc["vcpu"].unique()) == [4, 7]


def test_shadow_paging_is_flagged(tmp_path: Path) -> None:
    from replay.trace import open_trace

    report, _ = convert(tmp_path, "ftrace-kvm-head.txt")
    assert any("shadow paging" in w for w in report.warnings)
    assert any("does not tell VMs apart" in w for w in report.warnings)
    provenance = open_trace(tmp_path / "t.parquet").meta.provenance
    assert provenance["vm_identity"] == ["single"]
    assert any("memslots inferred" in x for x in provenance["inferred"])
