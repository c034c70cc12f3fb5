"""Issue 15, bad DAMON input through the command line: each case is one clear line and exit 1
with no output left behind, or a counted, reported skip; never a silent drop.

The DAMON lines are the development machine's real capture (``traces/logs/damon-*``, a paddr
monitor); where a case needs a line the capture does not hold, one field of a real line is
edited and the test says which.
"""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING, Any

import pytest

from tests.convert.helpers import DAMON_PRETEND_VMS
from tests.hostile.runner import LOGS

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.hostile.runner import Outcome, Sandbox

HEAD = "damon-ftrace-head.txt"
DAMO = "damon-damo-v3.3.0-trimmed.json"
INTERVALS = ("--damon-intervals", "500000,5000000")
PRETEND = DAMON_PRETEND_VMS


def run(
    sandbox: Sandbox, *inputs: str, config: str | None = PRETEND, extra: tuple[str, ...] = INTERVALS
) -> Outcome:
    args = list(inputs)
    if config is not None:
        sandbox.put("vms.toml", config)
        args += ["--vm-config", "vms.toml"]
    return sandbox.run(
        "convert", *args, "-o", "t.parquet", "--json", *extra, outputs={"t.parquet": "trace"}
    )


def refused(got: Outcome, *needles: str) -> None:
    assert got.returncode == 1, got.describe()
    assert all(n in got.error_line for n in needles), got.describe()
    assert not (got.folder / "t.parquet").exists()


def test_damon_lines_with_no_memslot_map(sandbox: Sandbox) -> None:
    sandbox.copy(LOGS / HEAD)
    refused(
        run(sandbox, HEAD, config=None),
        f"{HEAD}:",
        "--vm-config with hva_start",
        "kvm_set_user_memory",
    )


def test_paddr_record_in_no_memslot(sandbox: Sandbox) -> None:
    sandbox.copy(LOGS / HEAD)
    elsewhere = PRETEND.replace("0x100000000", "0x7f0000000000")
    refused(run(sandbox, HEAD, config=elsewhere), "paddr record", "host-physical to guest map")


def test_intervals_missing(sandbox: Sandbox) -> None:
    sandbox.copy(LOGS / HEAD)
    refused(run(sandbox, HEAD, extra=()), f"{HEAD}:", "--damon-intervals SAMPLE_US,AGGR_US")


@pytest.mark.parametrize("value", ["5000", "a,b", "100000,5000", "0,100"])
def test_bad_intervals_option(sandbox: Sandbox, value: str) -> None:
    sandbox.copy(LOGS / HEAD)
    refused(run(sandbox, HEAD, extra=("--damon-intervals", value)), "--damon-intervals")


def test_target_that_is_no_vm_is_counted(sandbox: Sandbox) -> None:
    """The capture's target 0 is no VM of this config: its lines are counted, not placed.

    The kvm capture is beside it (with the DAMON time stamps moved into its span, so the two
    share a clock), so the trace still has something to replay.
    """
    kvm = "ftrace-kvm-head.txt"
    sandbox.copy(LOGS / kvm)
    second = re.search(r" (\d+)\.\d+: kvm", (LOGS / kvm).read_text()).group(1)  # type: ignore[union-attr]
    sandbox.put(HEAD, re.sub(r"   600\.", f"   {second}.", (LOGS / HEAD).read_text()))
    got = run(sandbox, kvm, HEAD, config=PRETEND.replace("damon_target = 0", "damon_target = 1"))
    assert got.returncode == 0, got.describe()
    doc = got.json()
    assert (
        doc["skipped"][
            "damon_aggregated of a target that is no VM (no --vm-config VM has damon_target = 0)"
        ]
        == 179
    )
    assert any("is no VM" in w for w in doc["warnings"])
    assert doc["rows"]["region"] == 0


def test_overlapping_regions_are_counted_or_refused_with_strict(sandbox: Sandbox) -> None:
    """One real line edited: its start moved back a page, into the region before it."""

    def back_a_page(line: str) -> str:
        start = int(re.search(r" (\d+)-", line).group(1))  # type: ignore[union-attr]
        return line.replace(f" {start}-", f" {start - 4096}-")

    at, doc = _converted_with_one_line_edited(sandbox, "overlap.txt", 3, back_a_page)
    assert doc["skipped"]["DAMON region overlaps an earlier region of its aggregation"] == 1
    assert doc["rows"]["region"] == 178
    assert any(f"overlap.txt:{at + 1}:" in e for e in doc["examples"])
    strict = sandbox.run(
        "convert",
        "overlap.txt",
        "-o",
        "s.parquet",
        "--vm-config",
        "vms.toml",
        *INTERVALS,
        "--strict",
        outputs={"s.parquet": "trace"},
    )
    assert strict.returncode == 1
    assert f"overlap.txt:{at + 1}: DAMON region overlaps" in strict.error_line


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_damo_record(sandbox: Sandbox, compressed: bool) -> None:
    data = (LOGS / DAMO).read_bytes()
    data = zlib.compress(data) if compressed else data
    sandbox.put("damon.data", data[: len(data) // 2])
    refused(run(sandbox, "damon.data", extra=()), "damon.data", "truncated or damaged", "re-record")


def test_damo_record_on_a_clock_the_kvm_log_does_not_share(sandbox: Sandbox) -> None:
    sandbox.copy(LOGS / DAMO, "damon.data")
    sandbox.copy(LOGS / "ftrace-kvm-head.txt")
    refused(
        run(sandbox, "ftrace-kvm-head.txt", "damon.data", extra=()),
        "damon.data",
        "no time in common, so the two clocks cannot be aligned",
    )


def test_one_damon_target_given_to_two_vms(sandbox: Sandbox) -> None:
    sandbox.copy(LOGS / HEAD)
    twice = PRETEND + PRETEND.replace('"pretend"', '"other"').replace("4242", "4343").replace(
        "0x100000000", "0x300000000"
    )
    refused(run(sandbox, HEAD, config=twice), "vms.toml", "damon_target = 0 is given to two VMs")


def test_unreadable_damon_payload_is_counted(sandbox: Sandbox) -> None:
    """A real line cut inside its payload (a capture stopped mid-write) is quoted, not fatal."""
    _, doc = _converted_with_one_line_edited(
        sandbox, "cut.txt", 7, lambda line: line[: line.index(": ", line.index("nr_regions"))]
    )
    assert doc["skipped"]["unreadable damon_aggregated payload"] == 1
    assert doc["rows"]["region"] == 178


def _converted_with_one_line_edited(
    sandbox: Sandbox, name: str, after: int, edit: Callable[[str], str]
) -> tuple[int, Any]:
    """Convert the real capture with its line ``after`` lines past the first DAMON one edited.

    Returns that line's index and the conversion's JSON document (the conversion succeeds).
    """
    lines = (LOGS / HEAD).read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if "damon_aggregated" in ln) + after
    lines[at] = edit(lines[at])
    sandbox.put(name, "\n".join(lines) + "\n")
    got = run(sandbox, name)
    assert got.returncode == 0, got.describe()
    return at, got.json()
