"""Issue 12, the findings about ``replay convert``: items 3, 4, 6, 17 (FIFOs, long lines,
duplicate tgids) and 18.

Every log here is real kernel or tool output (``traces/logs``, ``tests/hostile/data``); where a
finding needs a line the captures do not hold, a real line is edited in one field and the test
says which.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.hostile.inputs import log_lines, log_text
from tests.hostile.runner import DATA, LOGS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from tests.hostile.runner import Outcome, Sandbox

LKML = "public-kvm-page-fault-lkml-2022.txt"
"""Seven kvm_page_fault lines of a VMX host (CPU n/KVM threads), posted to the kvm list."""
TGID_HEAD = "capture-ftrace-tgid-dropcaches.txt"
"""A capture with ftrace's record-tgid column: its task columns are spliced onto kvm lines."""


def joined(lines: Iterable[str]) -> str:
    return "\n".join(lines) + "\n"


def convert(
    sandbox: Sandbox, text: str, *options: str, name: str = "log.txt", out: str = "t.parquet"
) -> Outcome:
    sandbox.put(name, text)
    return sandbox.run("convert", name, "-o", out, "--json", *options, outputs={out: "trace"})


def access_rows(path: Path) -> int:
    table = pq.read_table(path, columns=["event"])
    return int(pc.sum(pc.equal(table.column("event"), "access")).as_py() or 0)


# -- item 3: lines the fast path does not take crash the slow path -------------------------------
# Each variant keeps every line an ordinary kvm_page_fault line that a kernel or a tool prints
# (a trailing blank as editors and `sed` leave, an address without zero padding as older
# kernels print it, a long task name, a 9-digit vCPU field); all seven must be read.
ITEM3_VARIANTS: dict[str, Callable[[str], str]] = {
    "trailing space": lambda ln: ln + " ",
    "trailing tab": lambda ln: ln + "\t",
    "unpadded address": lambda ln: re.sub(r"address 0x0+", "address 0x", ln),
    "task name of 100+ characters": lambda ln: ln.replace("/KVM-", "/KVM" + "x" * 100 + "-", 1),
}


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 item 3: the slow path's kvm_page_fault pattern has 4 groups for 3 bases",
)
@pytest.mark.parametrize(
    ("variant", "strict"),
    [*((v, False) for v in sorted(ITEM3_VARIANTS)), ("trailing space", True)],
)
def test_item3_ordinary_lines_off_the_fast_path(
    sandbox: Sandbox, variant: str, strict: bool
) -> None:
    lines = [ITEM3_VARIANTS[variant](ln) for ln in log_lines(LKML)]
    got = convert(sandbox, joined(lines), *(["--strict"] if strict else []))
    assert got.returncode == 0, got.describe()
    assert got.json()["rows"]["access"] == len(lines)


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 items 3 and 4: a 9-digit vcpu field crashes the slow path; fixed, it makes "
    "a VM the reader refuses",
)
def test_item3_nine_digit_vcpu(sandbox: Sandbox) -> None:
    """vcpu 123456789: a field no VM has; a clear refusal or a trace the tool reads."""
    lines = [ln.replace("vcpu 5 ", "vcpu 123456789 ") for ln in log_lines(LKML)]
    convert(sandbox, joined(lines))  # the contract: exit 0 with a readable trace, or one line


@pytest.mark.xfail(
    strict=True, reason="issue 12 item 3: the issue's own reproduction (sed 's/$/ /')"
)
def test_item3_issue_reproduction(sandbox: Sandbox) -> None:
    spaced = "".join(ln + " \n" for ln in log_lines(LKML))
    sandbox.put("spaced.txt", spaced)
    got = sandbox.run("convert", "spaced.txt", "-o", "t.parquet", outputs={"t.parquet": "trace"})
    assert got.returncode == 0


@pytest.mark.parametrize("cut_at", [20, 70, 100, 128])
def test_item3_line_cut_in_the_middle(sandbox: Sandbox, cut_at: int) -> None:
    """A line cut short (a capture stopped mid-write) is counted and quoted, never fatal."""
    lines = log_lines(LKML)
    lines[3] = lines[3][:cut_at]
    got = convert(sandbox, joined(lines))
    assert got.returncode == 0
    assert got.json()["rows"]["access"] == len(lines) - 1
    strict = convert(sandbox, joined(lines), "--strict", out="s.parquet")
    assert strict.returncode == 1
    assert "log.txt:4" in strict.error_line


# -- item 4: the converter writes traces its own reader refuses ----------------------------------
def _addressed(address: int) -> str:
    return joined(
        re.sub(r"address 0x[0-9a-f]+", f"address 0x{address:016x}", ln) for ln in log_lines(LKML)
    )


@pytest.mark.xfail(
    strict=True, reason="issue 12 item 4: inferred slots past the root level / 2**52 are written"
)
@pytest.mark.parametrize("exponent", [50, 52, 60])
def test_item4_fault_address_beyond_the_guest(sandbox: Sandbox, exponent: int) -> None:
    """Every address edited to 2**N: refused naming the line, or a trace the tool reads."""
    got = convert(sandbox, _addressed(1 << exponent))
    if got.returncode == 1:
        assert re.search(r"log\.txt:\d+", got.error_line), got.error_line


@pytest.mark.xfail(strict=True, reason="issue 12 item 4: a VM of 70,001 vCPUs is written")
def test_item4_vcpu_beyond_65535(sandbox: Sandbox) -> None:
    lines = [ln.replace("vcpu 5 ", "vcpu 70000 ") for ln in log_lines(LKML)]
    got = convert(sandbox, joined(lines))
    if got.returncode == 1:
        assert "log.txt:1" in got.error_line


def _tgid_lines(count: int) -> str:
    """``count`` kvm_page_fault lines, each of its own process.

    Derived: the task column of a real record-tgid capture (``sh-301 (    301) [000] .....``)
    with its pid and tgid replaced, spliced onto a real kvm_page_fault payload; the time stamp
    grows by one microsecond a line.
    """
    head = next(ln for ln in log_lines(TGID_HEAD) if "mm_shrink_slab_start" in ln)
    prefix = head[: head.index("[")]
    payload = log_lines(LKML)[1].split("kvm_page_fault: ", 1)[1]
    out = []
    for i in range(count):
        task = prefix.replace("sh-301", f"sh-{1000 + i}").replace("301)", f"{1000 + i})")
        out.append(f"{task}[000] .....  {100 + i / 1e6:.6f}: kvm_page_fault: {payload}")
    return joined(out)


@pytest.mark.xfail(strict=True, reason="issue 12 item 4: VM ids past 65535 are written")
def test_item4_more_than_65536_processes(sandbox: Sandbox) -> None:
    got = convert(sandbox, _tgid_lines(70_000))
    assert got.returncode == 1, "70,000 VMs cannot be ids 0..65535"


VM_CONFIG_HEAD = '[[vm]]\nname = "web"\ntgid = 4145\nthreads = [4136, 4146, 4150]\n'


@pytest.mark.parametrize(
    ("case", "slots"),
    [
        (
            "overlapping slots",
            '[[vm.memslots]]\ngpa_start = 0\nsize = "8GiB"\n'
            '[[vm.memslots]]\ngpa_start = "4GiB"\nsize = "1GiB"\n',
        ),
        (
            "slot past the 4-level root",
            '[[vm.memslots]]\ngpa_start = 0\nsize = "8GiB"\n'
            '[[vm.memslots]]\ngpa_start = "0x1000000000000"\nsize = "1GiB"\n',
        ),
    ],
)
@pytest.mark.xfail(strict=True, reason="issue 12 item 4: --vm-config slots are not checked")
def test_item4_vm_config_slots(sandbox: Sandbox, case: str, slots: str) -> None:
    sandbox.put("vms.toml", VM_CONFIG_HEAD + slots)
    got = convert(sandbox, log_text(LKML), "--vm-config", "vms.toml")
    assert got.returncode == 1, case
    assert "vms.toml" in got.error_line


# -- item 6: time in logs ----------------------------------------------------------------------
def _stamped(index: int, stamp: str) -> list[str]:
    lines = log_lines(LKML)
    lines[index] = re.sub(r"\d+\.\d{6}:", stamp + ":", lines[index], count=1)
    return lines


@pytest.mark.xfail(strict=True, reason="issue 12 item 6: a time stamp of 1e20 s is a traceback")
def test_item6_time_stamp_of_1e20_seconds(sandbox: Sandbox) -> None:
    got = convert(sandbox, joined(_stamped(3, "100000000000000000000.000000")))
    if got.returncode == 0:
        assert got.json()["rows"]["access"] == 6, "the line cannot be placed in time"


@pytest.mark.xfail(strict=True, reason="issue 12 item 6: 9300000000 s wraps to a negative t_ns")
def test_item6_time_stamp_past_int64_nanoseconds(sandbox: Sandbox) -> None:
    got = convert(sandbox, joined(_stamped(0, "9300000000.000000")))
    if got.returncode == 0:
        t_ns = pq.read_table(sandbox.path / "t.parquet").column("t_ns").to_pylist()
        assert min(t_ns) >= 0, f"time wrapped: {t_ns}"
        assert got.json()["rows"]["access"] == 6, "9.3e18 ns does not fit int64: not a row"


ORDER_WORDS = ("order", "backwards", "time stamp", "timestamp")


def _warned(got: Outcome, words: tuple[str, ...] = ORDER_WORDS) -> bool:
    """Whether a warning of the conversion mentions one of ``words``."""
    text = " ".join(got.json().get("warnings", [])).lower()
    return any(w in text for w in words)


@pytest.mark.xfail(strict=True, reason="issue 12 item 6: a garbled stamp is re-sorted silently")
def test_item6_one_garbled_time_stamp_is_said(sandbox: Sandbox) -> None:
    """81234567.000000 in the middle of 86.58 s stamps: kept or dropped, but never silently."""
    got = convert(sandbox, joined(_stamped(3, "81234567.000000")))
    assert _warned(got), "a line 940 days after its neighbours, re-sorted without a word"


@pytest.mark.xfail(
    strict=True, reason="issue 12 item 6: disorder within a block is re-sorted silently"
)
def test_item6_lines_out_of_order_are_said(sandbox: Sandbox) -> None:
    lines = log_lines(LKML)
    lines[1], lines[5] = lines[5], lines[1]
    got = convert(sandbox, joined(lines))
    assert got.json()["rows"]["access"] == len(lines)
    assert _warned(got), "lines out of time order, re-sorted without a word"


@pytest.fixture(scope="module")
def two_block_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered ftrace log of over 16 MiB (two of the converter's blocks), halves swapped."""
    from tests.hostile.runner import Sandbox

    box = Sandbox(tmp_path_factory.mktemp("blocks"))
    box.run(
        "synth",
        "quick",
        "--accesses",
        "160000",
        "--as",
        "ftrace",
        "-o",
        "log.txt",
        outputs={"log.txt": "file", "log.txt.vms.toml": "file"},
    )
    text = (box.path / "log.txt").read_bytes()
    assert len(text) > (16 << 20), "needs two blocks"
    lines = text.splitlines(keepends=True)
    half = len(lines) // 2
    (box.path / "swapped.txt").write_bytes(b"".join(lines[half:] + lines[:half]))
    return box.path / "swapped.txt"


@pytest.mark.xfail(
    strict=True, reason="issue 12 item 6: rows clamped to one time and counted as skipped"
)
def test_item6_halves_swapped_are_not_clamped_silently(
    sandbox: Sandbox, two_block_log: Path
) -> None:
    """A log concatenated in the wrong order: its rows keep their times or the output says so.

    Today the second half's rows are all moved to the first half's last time stamp and
    counted as "skipped" although they are written.
    """
    sandbox.copy(two_block_log, "log.txt")
    sandbox.copy(two_block_log.with_name("log.txt.vms.toml"), "vms.toml")
    got = sandbox.run(
        "convert",
        "log.txt",
        "--vm-config",
        "vms.toml",
        "-o",
        "t.parquet",
        "--json",
        outputs={"t.parquet": "trace"},
    )
    doc = got.json()
    written = doc["rows"]["access"]
    dropped = sum(v for k, v in doc["skipped"].items() if any(w in k for w in ORDER_WORDS))
    # Kept rows are not "skipped": what was written and what was left out add up to the log.
    assert written + dropped == 160_000, f"{written:,} written, {dropped:,} counted as skipped"
    assert not dropped or _warned(got), "rows left out for their time, without a warning"
    t_ns = pq.read_table(sandbox.path / "t.parquet").column("t_ns")
    distinct = len(pc.unique(t_ns))
    assert distinct > written // 2 or _warned(got), (
        f"{written:,} rows moved onto {distinct:,} time stamps without a warning"
    )


# -- item 17: FIFOs, long lines, two VMs of one tgid -----------------------------------------------
@pytest.mark.xfail(strict=True, reason="issue 12 item 17: a FIFO is called empty")
def test_item17_fifo_is_streamed(sandbox: Sandbox) -> None:
    """`replay convert <(cat log)`: a pipe has no size; it must be read as `-` is."""
    import os

    fifo = sandbox.path / "log.fifo"
    os.mkfifo(fifo)
    text = log_text(LKML).encode()

    def feed() -> None:
        try:
            with fifo.open("wb") as fh:
                fh.write(text)
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        got = sandbox.run(
            "convert", "log.fifo", "-o", "t.parquet", outputs={"t.parquet": "trace"}, timeout=60
        )
    finally:
        # A converter that never opened the FIFO leaves the writer blocked: open it to free it.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        writer.join(timeout=5)
    assert got.returncode == 0, got.describe()
    assert access_rows(sandbox.path / "t.parquet") == 7


@pytest.mark.xfail(strict=True, reason="issue 12 item 17: a line without a newline is held whole")
def test_item17_a_long_line_without_a_newline(sandbox: Sandbox) -> None:
    """A real line whose payload runs on for 512 MiB (a capture cut while a buffer was garbage).

    The issue's 1 GiB line took 3.2 GB; half of it under half the usual 3 GiB bound is the
    same proportion in a fifth of the time. Memory must not grow with a line's length.
    """
    first = log_lines(LKML)[0].encode()
    with (sandbox.path / "long.txt").open("wb") as fh:
        fh.write(first[:-10])
        chunk = b"7" * (1 << 24)
        for _ in range(32):
            fh.write(chunk)
    sandbox.run(
        "convert",
        "long.txt",
        "-o",
        "t.parquet",
        outputs={"t.parquet": "trace"},
        address_space=3 << 29,
    )


@pytest.mark.xfail(strict=True, reason="issue 12 item 17: two VMs of one tgid are accepted")
def test_item17_vm_config_with_two_vms_of_one_tgid(sandbox: Sandbox) -> None:
    sandbox.put("vms.toml", '[[vm]]\nname = "a"\ntgid = 4145\n[[vm]]\nname = "b"\ntgid = 4145\n')
    got = convert(sandbox, log_text(LKML), "--vm-config", "vms.toml")
    assert got.returncode == 1
    assert "vms.toml" in got.error_line
    assert "4145" in got.error_line


# -- item 18: trace-cmd's kvm plugin text ----------------------------------------------------------
CAPTURE = {
    "ftrace": "vmm-ftrace.txt",
    "trace-cmd": "vmm-trace-cmd.txt",
    "perf": "vmm-perf-script.txt",
}
"""One run of a small KVM guest recorded three ways at once (tests/hostile/data/README.md)."""


def _observed(sandbox: Sandbox, layout: str) -> dict[str, object]:
    sandbox.copy(DATA / CAPTURE[layout], f"{layout}.txt")
    got = sandbox.run(
        "convert",
        f"{layout}.txt",
        "-o",
        f"{layout}.parquet",
        "--json",
        outputs={f"{layout}.parquet": "trace"},
    )
    assert got.returncode == 0, got.describe()
    footer = json.loads(
        pq.read_metadata(sandbox.path / f"{layout}.parquet").metadata[b"replay.trace"]
    )
    observed: dict[str, object] = footer["observed"]["per_vm"]
    return observed


def test_item18_ftrace_and_perf_agree(sandbox: Sandbox) -> None:
    """The capture itself: ftrace text and perf's raw fields give the same observed counts."""
    ftrace = _observed(sandbox, "ftrace")
    assert ftrace == _observed(sandbox, "perf")
    assert ftrace["0"] == {
        "sp_indirect": 9,
        "sp_new_l1": 2,
        "sp_new_l2": 1,
        "sp_new_l3": 1,
        "sp_new_l4": 1,
        "sp_zapped_l1": 2,
        "sp_zapped_l2": 1,
        "sp_zapped_l3": 1,
        "sp_zapped_l4": 2,
    }


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 item 18: the kvm plugin's kvm_mmu_prepare_zap_page text is unreadable",
)
def test_item18_trace_cmd_gives_the_same_observed_counts(sandbox: Sandbox) -> None:
    assert _observed(sandbox, "trace-cmd") == _observed(sandbox, "ftrace")


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 item 18: the kvm plugin's kvm_mmu_prepare_zap_page text is unreadable",
)
def test_item18_no_plugin_line_is_unreadable(sandbox: Sandbox) -> None:
    sandbox.copy(DATA / CAPTURE["trace-cmd"], "t.txt")
    got = sandbox.run(
        "convert", "t.txt", "-o", "t.parquet", "--json", outputs={"t.parquet": "trace"}
    )
    unreadable = {k: v for k, v in got.json()["skipped"].items() if "unreadable" in k}
    assert unreadable == {}


def test_item18_samples_of_the_project_agree(sandbox: Sandbox) -> None:
    """The shipped three-way head samples (kvm_mmu_get_page only) already agree."""
    counts = []
    for name in ("ftrace-kvm-head.txt", "perf-script-kvm-head.txt", "trace-cmd-kvm-head.txt"):
        sandbox.copy(LOGS / name)
        out = name.replace(".txt", ".parquet")
        sandbox.run("convert", name, "-o", out, outputs={out: "trace"})
        footer = json.loads(pq.read_metadata(sandbox.path / out).metadata[b"replay.trace"])
        counts.append(footer["observed"]["per_vm"])
    assert counts[0] == counts[1] == counts[2]
