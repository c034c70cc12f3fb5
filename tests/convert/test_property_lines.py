"""Real kvm_page_fault lines, varied as tools and damage vary them, are all accounted for.

Each line of the real logs below is padded (leading and trailing blanks), has its address
unpadded, its vcpu field or task name widened, or is cut short; hypothesis picks which. The
converter must never crash, and every line must land in exactly one of: an access row, a skipped
reason, an unknown or an unneeded event (issue 12 item 3). With ``--strict`` the conversion
either reads every line or stops with one error naming a line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.convert import ConvertOptions, convert_logs
from replay.errors import ReplayError
from tests.convert.helpers import LOGS

if TYPE_CHECKING:
    from pathlib import Path

SOURCES = (
    "public-kvm-page-fault-lkml-2022.txt",
    "public-kvm-fast-page-fault-lkml-2024-rejoined.txt",
)
"""Real logs of kvm_page_fault lines (with kvm_entry/exit and fast_page_fault lines between)."""


def _vary(line: str, how: tuple[str, int]) -> str:
    kind, n = how
    if kind == "lead":
        return " \t"[n % 2] * (1 + n % 7) + line
    if kind == "trail":
        return line + (" ", "\t", " \t ", "  ")[n % 4]
    if kind == "unpad":
        return re.sub(r"address 0x0+(?=[0-9a-f])", "address 0x", line)
    if kind == "vcpu":
        return re.sub(r"vcpu \d+ rip", f"vcpu {n} rip", line)
    if kind == "task":
        return re.sub(r"^\s*\S+-(\d+)", lambda m: "t" * (1 + n % 300) + "-" + m.group(1), line)
    if kind == "cut":
        return line[: n % max(len(line), 1)]
    return line


variation = st.tuples(
    st.sampled_from(["keep", "lead", "trail", "unpad", "vcpu", "task", "cut"]),
    st.integers(0, 10**9),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=st.sampled_from(SOURCES), hows=st.lists(variation, min_size=29, max_size=29))
def test_every_line_is_accounted_for(
    tmp_path: Path, source: str, hows: list[tuple[str, int]]
) -> None:
    lines = (LOGS / source).read_text().splitlines()
    varied = [_vary(line, how) for line, how in zip(lines, hows, strict=False)]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(varied) + "\n")
    out = tmp_path / "t.parquet"
    out.unlink(missing_ok=True)
    try:
        report = convert_logs([str(log)], out, ConvertOptions())
    except ReplayError as exc:
        failed = str(exc)
    else:
        failed = ""
    if failed:
        # Nothing usable left (every fault line cut or out of range): one clear message.
        assert failed.startswith(("no ", "log ")), failed
        assert not out.exists()
        return
    accounted = (
        report.rows["access"]
        + sum(report.skipped.values())
        + sum(report.unknown_events.values())
        + sum(report.unused_events.values())
    )
    assert accounted == len(varied), report.to_json()
    # Lines only padded or unpadded are ordinary lines: every such fault line is a row.
    ordinary = sum(
        1
        for line, (kind, _) in zip(lines, hows, strict=False)
        if kind in ("keep", "lead", "trail", "unpad") and ": kvm_page_fault: " in line
    )
    assert report.rows["access"] >= ordinary, report.to_json()


@pytest.mark.parametrize("source", SOURCES)
def test_strict_reads_ordinary_variations(tmp_path: Path, source: str) -> None:
    """Blanks around a line and unpadded addresses are ordinary: --strict reads them all."""
    lines = (LOGS / source).read_text().splitlines()
    varied = [
        _vary(_vary(line, ("trail", i)), ("unpad", 0) if i % 2 else ("lead", i))
        for i, line in enumerate(lines)
    ]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(varied) + "\n")
    report = convert_logs([str(log)], tmp_path / "t.parquet", ConvertOptions(strict=True))
    assert report.rows["access"] == sum(1 for ln in lines if ": kvm_page_fault: " in ln)
    assert not report.skipped


def test_strict_stops_at_a_cut_line(tmp_path: Path) -> None:
    lines = (LOGS / SOURCES[0]).read_text().splitlines()
    lines[2] = lines[2][:90]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReplayError, match=r"log\.txt:3: .*\(--strict\)"):
        convert_logs([str(log)], tmp_path / "t.parquet", ConvertOptions(strict=True))
    assert not (tmp_path / "t.parquet").exists()
