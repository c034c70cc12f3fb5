"""Damaged kernel logs, generated from the real ones: lines cut, padded with blanks, time stamps
garbled, blocks reordered or repeated, layouts mixed, huge task names, binary junk, files cut
short. ``replay convert`` must keep the contract, and a trace it writes must be one the tool
reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.hostile.runner import DATA, LOGS, Sandbox

if TYPE_CHECKING:
    from pathlib import Path

PROPERTY = settings(
    max_examples=10,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: each example is a process
    suppress_health_check=[HealthCheck.too_slow],
)
SOURCES = {
    "ftrace-kvm-head.txt": LOGS,
    "perf-script-kvm-head.txt": LOGS,
    "trace-cmd-kvm-head.txt": LOGS,
    "public-kvm-page-fault-lkml-2022.txt": LOGS,
    "public-kvm-fast-page-fault-lkml-2024-rejoined.txt": LOGS,
    "capture-ftrace-tgid-dropcaches.txt": LOGS,
    "perf-script-vmscan-dropcaches.txt": LOGS,
    "vmm-trace-cmd.txt": DATA,
}
"""Real logs of every layout (each a few hundred lines at most)."""
VMSCAN = LOGS / "ftrace-vmscan-dropcaches.txt"


def lines_of(name: str) -> list[bytes]:
    return (SOURCES[name] / name).read_bytes().splitlines(keepends=True)


STAMPS = [
    b"81234567.000000",
    b"100000000000000000000.000000",
    b"9300000000.000000",
    b"-5.000000",
    b"0.0",
    b"12.3456789012",
    b"nan",
    b"1e20",
    b"4.",
    b".5",
    b"18446744073.709551",
]
JUNK = [
    b"\x00\x01\x02",
    b"\xff\xfe",
    b"\x1b[31m",
    "é€".encode(),
    b"\r",
    b"\x0c",
    b"[FAILED TO PARSE]",
]


def _mutate(lines: list[bytes], op: tuple[Any, ...]) -> list[bytes]:
    kind = op[0]
    if not lines:
        return lines
    i = op[1] % len(lines)
    line = lines[i]
    if kind == "cut":
        lines[i] = line[: op[2] % max(len(line), 1)] + b"\n"
    elif kind == "pad":
        lines[i] = (
            (op[2] + line.rstrip(b"\n") + op[3] + b"\n") if line.endswith(b"\n") else op[2] + line
        )
    elif kind == "stamp":
        colon = line.find(b": ")
        start = line.rfind(b" ", 0, colon) + 1 if colon > 0 else -1
        if start > 0:
            lines[i] = line[:start] + op[2] + line[colon:]
    elif kind == "reorder":
        j = op[2] % len(lines)
        lo, hi = sorted((i, j))
        lines = lines[hi:] + lines[lo:hi] + lines[:lo]
    elif kind == "repeat":
        lines = lines + lines[i:]
    elif kind == "mix":
        other = lines_of(op[2])
        lines = lines[:i] + other[: op[3] % (len(other) + 1)] + lines[i:]
    elif kind == "task":
        dash = line.find(b"-")
        if dash > 0:
            lines[i] = b" " + b"x" * op[2] + line[dash:]
    elif kind == "junk":
        lines[i] = line[: op[3] % max(len(line), 1)] + op[2] + line[op[3] % max(len(line), 1) :]
    elif kind == "join":
        lines[i] = line.rstrip(b"\n")
    elif kind == "blank":
        lines.insert(i, op[2])
    elif kind == "end":
        lines = lines[: i + 1]
        lines[-1] = lines[-1][: op[2] % max(len(lines[-1]), 1)]
    return lines


index = st.integers(0, 10_000)
mutations = st.one_of(
    st.tuples(st.just("cut"), index, index),
    st.tuples(
        st.just("pad"),
        index,
        st.sampled_from([b"", b" ", b"\t", b"  \t"]),
        st.sampled_from([b" ", b"\t", b" \t ", b"\r"]),
    ),
    st.tuples(st.just("stamp"), index, st.sampled_from(STAMPS)),
    st.tuples(st.just("reorder"), index, index),
    st.tuples(st.just("repeat"), index),
    st.tuples(st.just("mix"), index, st.sampled_from(sorted(SOURCES)), index),
    st.tuples(st.just("task"), index, st.sampled_from([1, 15, 100, 5_000])),
    st.tuples(st.just("junk"), index, st.sampled_from(JUNK), index),
    st.tuples(st.just("join"), index),
    st.tuples(st.just("blank"), index, st.sampled_from([b"\n", b"   \n", b"-----\n", b"#\n"])),
    st.tuples(st.just("end"), index, index),
)


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 items 3 and 6: lines off the fast path crash the slow path; times wrap",
)
@PROPERTY
@given(
    source=st.sampled_from(sorted(SOURCES)),
    ops=st.lists(mutations, min_size=1, max_size=4),
    with_vmscan=st.booleans(),
    strict=st.booleans(),
)
@example(
    source="public-kvm-page-fault-lkml-2022.txt",
    ops=[("pad", 3, b"", b" ")],
    with_vmscan=False,
    strict=False,
)
@example(
    source="public-kvm-page-fault-lkml-2022.txt",
    ops=[("stamp", 0, b"9300000000.000000")],
    with_vmscan=False,
    strict=False,
)
def test_damaged_log(
    hostile_base: Path,
    source: str,
    ops: list[tuple[Any, ...]],
    with_vmscan: bool,
    strict: bool,
) -> None:
    lines = lines_of(source)
    for op in ops:
        lines = _mutate(lines, op)
    with Sandbox(hostile_base) as box:
        box.put("log.txt", b"".join(lines))
        inputs = ["log.txt"]
        if with_vmscan:
            box.copy(VMSCAN, "vmscan.txt")
            inputs.append("vmscan.txt")
        got = box.run(
            "convert",
            *inputs,
            "-o",
            "t.parquet",
            "--json",
            *(["--strict"] if strict else []),
            outputs={"t.parquet": "trace"},
        )
        if got.returncode == 0:
            t_ns = _times(box.path / "t.parquet")
            assert min(t_ns) >= 0, "a time stamp wrapped past int64"


def _times(path: Path) -> list[int]:
    import pyarrow.parquet as pq

    times: list[int] = pq.read_table(path, columns=["t_ns"]).column("t_ns").to_pylist()
    return times


@settings(PROPERTY, max_examples=5)
@given(data=st.binary(min_size=1, max_size=2_000))
def test_binary_junk_as_a_log(hostile_base: Path, data: bytes) -> None:
    with Sandbox(hostile_base) as box:
        box.put("log.txt", data)
        box.run("convert", "log.txt", "-o", "t.parquet", outputs={"t.parquet": "trace"})
