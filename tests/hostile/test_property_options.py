"""Extreme options and TOML values, generated: ``--bucket-ms``, scenario values, cost files,
``--vm-config`` values and binary files where TOML is expected. Each goes through the command
that reads it; the contract must hold and what is written must be read back by the tool.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.hostile.runner import LOGS, SCENARIOS, Sandbox
from tests.hostile.strategies import toml_value, toml_values

if TYPE_CHECKING:
    from pathlib import Path

PROPERTY = settings(
    max_examples=8,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: each example is a process
    suppress_health_check=[HealthCheck.too_slow],
)
QUICK = (SCENARIOS / "quick.toml").read_text()
COST_KEYS = (
    "fault_base_ns",
    "sp_alloc_ns",
    "refill_page_ns",
    "refill_page_pressure_ns",
    "pressure_window_ns",
    "zap_flush_ns",
)
VM_CONFIG = """\
mmu_mode = "tdp_mmu"
[[vm]]
name = "web"
threads = [4136, 4145, 4146, 4150]
vcpus = 8
mmu_mode = "shadow_direct"
[[vm.memslots]]
gpa_start = 0
size = "3GiB"
backing = "4k"
dirty_log = false
[[vm.memslots]]
gpa_start = "4GiB"
size = "1GiB"
backing = "2m"
hva_start = "0x7f1c00000000"
"""
"""A --vm-config for the kvm list's kvm_page_fault excerpt (its vCPU threads are one VM)."""
LKML = LOGS / "public-kvm-page-fault-lkml-2022.txt"

ASSIGNMENT = re.compile(r"(?m)(?<![#\w])([a-z_]+) = ([^,}\n#]+)")


def assignments(text: str) -> list[tuple[int, int, str]]:
    """(start, end, key) of every ``key = value`` of a TOML text, inline tables included."""
    spans = []
    for m in ASSIGNMENT.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if text[line_start : m.start()].lstrip().startswith("#"):
            continue
        spans.append((m.start(2), m.end(2), m.group(1)))
    return spans


def edited(text: str, picks: list[tuple[int, Any]]) -> str:
    """``text`` with the values of the picked assignments (by index) replaced."""
    spans = assignments(text)
    chosen = {}
    for which, value in picks:
        chosen[which % len(spans)] = value
    for i in sorted(chosen, reverse=True):
        start, end, _ = spans[i]
        text = text[:start] + toml_value(chosen[i]) + text[end:]
    return text


def _key_index(text: str, key: str) -> int:
    return next(i for i, (_, _, k) in enumerate(assignments(text)) if k == key)


# -- --bucket-ms ---------------------------------------------------------------------------------
bucket_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e-7", "0.0001", "1e30", "nan", "-0", "1e-320", "0x10", "10_000", "1,5", ""]),
)


@pytest.mark.xfail(strict=True, reason="issue 12 item 5: tiny, huge or not finite --bucket-ms")
@PROPERTY
@given(value=bucket_values)
@example(value="1e-7")
def test_bucket_ms(hostile_base: Path, small_trace: Path, value: str) -> None:
    with Sandbox(hostile_base) as box:
        box.copy(small_trace, "t.parquet")
        box.run(
            "run",
            "t.parquet",
            "--policy",
            "zap",
            f"--bucket-ms={value}",
            "-o",
            "runs",
            outputs={"runs": "runs"},
        )


# -- scenario values -----------------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="issue 12 item 11: scenario numbers not range-checked")
@PROPERTY
@given(picks=st.lists(st.tuples(st.integers(0, 1_000), toml_values), min_size=1, max_size=2))
@example(picks=[(_key_index(QUICK, "rate"), math.inf)])
@example(picks=[(_key_index(QUICK, "duration_s"), 1e12)])
def test_scenario_values(hostile_base: Path, picks: list[tuple[int, Any]]) -> None:
    with Sandbox(hostile_base) as box:
        box.put("s.toml", edited(QUICK, picks))
        got = box.run(
            "synth",
            "s.toml",
            "--accesses",
            "2000",
            "-o",
            "t.parquet",
            "--json",
            outputs={"t.parquet": "trace"},
        )
        if got.returncode == 0:
            doc = box.run("inspect", "t.parquet", "--json").json()
            assert doc["events_by_kind"]["access"] == 2000, "the accesses asked for"
            assert doc["t_first_ns"] >= 0, "time wrapped past int64"


# -- cost files ----------------------------------------------------------------------------------
@PROPERTY
@given(costs=st.dictionaries(st.sampled_from(COST_KEYS), toml_values, min_size=1, max_size=3))
@example(costs={"fault_base_ns": 10**30})
def test_cost_values(hostile_base: Path, small_trace: Path, costs: dict[str, Any]) -> None:
    text = "".join(f"{k} = {toml_value(v)}\n" for k, v in costs.items())
    with Sandbox(hostile_base) as box:
        box.copy(small_trace, "t.parquet")
        box.put("costs.toml", text)
        box.run(
            "run",
            "t.parquet",
            "--policy",
            "zap",
            "--costs",
            "costs.toml",
            "-o",
            "runs",
            outputs={"runs": "runs"},
        )


# -- --vm-config values --------------------------------------------------------------------------
@pytest.mark.xfail(
    strict=True, reason="issue 12 item 4: --vm-config slots that overlap are written"
)
@PROPERTY
@given(picks=st.lists(st.tuples(st.integers(0, 1_000), toml_values), min_size=1, max_size=2))
@example(picks=[(_key_index(VM_CONFIG, "size"), "5GiB")])
def test_vm_config_values(hostile_base: Path, picks: list[tuple[int, Any]]) -> None:
    with Sandbox(hostile_base) as box:
        box.copy(LKML, "log.txt")
        box.put("vms.toml", edited(VM_CONFIG, picks))
        box.run(
            "convert",
            "log.txt",
            "--vm-config",
            "vms.toml",
            "-o",
            "t.parquet",
            outputs={"t.parquet": "trace"},
        )


def test_vm_config_base_is_valid(sandbox: Sandbox) -> None:
    """The config every example edits is itself accepted, and places the log's faults."""
    sandbox.copy(LKML, "log.txt")
    sandbox.put("vms.toml", VM_CONFIG)
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
    assert [vm["name"] for vm in got.json()["vms"]] == ["web"]


# -- binary files where TOML is expected ---------------------------------------------------------
@PROPERTY
@given(
    data=st.binary(min_size=1, max_size=512),
    what=st.sampled_from(["scenario", "costs", "vm-config"]),
)
@example(data=bytes(range(256)), what="scenario")
def test_binary_toml(hostile_base: Path, small_trace: Path, data: bytes, what: str) -> None:
    with Sandbox(hostile_base) as box:
        box.put("f.toml", data)
        box.copy(small_trace, "t.parquet")
        box.copy(LKML, "log.txt")
        args = {
            "scenario": ["synth", "f.toml", "-o", "out.parquet"],
            "costs": ["run", "t.parquet", "--costs", "f.toml", "-o", "runs"],
            "vm-config": ["convert", "log.txt", "--vm-config", "f.toml", "-o", "out.parquet"],
        }[what]
        box.run(*args, outputs={"out.parquet": "trace", "runs": "runs"})
