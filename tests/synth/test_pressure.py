from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from replay.synth import load_scenario
from replay.synth.pressure import host_events
from replay.trace.schema import EVENT_CODE, SOURCE_CODE
from tests.builders import TINY_SCENARIO

Make = Callable[..., Path]


def _events(scenario_file: Make, pressure: str, extra_vm: str = ""):  # type: ignore[no-untyped-def]
    text = TINY_SCENARIO.split("[[pressure]]")[0] + extra_vm + pressure
    sc = load_scenario(str(scenario_file(text)))
    return host_events(sc, {v.name: i for i, v in enumerate(sc.vms)}, np.random.default_rng(0))


def test_kswapd_escalates_from_12_and_stays_at_the_floor(scenario_file: Make) -> None:
    ev = _events(
        scenario_file,
        """
[[pressure]]
kind = "kswapd"
start_s = 0.0
end_s = 0.9
interval_ms = 100
min_priority = 6
passes_per_priority = 2
""",
    )
    assert ev.priority.tolist() == [12, 12, 11, 11, 10, 10, 9, 9, 8]
    assert set(ev.source.tolist()) == {SOURCE_CODE["kswapd"]}
    assert ev.t_ns.tolist() == [i * 100_000_000 for i in range(9)]


def test_direct_burst_walks_12_down_to_min_priority_on_each_node(scenario_file: Make) -> None:
    ev = _events(
        scenario_file,
        """
[[pressure]]
kind = "direct"
at_s = [0.5]
min_priority = 9
pass_interval_us = 10
nodes = 2
""",
    )
    assert ev.priority.tolist() == [12, 12, 11, 11, 10, 10, 9, 9]
    assert ev.nid.tolist() == [0, 1] * 4
    assert ev.t_ns.tolist() == [500_000_000 + 10_000 * (i // 2) for i in range(8)]


def test_drop_caches_repeats_priority_0_passes(scenario_file: Make) -> None:
    ev = _events(
        scenario_file,
        """
[[pressure]]
kind = "drop_caches"
at_s = [0.2, 0.6]
repeats = 3
""",
    )
    assert ev.priority.tolist() == [0] * 6
    assert set(ev.source.tolist()) == {SOURCE_CODE["drop_caches"]}


def test_events_past_the_duration_are_dropped(scenario_file: Make) -> None:
    ev = _events(
        scenario_file,
        """
[[pressure]]
kind = "shrink"
at_s = [0.5, 0.999, 1.0, 3.0]
nr_to_scan = 64
""",
    )
    assert ev.t_ns.tolist() == [500_000_000, 999_000_000]
    assert ev.nr_to_scan.tolist() == [64, 64]
    assert set(ev.event.tolist()) == {EVENT_CODE["shrink"]}


def test_zap_all_targets_every_replica_of_a_vm_group(scenario_file: Make) -> None:
    group = """
[[vm]]
name = "g"
count = 3
vcpus = 1
memslots = [{ gpa_start = 0, size = "4MiB" }]
[[vm.workload]]
kind = "uniform"
rate = 10
"""
    ev = _events(scenario_file, '\n[[pressure]]\nkind = "zap_all"\nvm = "g"\nat_s = [0.5]\n', group)
    assert ev.vm.tolist() == [1, 2, 3]


def test_unmaps_are_aligned_ranges_inside_the_target(scenario_file: Make) -> None:
    ev = _events(
        scenario_file,
        """
[[pressure]]
kind = "unmap"
start_s = 0.0
end_s = 1.0
interval_ms = 1
len = "64KiB"
offset = "16MiB"
footprint = "8MiB"
""",
    )
    assert len(ev) == 1000
    assert np.all(ev.len == 64 << 10)
    assert np.all(ev.gpa % (64 << 10) == 0)
    assert ev.gpa.min() >= 16 << 20
    assert (ev.gpa + ev.len).max() <= 24 << 20
    assert len(np.unique(ev.gpa)) > 50
