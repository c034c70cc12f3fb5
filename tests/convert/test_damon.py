"""DAMON records converted: real damon_aggregated captures in every layout, damo records,
memslot maps (vm-config hva_start, QEMU kvm_set_user_memory), intervals and tuning.

The real captures (``traces/logs/damon-*``) are of the development machine's own monitor,
which watches host *physical* memory (``paddr``): no guest is behind them. To check the reading
of every field, the tests place them in a pretend VM whose one memslot sits at host addresses
4 GiB..12 GiB, where that monitor's regions lie; what a paddr record does without such a map is
tested apart.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import TYPE_CHECKING

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.convert import ConvertOptions, convert_logs
from replay.convert.hostmap import HostSlot, parse_set_user_memory, place
from replay.convert.source import LogFormatError
from tests.convert.helpers import DAMON_PRETEND_VMS, LOGS, convert, lines_with

if TYPE_CHECKING:
    from pathlib import Path

HEADS = (
    "damon-ftrace-head.txt",
    "damon-perf-script-head.txt",
    "damon-trace-cmd-head.txt",
    "damon-trace-cmd-raw-head.txt",
    "damon-ftrace-paddr-shared-head.txt",
)
BOUNDARIES = (
    "damon-ftrace-boundary.txt",
    "damon-perf-script-boundary.txt",
    "damon-trace-cmd-boundary.txt",
)
INTERVALS = (500_000, 5_000_000)
"""The machine's monitor: sample 500 ms, aggregation 5 s (its sysfs, damon-samples/README)."""
PRETEND = DAMON_PRETEND_VMS
FIELDS = re.compile(
    r"(?:target_id=\d+ nr_regions=\d+ (\d+)-(\d+): (\d+) (\d+))"
    r"|(?:start=(\d+) end=(\d+) nr_accesses=(\d+) age=(\d+))"
)


def _config(tmp: Path, text: str = PRETEND) -> Path:
    path = tmp / "vms.toml"
    path.write_text(text)
    return path


def _regions_in_text(name: str) -> list[tuple[int, int, int, int]]:
    """(start, end, nr_accesses, age) of every damon_aggregated line, read plainly."""
    out = []
    for line in lines_with(name, "damon_aggregated"):
        m = FIELDS.search(line)
        assert m is not None, line
        groups = [g for g in m.groups() if g is not None]
        out.append(tuple(int(g) for g in groups))
    return out  # type: ignore[return-value]


def _regions(trace: pl.DataFrame) -> pl.DataFrame:
    return trace.filter(pl.col("event") == "region")


@pytest.mark.parametrize("name", HEADS + BOUNDARIES)
def test_real_captures_every_region_as_in_the_text(tmp_path: Path, name: str) -> None:
    report, trace = convert(tmp_path, name, vm_config=_config(tmp_path), damon_intervals=INTERVALS)
    text = _regions_in_text(name)
    assert report.events["damon_aggregated"] == len(text) > 0
    assert report.unused_events["damos_before_apply"] == len(lines_with(name, "damos_before_apply"))
    got = _regions(trace)
    assert got.height == len(text)
    assert got["gpa"].to_list() == [s - (4 << 30) for s, _, _, _ in text]
    assert got["len"].to_list() == [e - s for s, e, _, _ in text]
    assert got["nr_accesses"].to_list() == [a for _, _, a, _ in text]
    assert got["age"].to_list() == [g for _, _, _, g in text]
    assert set(got["window_ns"].to_list()) == {5_000_000_000}
    assert set(got["sample_ns"].to_list()) == {500_000_000}
    assert report.coverage == "sampled"
    assert report.damon["intervals_source"] == "option"
    assert report.damon["bytes_placed"] == sum(e - s for s, e, _, _ in text)
    # Heads end inside an aggregation; boundaries also start inside one.
    assert report.damon["aggregations_cut_short"] == (2 if name in BOUNDARIES else 1)
    assert any("--damon-intervals" in w for w in report.warnings)


def test_three_layouts_of_one_capture_give_the_same_regions(tmp_path: Path) -> None:
    seen = []
    for name in HEADS[:4]:
        _, trace = convert(tmp_path, name, vm_config=_config(tmp_path), damon_intervals=INTERVALS)
        seen.append(_regions(trace).select("gpa", "len", "nr_accesses", "age"))
    for other in seen[1:]:
        assert other.equals(seen[0])


def test_paddr_record_without_a_map_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"--vm-config with hva_start.*kvm_set_user_memory"):
        convert(tmp_path, HEADS[0], damon_intervals=INTERVALS)


def test_paddr_record_outside_every_memslot_says_paddr(tmp_path: Path) -> None:
    elsewhere = PRETEND.replace("0x100000000", "0x7f0000000000")
    with pytest.raises(LogFormatError, match=r"paddr record .* host-physical to guest map"):
        convert(
            tmp_path, HEADS[0], vm_config=_config(tmp_path, elsewhere), damon_intervals=INTERVALS
        )


def test_intervals_missing_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match=r"damon-ftrace-head.txt:\d+: .*--damon-intervals"):
        convert(tmp_path, HEADS[0], vm_config=_config(tmp_path))


def test_intervals_that_cannot_be_the_monitors_are_refused(tmp_path: Path) -> None:
    """nr_accesses 10 occurs: aggregations of 5 samples cannot hold it."""
    with pytest.raises(LogFormatError, match=r"nr_accesses 1[01] past the 5 sampling checks"):
        convert(tmp_path, HEADS[0], vm_config=_config(tmp_path), damon_intervals=(1000, 5000))


def _edited(tmp: Path, name: str, edit: dict[int, str]) -> Path:
    """A real log with some lines replaced (line index -> text)."""
    lines = (LOGS / name).read_text().splitlines()
    for i, text in edit.items():
        lines[i] = text
    out = tmp / f"edited-{name}"
    out.write_text("\n".join(lines) + "\n")
    return out


def _convert_path(tmp: Path, *paths: Path, **options: object) -> tuple[object, pl.DataFrame]:
    out = tmp / "e.parquet"
    report = convert_logs([str(p) for p in paths], out, ConvertOptions(**options))  # type: ignore[arg-type]
    return report, pl.read_parquet(out).with_columns(pl.col(pl.Categorical).cast(pl.String))


def test_overlapping_region_is_counted_and_quoted(tmp_path: Path) -> None:
    lines = (LOGS / HEADS[0]).read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if "damon_aggregated" in ln) + 5
    # The region's start moved back one page: it overlaps the region before it.
    start = int(re.search(r" (\d+)-", lines[at]).group(1))  # type: ignore[union-attr]
    bad = lines[at].replace(f" {start}-", f" {start - 4096}-")
    path = _edited(tmp_path, HEADS[0], {at: bad})
    report, trace = _convert_path(
        tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS
    )
    assert report.skipped["DAMON region overlaps an earlier region of its aggregation"] == 1  # type: ignore[attr-defined]
    assert _regions(trace).height == 178
    assert any(f":{at + 1}: DAMON region overlaps" in e for e in report.examples)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match=f":{at + 1}: DAMON region overlaps.*--strict"):
        _convert_path(
            tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS, strict=True
        )


def test_target_that_is_no_vm_is_counted(tmp_path: Path) -> None:
    other = PRETEND.replace("damon_target = 0", "damon_target = 3")
    faults = "ftrace-kvm-head.txt"
    with pytest.raises(LogFormatError, match=r"no guest fault|no event"):
        convert(tmp_path, HEADS[0], vm_config=_config(tmp_path, other), damon_intervals=INTERVALS)
    _, trace = convert(
        tmp_path, faults, vm_config=_config(tmp_path, other), damon_intervals=INTERVALS
    )
    assert _regions(trace).height == 0
    # With the faults of a kvm log beside it (its own clock): the target is counted, not placed.
    text = (LOGS / HEADS[0]).read_text()
    shifted = re.sub(r"   600\.(\d+):", lambda m: f"   {_kvm_second()}.{m.group(1)}:", text)
    (tmp_path / "d.txt").write_text(shifted)
    report2, trace2 = _convert_path(
        tmp_path,
        LOGS / faults,
        tmp_path / "d.txt",
        vm_config=_config(tmp_path, other),
        damon_intervals=INTERVALS,
    )
    key = "damon_aggregated of a target that is no VM (no --vm-config VM has damon_target = 0)"
    assert report2.skipped[key] == 179  # type: ignore[attr-defined]
    assert any("is no VM" in w for w in report2.warnings)  # type: ignore[attr-defined]
    assert _regions(trace2).height == 0


def _kvm_second() -> int:
    first = lines_with("ftrace-kvm-head.txt", "kvm_mmu_spte_requested")[0]
    return int(re.search(r" (\d+)\.\d+: ", first).group(1))  # type: ignore[union-attr]


def test_tune_line_changes_the_intervals_of_the_next_aggregation(tmp_path: Path) -> None:
    """A tune line halves the sampling interval: the window halves too (aggr_samples stays)."""
    lines = (LOGS / BOUNDARIES[0]).read_text().splitlines()
    first_new = next(
        i for i, ln in enumerate(lines) if "damon_aggregated: target_id=0 nr_regions=1427" in ln
    )
    tune = lines[first_new].split("damon_aggregated:")[0] + "damon_monitor_intervals_tune: "
    lines.insert(first_new, tune + "sample_us=250000")
    path = tmp_path / "tuned.txt"
    path.write_text("\n".join(lines) + "\n")
    report, trace = _convert_path(
        tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS
    )
    windows = _regions(trace)["window_ns"].to_list()
    assert windows == [5_000_000_000] * 10 + [2_500_000_000] * 19
    assert report.events["damon_monitor_intervals_tune"] == 1  # type: ignore[attr-defined]
    assert report.damon["intervals"]["kdamond.0 (pid 107)"]["tuned"] is True  # type: ignore[attr-defined]


def test_old_payloads_without_age_and_failed_to_parse(tmp_path: Path) -> None:
    """5.15's payload (no age, target_id a kernel pointer) and perf's raw fallback."""
    lines = (LOGS / HEADS[0]).read_text().splitlines()
    at = [i for i, ln in enumerate(lines) if "damon_aggregated" in ln]
    edit = {}
    for i in at[:50]:
        edit[i] = re.sub(
            r"target_id=0 (.*: \d+) \d+$", r"target_id=18446623435582458880 \1", lines[i]
        )
    for i in at[50:60]:
        m = re.search(r"nr_regions=(\d+) (\d+)-(\d+): (\d+) (\d+)$", lines[i])
        assert m is not None
        n, s, e, a, g = (int(x) for x in m.groups())
        edit[i] = lines[i][: lines[i].index("target_id")] + (
            f"[FAILED TO PARSE] target_id=0x0 nr_regions={n} start={s:#x} end={e:#x} "
            f"nr_accesses={a} age={g}"
        )
    path = _edited(tmp_path, HEADS[0], edit)
    _, trace = _convert_path(tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS)
    got = _regions(trace)
    text = _regions_in_text(HEADS[0])
    assert got["nr_accesses"].to_list() == [a for _, _, a, _ in text]
    assert got["age"].null_count() == 50
    assert got["gpa"].to_list() == [s - (4 << 30) for s, _, _, _ in text]


# -- damo record files ---------------------------------------------------------------------
DAMO = "damon-damo-v3.3.0-trimmed.json"


def _damo_regions() -> list[tuple[int, int, int, int, int]]:
    return [
        (
            int(snap["end_time"]),
            int(r["start"].replace(",", "")),
            int(r["end"].replace(",", "")),
            r["nr_accesses"]["samples"],
            int(r["age"]["aggr_intervals"]),
        )
        for record in json.loads((LOGS / DAMO).read_text())
        for snap in record["snapshots"]
        for r in snap["regions"]
    ]


@pytest.mark.parametrize("compressed", [False, True])
def test_damo_record_read_by_content(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "damon.data"  # damo's own default name: no extension to go by
    data = (LOGS / DAMO).read_bytes()
    path.write_bytes(zlib.compress(data) if compressed else data)
    report, trace = _convert_path(tmp_path, path, vm_config=_config(tmp_path))
    got = _regions(trace)
    want = sorted(_damo_regions())
    assert got["t_ns"].to_list() == [w[0] for w in want]
    assert got["gpa"].to_list() == [w[1] - (4 << 30) for w in want]
    assert got["nr_accesses"].to_list() == [w[3] for w in want]
    assert got["age"].to_list() == [w[4] for w in want]
    assert set(got["window_ns"].to_list()) == {5_000_000_000}
    assert report.damon["intervals_source"] == "record"  # type: ignore[attr-defined]
    assert report.files[0].layout == ("damo json_compressed" if compressed else "damo json")  # type: ignore[attr-defined]
    assert not any("--damon-intervals" in w for w in report.warnings)  # type: ignore[attr-defined]


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_damo_record_is_one_clear_error(tmp_path: Path, compressed: bool) -> None:
    data = (LOGS / DAMO).read_bytes()
    data = zlib.compress(data) if compressed else data
    path = tmp_path / "cut.data"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(LogFormatError, match=r"cut.data.*truncated or damaged"):
        _convert_path(tmp_path, path, vm_config=_config(tmp_path))
    assert not (tmp_path / "e.parquet").exists()


def test_damo_record_on_another_clock_than_the_kvm_log(tmp_path: Path) -> None:
    """The damo record's times (perf's clock, 600 s) share nothing with the kvm log's."""
    path = tmp_path / "damon.data"
    path.write_bytes((LOGS / DAMO).read_bytes())
    with pytest.raises(LogFormatError, match="no time in common, so the two clocks cannot"):
        _convert_path(tmp_path, LOGS / "ftrace-kvm-head.txt", path, vm_config=_config(tmp_path))
    assert not (tmp_path / "e.parquet").exists()


# -- memslot maps from QEMU's trace ----------------------------------------------------------
QEMU_LINES = (
    "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 size=0x80000000 "
    "ua=0x100000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0",
    "41874@1587736345.192636:kvm_set_user_memory Slot#1 flags=0x0 gpa=0x100000000 "
    "size=0x180000000 ua=0x180000000 ret=0",
    "kvm_set_user_memory Slot#65539 flags=0x0 gpa=0xa0000 size=0x20000 ua=0x7f00000a0000 ret=0",
    "kvm_set_user_memory AddrSpace#0 Slot#2 flags=0x2 gpa=0xffc00000 size=0x400000 "
    "ua=0x7f5840a00000 ret=-22",
)


def test_set_user_memory_both_spellings() -> None:
    a = parse_set_user_memory(QEMU_LINES[0])
    b = parse_set_user_memory(QEMU_LINES[1])
    c = parse_set_user_memory(QEMU_LINES[2])
    assert a == (0, 0, HostSlot(0, 0x80000000, 0x100000000, 0), 0, None)
    assert b == (0, 1, HostSlot(0x100000000, 0x180000000, 0x180000000, 0), 0, 41874)
    assert c is not None
    assert c[:2] == (1, 3)  # (1 << 16) | 3: SMM's address space
    demo = (LOGS / "qemu-ftrace-marker-demo.txt").read_text().splitlines()[-1]
    d = parse_set_user_memory(demo)
    assert d == (0, 4, HostSlot(0xE0000, 0x20000, 0x7F5840DE0000, 2), 0, None)


def test_qemu_log_places_regions_without_a_vm_config(tmp_path: Path) -> None:
    """The memslot table of QEMU's log backend (after the DAMON lines in the inputs)."""
    qemu = tmp_path / "qemu.log"
    qemu.write_text("\n".join(QEMU_LINES) + "\n")
    report, trace = _convert_path(tmp_path, LOGS / HEADS[0], qemu, damon_intervals=INTERVALS)
    got = _regions(trace)
    text = _regions_in_text(HEADS[0])
    # 4 GiB .. 6 GiB host is slot 0 (gpa 0), 6 GiB .. 12 GiB slot 1 (gpa 4 GiB).
    want = [s - (4 << 30) if s < (6 << 30) else s - (2 << 30) for s, _, _, _ in text]
    assert got["gpa"].to_list() == want
    assert report.events["kvm_set_user_memory"] == 4  # type: ignore[attr-defined]
    slots = report.vms[0]["memslots"]  # type: ignore[attr-defined]
    assert [(s["gpa_start"], s["hva_start"]) for s in slots] == [
        (0, 0x100000000),
        (0x100000000, 0x180000000),
    ]


def test_region_across_slots_is_cut_and_outside_bytes_counted() -> None:
    import numpy as np

    slots = [HostSlot(0, 8192, 0x10000), HostSlot(1 << 20, 4096, 0x12000)]
    start = np.array([0x0F000, 0x11000], dtype=np.uint64)
    end = np.array([0x13000, 0x12000], dtype=np.uint64)
    pieces = place(start, end, slots)
    assert pieces.region.tolist() == [0, 0, 1]
    assert pieces.gpa.tolist() == [0, 1 << 20, 4096]
    assert pieces.length.tolist() == [8192, 4096, 4096]
    assert pieces.outside.tolist() == [4096, 0]


def test_damo_kdamonds_file_names_the_process_watched(tmp_path: Path) -> None:
    """damo's FILE.kdamonds gives each target's pid: the VM of that process, of several."""
    two = PRETEND + PRETEND.replace('"pretend"', '"other"').replace("4242", "4343").replace(
        "damon_target = 0\n", ""
    ).replace("0x100000000", "0x7f0000000000")
    two = two.replace("damon_target = 0\n", "")
    path = tmp_path / "damon.data"
    path.write_bytes((LOGS / DAMO).read_bytes())
    with pytest.raises(LogFormatError, match="could be any of 2 VMs"):
        _convert_path(tmp_path, path, vm_config=_config(tmp_path, two))
    kdamonds = [{"contexts": [{"ops": "vaddr", "targets": [{"pid": 4242}]}]}]
    (tmp_path / "damon.data.kdamonds").write_text(json.dumps(kdamonds))
    report, trace = _convert_path(tmp_path, path, vm_config=_config(tmp_path, two))
    assert _regions(trace).height == len(_damo_regions())
    assert report.damon["targets"]["damo record target 0"]["vm"] == "pretend"  # type: ignore[attr-defined]


def test_qemu_table_without_a_pid_is_the_one_vm_of_the_kvm_log(tmp_path: Path) -> None:
    """QEMU's log names no process; the kvm log (record-tgid) has one VM: they are the same.

    The kvm lines are the LKML kvm_page_fault lines with a (TGID) column spliced in; the DAMON
    lines are the capture's, moved just after them in time (one file, one clock).
    """
    kvm = [
        re.sub(r"(-\d+)\s+\[", r"\1 (   4130) [", ln)
        for ln in (LOGS / "public-kvm-page-fault-lkml-2022.txt").read_text().splitlines()
    ]
    damon = [
        ln.replace("   600.", "    87.").replace("-107     [", "-107    (    107) [")
        for ln in lines_with(HEADS[0], "damon_")
    ]
    host = tmp_path / "host.txt"
    host.write_text("\n".join(kvm + damon) + "\n")
    qemu = tmp_path / "qemu.log"
    small = (
        "kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 size=0x10000000 ua=0x100000000"
    )
    qemu.write_text(f"{small} ret=0\n" + "\n".join(QEMU_LINES[2:]) + "\n")
    report, trace = _convert_path(tmp_path, host, qemu, damon_intervals=INTERVALS)
    assert [v["name"] for v in report.vms] == ["vm-4130"]  # type: ignore[attr-defined]
    assert set(trace["vm"].to_list()) == {0}
    assert trace.filter(pl.col("event") == "access").height == len(kvm)
    # The one slot holds host 4 GiB .. 4.25 GiB: the regions above are the VMM's own memory.
    text = _regions_in_text(HEADS[0])
    inside = [
        (s, min(e, (4 << 30) + (1 << 28))) for s, e, _, _ in text if s < (4 << 30) + (1 << 28)
    ]
    placed = _regions(trace)
    assert placed["len"].to_list() == [e - s for s, e in inside]
    outside = sum(e - s for s, e, _, _ in text) - sum(e - s for s, e in inside)
    assert report.damon["bytes_outside_memslots"] == outside > 0  # type: ignore[attr-defined]
    assert report.coverage == "faults+sampled"  # type: ignore[attr-defined]


_VALUES = st.tuples(
    st.integers(0, 2**20),
    st.integers(1, 99_999),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_VALUES, min_size=1, max_size=40))
def test_numpy_payloads_agree_with_the_regular_expression(values: list[tuple]) -> None:  # type: ignore[type-arg]
    """Every payload the word arithmetic reads, it reads as the regular expression does; the
    ones it leaves (numbers of 17+ digits) the regular expression reads."""
    import numpy as np

    from replay.convert.damon import aggregated_fields, parse_aggregated
    from replay.convert.lines import split_block

    lines = []
    for i, (t, n, s, e, a, g) in enumerate(values):
        tail = "" if g is None else f" {g}"
        lines.append(
            f"       kdamond.0-99      [001] .....   100.{i:06d}: damon_aggregated: "
            f"target_id={t} nr_regions={n} {s}-{e}: {a}{tail}"
        )
    blk = split_block(("\n".join(lines) + "\n").encode(), 1)
    sel = np.flatnonzero(blk.ok)
    assert len(sel) == len(values)
    cols, ok = aggregated_fields(blk, sel)
    for k, i in enumerate(sel.tolist()):
        want = parse_aggregated(blk.payload(i))
        assert want is not None
        if ok[k]:
            assert tuple(int(c[k]) for c in cols) == want
        else:
            assert max(want[2], want[3]) >= 10**16


@pytest.mark.parametrize("block", [700, 4096])
def test_aggregations_across_blocks_read_as_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Blocks of a few lines: aggregations, overlap checks and cuts carry over blocks."""
    import functools

    import replay.convert.prepare as prepare
    from replay.convert.source import read_blocks

    name = BOUNDARIES[0]
    whole, trace = convert(tmp_path, name, vm_config=_config(tmp_path), damon_intervals=INTERVALS)
    monkeypatch.setattr(prepare, "read_blocks", functools.partial(read_blocks, block_bytes=block))
    cut, small = convert(tmp_path, name, vm_config=_config(tmp_path), damon_intervals=INTERVALS)
    assert small.equals(trace)
    assert cut.damon["aggregations"] == whole.damon["aggregations"] == 2
    assert cut.damon["aggregations_cut_short"] == whole.damon["aggregations_cut_short"] == 2


def test_two_kdamonds_interleaved_are_grouped_apart(tmp_path: Path) -> None:
    """Two monitors print on two CPUs: their lines interleave, each keeps its aggregations."""
    lines = lines_with(HEADS[0], "damon_aggregated")
    other = [ln.replace("kdamond.0-107 ", "kdamond.1-108 ") for ln in lines]
    path = tmp_path / "two.txt"
    path.write_text("".join(f"{a}\n{b}\n" for a, b in zip(lines, other, strict=True)))
    report, trace = _convert_path(
        tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS
    )
    targets = report.damon["targets"]  # type: ignore[attr-defined]
    assert sorted(targets) == ["kdamond.0 (pid 107) target 0", "kdamond.1 (pid 108) target 0"]
    assert all(t["regions"] == len(lines) for t in targets.values())
    assert report.damon["aggregations_cut_short"] == 2  # type: ignore[attr-defined]
    assert report.skipped == {}  # type: ignore[attr-defined]
    assert _regions(trace).height == 2 * len(lines)


def test_damo_record_without_intervals_takes_the_option_or_stops(tmp_path: Path) -> None:
    records = json.loads((LOGS / DAMO).read_text())
    for r in records:
        r["intervals"] = None  # damo writes null when it did not know them
    path = tmp_path / "nointervals.data"
    path.write_text(json.dumps(records))
    with pytest.raises(LogFormatError, match=r"nointervals.data: .*--damon-intervals"):
        _convert_path(tmp_path, path, vm_config=_config(tmp_path))
    report, trace = _convert_path(
        tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS
    )
    assert report.damon["intervals_source"] == "option"  # type: ignore[attr-defined]
    assert _regions(trace).height == len(_damo_regions())


def test_json_that_is_no_damo_record(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('[{"name": "not a record"}]')
    with pytest.raises(LogFormatError, match=r"other.json: record 0: not damo's record format"):
        _convert_path(tmp_path, path, vm_config=_config(tmp_path))


def _as_layout(line: str, layout: str) -> str:
    """A tracefs line of the shared sample in perf script's or trace-cmd report's layout,
    with the columns the real captures of those tools show (damon-perf-script-head.txt,
    damon-trace-cmd-head.txt)."""
    m = re.match(r"^\s*(\S+)-(\d+)\s+\[(\d+)\] \S+\s+([\d.]+): (\w+): (.*)$", line)
    assert m is not None, line
    comm, pid, cpu, ts, event, payload = m.groups()
    if layout == "perf":
        return f"{comm:>16} {pid:>5} [{cpu}] {ts:>12}: {'damon:' + event:>30}: {payload}"
    return f"{comm + '-' + pid:>24} [{cpu}] {ts:>12}: {event + ':':<22} {payload}"


@pytest.mark.parametrize("layout", ["perf", "trace-cmd"])
def test_shared_sample_in_the_other_layouts(tmp_path: Path, layout: str) -> None:
    name = HEADS[4]
    lines = lines_with(name, "damon_aggregated")
    path = tmp_path / f"shared-{layout}.txt"
    head = ["cpus=2"] if layout == "trace-cmd" else []
    path.write_text("\n".join(head + [_as_layout(ln, layout) for ln in lines]) + "\n")
    report, trace = _convert_path(
        tmp_path, path, vm_config=_config(tmp_path), damon_intervals=INTERVALS
    )
    assert report.files[0].layout == layout  # type: ignore[attr-defined]
    assert report.events["damon_aggregated"] == len(lines)  # type: ignore[attr-defined]
    text = _regions_in_text(name)
    got = _regions(trace)
    assert got["nr_accesses"].to_list() == [a for _, _, a, _ in text]
    assert got["gpa"].to_list() == [s - (4 << 30) for s, _, _, _ in text]


def test_damo_kdamonds_pid_picks_the_qemu_table_of_that_process(tmp_path: Path) -> None:
    """QEMU's log with -msg timestamp=on names its process (pid@): the damo target's pid."""
    mine = tmp_path / "qemu-a.log"
    mine.write_text(
        "5555@1700000000.000001:kvm_set_user_memory AddrSpace#0 Slot#0 flags=0x0 gpa=0x0 "
        "size=0x200000000 ua=0x100000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0\n"
    )
    other = tmp_path / "qemu-b.log"
    other.write_text(
        "kvm_set_user_memory Slot#0 flags=0x0 gpa=0x0 size=0x200000000 ua=0x7f0000000000 ret=0\n"
    )
    path = tmp_path / "damon.data"
    path.write_bytes((LOGS / DAMO).read_bytes())
    with pytest.raises(LogFormatError, match="could be any of 2 VMs"):
        _convert_path(tmp_path, path, mine, other)
    kdamonds = [{"contexts": [{"targets": [{"pid": 5555}]}]}]
    (tmp_path / "damon.data.kdamonds").write_text(json.dumps(kdamonds))
    report, trace = _convert_path(tmp_path, path, mine, other)
    assert report.damon["bytes_outside_memslots"] == 0  # type: ignore[attr-defined]
    assert [v["name"] for v in report.vms] == ["vm-5555"]  # type: ignore[attr-defined]
    assert _regions(trace).height == len(_damo_regions())
