"""Values a trace cannot hold are skipped by line, never wrapped, clamped or written (issue 12
item 4): the edges of each range, on real lines edited in one field."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

from replay.convert import ConvertOptions, convert_logs
from replay.trace.reader import iter_batches, open_trace
from tests.convert.helpers import LOGS

if TYPE_CHECKING:
    from pathlib import Path

LKML = LOGS / "public-kvm-page-fault-lkml-2022.txt"


def _convert(tmp: Path, text: str, name: str = "log.txt") -> tuple[dict[str, int], Path]:
    log = tmp / name
    log.write_text(text)
    out = tmp / "t.parquet"
    report = convert_logs([str(log)], out, ConvertOptions())
    for _ in iter_batches(open_trace(out)):
        pass  # the tool's own reader accepts every row its converter wrote
    return dict(report.skipped), out


def _edited(field: str, value: str, line: int = 0) -> str:
    lines = LKML.read_text().splitlines()
    lines[line] = re.sub(rf"{field} \S+", f"{field} {value}", lines[line], count=1)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("vcpu", "skipped"), [(65534, False), (65535, True), (123456789, True)])
def test_vcpu_field_edge(tmp_path: Path, vcpu: int, skipped: bool) -> None:
    counts, out = _convert(tmp_path, _edited("vcpu", str(vcpu)))
    assert any("vcpu field" in k for k in counts) == skipped
    vcpus = pq.read_table(out, columns=["vcpu"]).column("vcpu").to_pylist()
    assert (vcpu in vcpus) != skipped


@pytest.mark.parametrize(
    ("address", "skipped", "root"),
    [
        ((1 << 48) - 4096, False, 4),
        (1 << 48, False, 5),
        ((1 << 52) - 1, False, 5),
        (1 << 52, True, 4),
    ],
)
def test_fault_address_edge(tmp_path: Path, address: int, skipped: bool, root: int) -> None:
    counts, out = _convert(tmp_path, _edited("address", f"0x{address:016x}"))
    assert any("fault address" in k for k in counts) == skipped
    trace = open_trace(out)
    assert trace.meta.vms[0].root_level == root


def test_nid_past_int16_is_skipped_not_wrapped(tmp_path: Path) -> None:
    vmscan = (
        (LOGS / "ftrace-vmscan-dropcaches.txt").read_text().replace("nid: 0 ", "nid: 99999 ", 1)
    )
    (tmp_path / "vmscan.txt").write_text(vmscan)
    log = tmp_path / "kvm.txt"
    log.write_text((LOGS / "ftrace-kvm-head.txt").read_text())
    out = tmp_path / "t.parquet"
    report = convert_logs([str(tmp_path / "vmscan.txt"), str(log)], out, ConvertOptions())
    assert report.skipped["nid past 0..32767 or priority past 0..12"] == 1
    nids = pq.read_table(out, columns=["nid"]).column("nid").drop_null().to_pylist()
    assert nids, "no reclaim pass left"
    assert min(nids) >= 0
