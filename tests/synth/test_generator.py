from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.synth import generate, list_scenarios, load_scenario
from replay.trace import count_mmio, iter_batches
from replay.trace.schema import EVENT_CODE, SOURCE_CODE
from replay.trace.summary import summarize_trace
from tests.builders import TINY_SCENARIO
from tests.synth.helpers import read_all

Make = Callable[..., Path]
MiB = 1 << 20


@pytest.mark.parametrize("name", list_scenarios())
def test_every_shipped_scenario_generates_validates_and_inspects(name: str, tmp_path: Path) -> None:
    sc = load_scenario(name, accesses=30_000)
    out = tmp_path / f"{name}.parquet"
    result = generate(sc, out)
    summary = summarize_trace(str(out))  # reads and validates every row
    assert summary.events_by_kind["access"] == 30_000
    assert result.rows == sum(summary.events_by_kind.values())
    assert summary.trace.meta.provenance["scenario"] == name
    assert summary.trace.meta.coverage == "all-accesses"
    assert len(summary.trace.meta.vms) == len(sc.vms)
    if sc.pressure:
        assert result.host_events > 0


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(
    scenario_file: Make, tmp_path: Path
) -> None:
    path = str(scenario_file())
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    generate(load_scenario(path, seed=4), a)
    generate(load_scenario(path, seed=4), b)
    generate(load_scenario(path, seed=5), c)
    assert a.read_bytes() == b.read_bytes()
    _, ca = read_all(a)
    _, cc = read_all(c)
    assert not np.array_equal(ca["gpa"], cc["gpa"])


def test_a_shipped_scenario_is_byte_identical_across_runs(tmp_path: Path) -> None:
    sc = load_scenario("tdp-host-pressure", accesses=50_000)
    generate(sc, tmp_path / "a.parquet")
    generate(sc, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_declared_rates_are_met(scenario_file: Make, tmp_path: Path) -> None:
    """No total asked: each vCPU makes rate x duration accesses, spread evenly over time."""
    text = TINY_SCENARIO.replace("accesses = 5000\n", "").replace("rate = 1000", "rate = 20000")
    sc = load_scenario(str(scenario_file(text)), duration_s=2.0)
    out = tmp_path / "r.parquet"
    generate(sc, out)
    _, cols = read_all(out)
    acc = cols["event"] == EVENT_CODE["access"]
    for vcpu in (0, 1):
        t = cols["t_ns"][acc & (cols["vcpu"] == vcpu)]
        assert len(t) == 40_000  # 20 000/s x 2 s, exactly
        per_quarter = np.bincount((t // 500_000_000).astype(np.int64), minlength=4)
        expected = 10_000
        assert np.all(np.abs(per_quarter - expected) < 5 * np.sqrt(expected)), per_quarter


def test_phases_change_rate_and_place(scenario_file: Make, tmp_path: Path) -> None:
    text = TINY_SCENARIO.replace("accesses = 5000\n", "").replace(
        'kind = "uniform"\nrate = 1000',
        "rate = 1000\nphases = [\n"
        '  { at_s = 0.0, kind = "uniform", footprint = "16MiB" },\n'
        '  { at_s = 1.0, kind = "sequential", rate = 3000,'
        ' offset = "32MiB", footprint = "8MiB" },\n'
        "]",
    )
    sc = load_scenario(str(scenario_file(text)), duration_s=2.0)
    out = tmp_path / "p.parquet"
    generate(sc, out)
    _, cols = read_all(out)
    acc = (cols["event"] == EVENT_CODE["access"]) & (cols["vcpu"] == 0)
    t, gpa = cols["t_ns"][acc], cols["gpa"][acc]
    first = t < 1_000_000_000
    assert first.sum() == 1000
    assert (~first).sum() == 3000
    assert gpa[first].max() < 16 * MiB
    second = gpa[~first]
    assert second.min() >= 32 * MiB
    assert second.max() < 40 * MiB
    # The sequential scan walks page by page.
    assert np.all(np.diff(second[:100].astype(np.int64)) == 4096)


def test_window_boundaries_do_not_lose_or_duplicate(
    scenario_file: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.synth.generator as gen

    monkeypatch.setattr(gen, "WINDOW_ROWS", 700)
    out = tmp_path / "w.parquet"
    generate(load_scenario(str(scenario_file())), out)
    trace, cols = read_all(out)
    assert trace.num_row_groups >= 7
    assert (cols["event"] == EVENT_CODE["access"]).sum() == 5000
    assert np.all(np.diff(cols["t_ns"]) >= 0)


# --- property tests -----------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A random scenario as TOML text, plus what it declares."""
    lines = [
        "[scenario]",
        'name = "prop"',
        f"duration_s = {draw(st.sampled_from([0.5, 1.0, 2.0]))}",
    ]
    accesses = draw(st.integers(0, 4000))
    lines.append(f"accesses = {accesses}")
    n_vms = draw(st.integers(1, 3))
    declared: dict[str, Any] = {"accesses": accesses, "vms": []}
    for i in range(n_vms):
        vcpus = draw(st.integers(1, 3))
        n_slots = draw(st.integers(1, 3))
        slots, gpa = [], 0
        for _ in range(n_slots):
            gpa += draw(st.sampled_from([0, 2 * MiB, 1 << 30]))
            size = draw(st.sampled_from([2 * MiB, 16 * MiB, 64 * MiB]))
            slots.append(
                {
                    "gpa_start": gpa,
                    "size": size,
                    "backing": draw(st.sampled_from(["4k", "2m", "1g"])),
                    "dirty_log": draw(st.booleans()),
                }
            )
            gpa += size
        mmio = draw(st.sampled_from([0.0, 0.0, 0.05]))
        kind = draw(st.sampled_from(["uniform", "zipf", "sequential", "drift"]))
        lines += [
            "[[vm]]",
            f'name = "vm{i}"',
            f"vcpus = {vcpus}",
            f'mmu_mode = "{draw(st.sampled_from(["tdp_mmu", "shadow_direct"]))}"',
            f"memslots = {_toml_value(slots)}",
            "[[vm.workload]]",
            f'kind = "{kind}"',
            f"rate = {draw(st.sampled_from([0, 100, 1000]))}",
            f"mmio_fraction = {mmio}",
            f"mix = {_toml_value({'read': 1, 'write': draw(st.integers(0, 2)), 'exec': 1})}",
        ]
        if kind == "zipf":
            lines.append(f"hot_pages = {draw(st.integers(1, 512))}")
        if kind == "drift":
            lines += ['working_set = "1MiB"', 'drift = "4MiB"']
        declared["vms"].append({"vcpus": vcpus, "slots": slots, "mmio": mmio})
    pressure = draw(
        st.lists(
            st.sampled_from(
                [
                    "kswapd",
                    "direct",
                    "drop_caches",
                    "memcg",
                    "proactive",
                    "shrink",
                    "unmap",
                    "zap_all",
                ]
            ),
            max_size=4,
        )
    )
    for kind in pressure:
        lines += ["[[pressure]]", f'kind = "{kind}"']
        if kind in ("kswapd", "memcg", "shrink", "unmap"):
            lines += ["start_s = 0.1", "end_s = 0.4", "interval_ms = 30"]
        else:
            lines.append("at_s = [0.25, 0.3]")
    return "\n".join(lines) + "\n", declared


@given(scenarios(), st.integers(0, 2**32 - 1))
def test_generated_traces_keep_the_invariants(
    tmp_path_factory: pytest.TempPathFactory,
    drawn: tuple[str, dict[str, Any]],
    seed: int,
) -> None:
    text, declared = drawn
    tmp = tmp_path_factory.mktemp("prop")
    path = tmp / "s.toml"
    path.write_text(text)
    sc = load_scenario(str(path), seed=seed)
    expected_total = declared["accesses"]
    rates = [p.rate for v in sc.vms for w in v.workloads for p in w.phases]
    if expected_total and not any(rates):
        return  # the parser's job: see test_zero_rates_with_a_total
    out = tmp / "t.parquet"
    generate(sc, out)
    trace, cols = read_all(out)  # validation: sorted t_ns, declared VMs and vCPUs
    duration_ns = int(sc.duration_s * 1e9)
    assert cols["t_ns"].size == 0 or (cols["t_ns"].min() >= 0 and cols["t_ns"].max() < duration_ns)
    acc = cols["event"] == EVENT_CODE["access"]
    assert acc.sum() == expected_total
    mmio_total = 0
    for vm_id, vm in enumerate(declared["vms"]):
        mine = acc & (cols["vm"] == vm_id)
        gpa = cols["gpa"][mine]
        inside = np.zeros(len(gpa), dtype=bool)
        for s in vm["slots"]:
            inside |= (gpa >= s["gpa_start"]) & (gpa < s["gpa_start"] + s["size"])
        if vm["mmio"] == 0:
            assert inside.all()
        mmio_total += int((~inside).sum())
        assert np.all(cols["vcpu"][mine] < vm["vcpus"])
    batches = list(iter_batches(trace))
    assert sum(count_mmio(trace.meta, b) for b in batches) == mmio_total
    reclaim = cols["event"] == EVENT_CODE["reclaim"]
    assert np.all((cols["priority"][reclaim] >= 0) & (cols["priority"][reclaim] <= 12))
    dc = reclaim & (cols["source"] == SOURCE_CODE["drop_caches"])
    assert np.all(cols["priority"][dc] == 0)
    unmap = cols["event"] == EVENT_CODE["unmap"]
    for i in np.flatnonzero(unmap):
        slots = declared["vms"][cols["vm"][i]]["slots"]
        lo, hi = int(cols["gpa"][i]), int(cols["gpa"][i] + cols["len"][i])
        assert any(s["gpa_start"] <= lo and hi <= s["gpa_start"] + s["size"] for s in slots)


def test_zero_rates_with_a_total(scenario_file: Make) -> None:
    from replay.errors import ScenarioError

    text = TINY_SCENARIO.replace("rate = 1000", "rate = 0")
    with pytest.raises(ScenarioError, match="every vCPU has rate 0"):
        generate(load_scenario(str(scenario_file(text))), Path("unused.parquet"))
