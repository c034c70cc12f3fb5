"""DAMON's monitor emulated (replay/synth/damon.py) and what a 6.13+ host records, end to end."""

from __future__ import annotations

import json
import re
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from typer.testing import CliRunner

from replay.cli import app
from replay.synth.damon import Monitor, MonitorSettings, access_keys, hva_start
from replay.trace import iter_batches, open_trace
from replay.trace.schema import EVENT_CODE, Memslot, TraceMeta, VmSpec

if TYPE_CHECKING:
    from pathlib import Path

runner = CliRunner()
MiB = 1 << 20

# A guest busy enough for DAMON to see: 2,000 accesses every 5 ms over a 32 MiB hot set at the
# bottom of a 64 MiB slot; drop_caches every 20 ms from 0.3 s piles up deferred work until the
# shrinker zaps (replay/mmu/MODEL.md appendix A.2).
DENSE = """
[scenario]
name = "dense"
seed = 3
duration_s = 1.0
accesses = 400000

[[vm]]
name = "a"
vcpus = 2
mmu_mode = "shadow_direct"
memslots = [{ gpa_start = 0, size = "64MiB" }]

[[vm.workload]]
kind = "uniform"
rate = 1000
footprint = "32MiB"

[[pressure]]
kind = "drop_caches"
at_s = [0.3, 0.32, 0.34, 0.36, 0.38, 0.4, 0.42, 0.44, 0.46, 0.48, 0.5, 0.52, 0.54]
"""


def _meta() -> TraceMeta:
    vm = VmSpec(0, "a", 1, "tdp_mmu", 4, (Memslot(0, 64 * MiB), Memslot(128 * MiB, 64 * MiB)))
    return TraceMeta((vm,), "all-accesses", {})


def test_the_monitor_finds_a_hot_half_and_keeps_its_bounds() -> None:
    """Every page of the first 16 MiB is touched in every 5 ms interval; the rest never. After a
    few aggregations the regions there report 20 of 20 checks, the others 0; the regions always
    cover the two memslots exactly, page aligned, between 10 and 1,000 of them."""
    meta = _meta()
    pages = np.arange(4096, dtype=np.uint64)
    intervals = 200  # 1 s
    t = (np.repeat(np.arange(intervals), len(pages)) * 5_000_000 + 1000).astype(np.int64)
    gpa = np.tile(pages << np.uint64(12), intervals)
    vm = np.zeros(len(t), dtype=np.uint16)
    settings = MonitorSettings(seed=1)
    keys = access_keys(meta, t, vm, gpa, 0, settings.sample_us * 1000)
    aggs = list(Monitor(meta, settings).run(keys, 0, int(t[-1]) + 5_000_000))
    assert len(aggs) == 10
    slots = [(hva_start(0, s.gpa_start), hva_start(0, s.gpa_end)) for s in meta.vms[0].memslots]
    for agg in aggs:
        assert 10 <= len(agg.start) <= 1000
        assert ((agg.start % 4096) == 0).all()
        assert (agg.end > agg.start).all()
        assert int((agg.end - agg.start).sum()) == 128 * MiB
        assert all(
            any(a <= s and e <= b for a, b in slots)
            for s, e in zip(agg.start, agg.end, strict=False)
        )
    last = aggs[-1]
    hot = last.end <= slots[0][0] + 16 * MiB
    cold = last.start >= slots[0][0] + 16 * MiB
    assert (last.nr_accesses[hot] == 20).all()
    assert hot.any()
    assert (last.nr_accesses[cold] == 0).all()


@pytest.fixture
def dense(tmp_path: Path) -> Path:
    path = tmp_path / "dense.toml"
    path.write_text(DENSE)
    return path


def _synth(*args: str) -> None:
    result = runner.invoke(app, ["synth", *args])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("fmt", ["ftrace", "perf", "trace-cmd", "json", "json_compressed"])
def test_every_damon_format_converts_back_to_the_same_regions(
    dense: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"d.{fmt}"
    _synth(str(dense), "--as", "damon", "--damon-format", fmt, "-o", str(out))
    if fmt == "json_compressed":
        doc = json.loads(zlib.decompress(out.read_bytes()))
    elif fmt == "json":
        doc = json.loads(out.read_text())
    if fmt.startswith("json"):
        (record,) = doc
        assert record["intervals"]["sample_us"] == "5000"
        n = sum(len(s["regions"]) for s in record["snapshots"])
        assert record["snapshots"][0]["regions"][0]["start"] == f"{hva_start(0, 0):,}"
    else:
        lines = [ln for ln in out.read_text().splitlines() if "damon_aggregated" in ln]
        n = len(lines)
        # The real captures' line shapes (traces/logs/damon-*-head.txt).
        shape = {
            "ftrace": r"^ +kdamond\.0-107 +\( *107\) \[001\] \.{5} +\d+\.\d{6}: damon_aggregated: ",
            "perf": r"^ +kdamond\.0 +107/107 +\[001\] +\d+\.\d{6}: +damon:damon_aggregated: ",
            "trace-cmd": r"^ +kdamond\.0-107 +\[001\] +\d+\.\d{6}: damon_aggregated: +",
        }[fmt]
        assert re.match(shape + r"target_id=0 nr_regions=\d+ \d+-\d+: \d+ \d+$", lines[0])
    assert (
        (tmp_path / f"d.{fmt}.qemu-0.log")
        .read_text()
        .startswith(
            "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 size=0x4000000 ua=0x7f"
        )
    )
    trace = tmp_path / "t.parquet"
    args = ["convert", str(out), "--vm-config", f"{out}.vms.toml", "-o", str(trace)]
    if not fmt.startswith("json"):
        args += ["--damon-intervals", "5000,100000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    tf = open_trace(trace)
    assert tf.meta.coverage == "sampled"
    regions = sum(int((b.event == EVENT_CODE["region"]).sum()) for b in iter_batches(tf))
    assert regions == n


def test_a_modern_host_record_replays_to_the_logged_faults_and_sampled_refaults(
    dense: Path, tmp_path: Path
) -> None:
    """T' = the faults a none host logs + DAMON's record: none and cache replay exactly the
    logged faults (the none replay of T); zap adds sampled refaults of what it zapped."""
    truth = tmp_path / "t.parquet"
    _synth(str(dense), "-o", str(truth))
    log, damo = tmp_path / "none.txt", tmp_path / "d.damo"
    _synth(str(dense), "--as", "ftrace", "--faults-under", "none", "-o", str(log))
    _synth(str(dense), "--as", "damon", "--damon-format", "json_compressed", "-o", str(damo))
    sampled = tmp_path / "s.parquet"
    args = ["convert", str(log), str(damo), "--vm-config", f"{log}.vms.toml", "-o", str(sampled)]
    assert runner.invoke(app, args).exit_code == 0
    assert open_trace(sampled).meta.coverage == "faults+sampled"
    for trace, runs in ((truth, "runs_t"), (sampled, "runs_s")):
        result = runner.invoke(app, ["run", str(trace), "-o", str(tmp_path / runs)])
        assert result.exit_code == 0, result.output

    def totals(runs: str, policy: str) -> dict[str, Any]:
        doc = json.loads((tmp_path / runs / policy / "summary.json").read_text())
        out: dict[str, Any] = doc["totals"] | {"_caveats": doc["caveats"], "_trace": doc["trace"]}
        return out

    none_t = totals("runs_t", "none")
    for policy in ("none", "cache"):
        s = totals("runs_s", policy)
        assert s["faults"] == s["logged_faults"] == none_t["faults"]
        assert s["sampled_faults"] == 0
        assert s["faults_unexplained"] == 0
    zap = totals("runs_s", "zap")
    assert zap["sampled_faults"] > 0
    assert zap["faults_by_attribution"]["zapped_page_tables"] > 0
    assert "faults+sampled trace" in zap["_caveats"][0]
    assert "pages_freed" in zap["_trace"]["sampling"]["estimates"]
    truth_zap = totals("runs_t", "zap")
    assert zap["pages_freed"] == truth_zap["pages_freed"]
    # The oracle replays the converted trace's region rows to the same bytes (D5).
    args = ["run", str(sampled), "--engine", "reference", "-p", "zap", "-o", str(tmp_path / "r")]
    assert runner.invoke(app, args).exit_code == 0
    for name in ("faults.parquet", "scans.parquet"):
        fast = (tmp_path / "runs_s" / "zap" / name).read_bytes()
        assert (tmp_path / "r" / "zap" / name).read_bytes() == fast


def test_faults_under_takes_only_none_with_a_text_layout(dense: Path, tmp_path: Path) -> None:
    for args in (["--faults-under", "zap", "--as", "ftrace"], ["--faults-under", "none"]):
        result = runner.invoke(app, ["synth", str(dense), *args, "-o", str(tmp_path / "x")])
        assert result.exit_code == 1
        assert "--faults-under takes none" in result.output
