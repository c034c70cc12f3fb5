"""The vectorized engine against the reference, on generated traces (hypothesis) and on fixed
seeds of every shipped scenario: identical fault and scan rows, every policy, both MMU modes."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.mmu import tables
from replay.mmu.config import POLICIES, Cause, CostModel, MmuConfig
from replay.mmu.engine import VectorEngine
from replay.mmu.hits import HitTest
from replay.mmu.reference import ReferenceEngine
from replay.synth import generate, list_scenarios, load_scenario
from replay.trace import iter_batches, open_trace
from replay.trace.schema import Memslot, TraceMeta, VmSpec
from tests.mmu.helpers import A, D, R, S, U, Z, assert_agree, both, fault_rows

PAGE = 4096


@st.composite
def memslots(draw: st.DrawFn) -> tuple[Memslot, ...]:
    slots = []
    gfn = draw(st.integers(0, 600))
    for _ in range(draw(st.integers(1, 3))):
        backing = draw(st.sampled_from(["4k", "2m", "2m", "1g"]))
        if backing == "1g" and draw(st.booleans()):
            gfn = -(-gfn // (1 << 18)) * (1 << 18)  # align, so a whole 1 GiB block can fit
            pages = (1 << 18) + draw(st.integers(0, 1500))
        else:
            pages = draw(st.integers(1, 3000))
        slots.append(Memslot(gfn * PAGE, pages * PAGE, backing, draw(st.booleans())))
        gfn += pages + draw(st.sampled_from([0, 0, 1, 7, 600]))
    return tuple(slots)


@st.composite
def traces(draw: st.DrawFn) -> tuple[TraceMeta, list[dict[str, Any]], MmuConfig, CostModel]:
    n_vms = draw(st.integers(1, 3))
    vms = tuple(
        VmSpec(
            i * 3,
            f"vm{i}",
            draw(st.integers(1, 3)),
            draw(st.sampled_from(["tdp_mmu", "shadow_direct"])),
            draw(st.sampled_from([4, 4, 5])),
            draw(memslots()),
        )
        for i in range(n_vms)
    )
    meta = TraceMeta(vms=vms, coverage="all-accesses", provenance={})
    rows: list[dict[str, Any]] = []
    t = 0
    for _ in range(draw(st.integers(1, 250))):
        t += draw(st.sampled_from([0, 1, 500, 5_000, 50_000, 2_000_000]))
        v = draw(st.sampled_from(vms))
        kinds = ["access"] * 12 + ["reclaim", "shrink", "unmap", "zap_all", "region", "region"]
        kind = draw(st.sampled_from(kinds))
        if kind == "access":
            slot = draw(st.sampled_from(v.memslots))
            hot = draw(st.integers(0, 40))
            if draw(st.integers(0, 30)) == 0:
                gfn = (slot.gpa_end >> 12) + draw(st.integers(0, 3))  # MMIO, or the next slot
            elif draw(st.booleans()):
                gfn = slot.gfn_start + hot % slot.npages  # a small hot set
            else:
                gfn = slot.gfn_start + draw(st.integers(0, slot.npages - 1))
            rows.append(A(t, gfn, v.id, draw(st.integers(0, v.vcpus - 1))))
        elif kind == "reclaim":
            rows.append(
                R(
                    t,
                    draw(st.sampled_from(["kswapd", "direct", "drop_caches", "memcg"])),
                    draw(st.integers(0, 12)),
                )
            )
        elif kind == "shrink":
            rows.append(S(t, draw(st.sampled_from([0, 1, 3, 20, 128]))))
        elif kind == "unmap":
            slot = draw(st.sampled_from(v.memslots))
            start = slot.gpa_start + draw(st.integers(0, slot.size - 1))
            rows.append(U(t, start, draw(st.sampled_from([1, 4096, 9000, 2 << 20])), v.id))
        elif kind == "region":
            # A DAMON region inside one slot (rules 32 to 35), accessed at 0 to 20 of 20 checks.
            slot = draw(st.sampled_from(v.memslots))
            first = draw(st.integers(0, slot.npages - 1))
            pages = min(slot.npages - first, draw(st.sampled_from([1, 8, 512, 3000, 1 << 19])))
            rows.append(D(t, slot.gfn_start + first, pages, draw(st.integers(0, 20)), v.id))
        else:
            rows.append(Z(t, v.id))
    cfg = MmuConfig(
        n_max_min=draw(st.sampled_from([6, 9, 20, 64])),
        refill_pages=draw(st.sampled_from([5, 12, 25])),
        pte_prefetch=draw(st.sampled_from([8, 8, 8, 4])),  # 8 is the kernel's; any power of 2
    )
    costs = CostModel(pressure_window_ns=draw(st.sampled_from([0, 10_000, 10**9])))
    return meta, rows, cfg, costs


@settings(max_examples=60)
@given(traces(), st.sampled_from(POLICIES), st.integers(0, 400))
def test_engines_agree_on_generated_traces(
    drawn: tuple[TraceMeta, list[dict[str, Any]], MmuConfig, CostModel], policy: str, split: int
) -> None:
    meta, rows, cfg, costs = drawn
    both(rows, meta, policy, cfg, costs)  # type: ignore[arg-type]
    if 0 < split < len(rows):
        both(rows, meta, policy, cfg, costs, split=split)  # type: ignore[arg-type]


def _run(engine: Any, path: Path, policy: str, finish: Any = None) -> Any:
    """Replay ``path`` with ``engine`` (a class, or a partial of one); ``finish`` takes the
    engine and gives the result (default: its ``finish()``)."""
    trace = open_trace(path)
    e = engine(trace.meta, policy, MmuConfig(), CostModel())
    for b in iter_batches(trace, batch_rows=7_000):
        e.feed(b)
    return e.finish() if finish is None else finish(e)


@pytest.mark.parametrize("name", list_scenarios())
def test_engines_agree_on_every_shipped_scenario(name: str, tmp_path: Path) -> None:
    """Every policy alone, and none and cache in one shared walk (ENGINE.md, "Shared walks")."""
    path = tmp_path / f"{name}.parquet"
    generate(load_scenario(name, seed=101, accesses=12_000), path)
    refs = {}
    for policy in POLICIES:
        ref, vec = _run(ReferenceEngine, path, policy), _run(VectorEngine, path, policy)
        assert_agree(ref, vec)
        assert len(ref.faults["row"]) > 0
        refs[policy] = ref
    walk = partial(VectorEngine, companions=[("cache", None)])
    cache, none = _run(walk, path, "none", lambda e: (e.companion(1).finish(), e.finish()))
    assert_agree(refs["cache"], cache)
    assert_agree(refs["none"], none)


@settings(max_examples=25)
@given(traces(), st.sampled_from(POLICIES))
def test_engines_agree_without_the_block_tables(
    drawn: tuple[TraceMeta, list[dict[str, Any]], MmuConfig, CostModel], policy: str
) -> None:
    """Guests too large for the 2 MiB-block tables: every access is placed by binary search."""
    meta, rows, cfg, costs = drawn
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables, "BLOCK_TABLE_MAX", 0)
        engine = VectorEngine(meta, "zap", cfg, costs)
        assert engine.tables.blocks is None
        assert engine.state.hits.live_key is None
        both(rows, meta, policy, cfg, costs)  # type: ignore[arg-type]


class _Shared:
    """Traces, and replays of them with unpatched engines, made once for the whole module.

    Several parametrized tests replay the same trace with the same engine and options as their
    baseline (the reference engine's rows, or the vectorized engine's with its defaults), and
    only the variant they compare it with differs: the baseline is the same every time, so it
    is computed once. Nothing reads the shared results but to compare them.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.traces: dict[tuple[str, int, int], Path] = {}
        self.runs: dict[tuple[str, Path, str], Any] = {}

    def trace(self, name: str, seed: int, accesses: int) -> Path:
        key = (name, seed, accesses)
        if key not in self.traces:
            path = self.root / f"{name}-{seed}-{accesses}.parquet"
            generate(load_scenario(name, seed=seed, accesses=accesses), path)
            self.traces[key] = path
        return self.traces[key]

    def run(self, engine: type[ReferenceEngine | VectorEngine], path: Path, policy: str) -> Any:
        """``_run(engine, path, policy)``: call it only where no engine constant is patched."""
        key = (engine.__name__, path, policy)
        if key not in self.runs:
            self.runs[key] = _run(engine, path, policy)
        return self.runs[key]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> _Shared:
    return _Shared(tmp_path_factory.mktemp("engine"))


@pytest.mark.parametrize(("chunk", "pack_from"), [(97, 10**12), (97, 0), (1 << 16, 10**12)])
def test_hit_test_variants_agree(shared: _Shared, chunk: int, pack_from: int) -> None:
    """The hit test in steps of any size, on packed bits or on the flags, gives the same rows."""
    path = shared.trace("legacy-mmu-pressure", 7, 20_000)
    default = shared.run(VectorEngine, path, "zap")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HitTest, "CHUNK", chunk)
        mp.setattr(VectorEngine, "_PACK_FROM", pack_from)  # always packed, or never
        variant = _run(VectorEngine, path, "zap")
    for k in default.faults:
        assert np.array_equal(default.faults[k], variant.faults[k]), k
    assert len(default.faults["row"]) > 1000


@pytest.mark.parametrize("at_most", [1, 1 << 18])
def test_packed_leaves_follow_a_page_limit_zap(at_most: int) -> None:
    """Hits tested on the packed leaves (always, here), n_max 7 (rule 13). gfn 0: root, PDPT,
    PD, PT 0 (4 SPs), group 0..7 mapped. gfn 512: 3 free < 5, so the 3 non-root SPs are zapped
    (gfns 0..7 go with PT 0) and PDPT, PD, PT 1 come back. gfn 8: the same again, PT 0 comes
    back. gfn 1, under PT 0 (reachable again), lost its leaf in the first zap: it faults,
    cause recycled, and the page limit acts once more (3 zapped, 3 new). Had the packed copy
    kept gfn 1 present from before the zaps, gfn 1 would have hit."""
    cfg = MmuConfig(n_max_min=7, n_max_divisor=1 << 40)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VectorEngine, "_PACK_FROM", 10**12)
        mp.setattr(VectorEngine, "_EPOCH_MAX", at_most)
        rows = fault_rows(both([A(0, 0), A(1, 512), A(2, 8), A(3, 1)], cfg=cfg))
    assert [(r["gfn"], r["cause"], r["new_sps"], r["recycled_sps"]) for r in rows] == [
        (0, Cause.COLD, 4, 0),
        (512, Cause.COLD, 3, 3),
        (8, Cause.COLD, 3, 3),
        (1, Cause.RECYCLED, 3, 3),
    ]


@settings(max_examples=60)
@given(traces(), st.sampled_from(POLICIES), st.sampled_from([1, 2, 5]), st.booleans())
def test_epochs_in_short_steps_agree_on_generated_traces(
    drawn: tuple[TraceMeta, list[dict[str, Any]], MmuConfig, CostModel],
    policy: str,
    at_most: int,
    packed: bool,
) -> None:
    """Steps of a few accesses: page-limit zaps (small n_max_min) fall at step edges, and the
    cause read before such a zap is carried into the next step. With ``packed``, every epoch
    tests hits on the packed copy of the leaves, which the commits and those zaps keep current."""
    meta, rows, cfg, costs = drawn
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VectorEngine, "_EPOCH_MAX", at_most)
        mp.setattr(VectorEngine, "_PACK_FROM", 10**12 if packed else 0)
        both(rows, meta, policy, cfg, costs)  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", ["legacy-mmu-pressure", "many-small-vms"])
@pytest.mark.parametrize("at_most", [1, 13, 1000])
def test_epochs_in_steps_of_any_size_agree(shared: _Shared, scenario: str, at_most: int) -> None:
    """An epoch replayed a step of ``at_most`` accesses at a time (page-limit overrides carried
    across steps) gives the reference engine's rows."""
    path = shared.trace(scenario, 11, 6_000)
    for policy in POLICIES:
        ref = shared.run(ReferenceEngine, path, policy)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(VectorEngine, "_EPOCH_MAX", at_most)
            vec = _run(VectorEngine, path, policy)
        for k in ref.faults:
            assert np.array_equal(ref.faults[k], vec.faults[k]), (policy, k)
        assert ref.scans == vec.scans, policy
        assert len(ref.faults["row"]) > 100
