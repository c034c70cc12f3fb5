"""Tiny traces for rule tests, replayed by both engines, which must agree."""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.mmu.config import KEEPS_PAGE_TABLES, CostModel, MmuConfig, Policy
from replay.mmu.engine import VectorEngine
from replay.mmu.reference import ReferenceEngine
from replay.mmu.results import EngineResult
from replay.trace.reader import EventBatch
from replay.trace.schema import EVENT_CODE, OP_CODE, SOURCE_CODE, Memslot, TraceMeta, VmSpec

GiB = 1 << 30
MiB = 1 << 20
Row = dict[str, Any]


def vm(
    vm_id: int = 0,
    vcpus: int = 1,
    mode: str = "shadow_direct",
    root: int = 4,
    slots: tuple[Memslot, ...] = (Memslot(0, GiB),),
) -> VmSpec:
    return VmSpec(vm_id, f"vm{vm_id}", vcpus, mode, root, slots)


def meta(*vms: VmSpec) -> TraceMeta:
    return TraceMeta(vms=vms or (vm(),), coverage="all-accesses", provenance={})


def A(t: int, gfn: int, vm: int = 0, vcpu: int = 0) -> Row:
    return {"t_ns": t, "event": "access", "vm": vm, "vcpu": vcpu, "gpa": gfn << 12, "op": "read"}


def R(t: int, source: str = "kswapd", priority: int = 12) -> Row:
    return {"t_ns": t, "event": "reclaim", "source": source, "priority": priority}


def S(t: int, n: int) -> Row:
    return {"t_ns": t, "event": "shrink", "nr_to_scan": n}


def U(t: int, gpa: int, length: int, vm: int = 0) -> Row:
    return {"t_ns": t, "event": "unmap", "vm": vm, "gpa": gpa, "len": length}


def Z(t: int, vm: int = 0) -> Row:
    return {"t_ns": t, "event": "zap_all", "vm": vm}


def D(t: int, gfn: int, pages: int, nr: int = 20, vm: int = 0) -> Row:
    """A region row: ``nr`` of 20 checks (5 ms in a 100 ms window) found the pages accessed."""
    return {
        "t_ns": t,
        "event": "region",
        "vm": vm,
        "gpa": gfn << 12,
        "len": pages << 12,
        "nr_accesses": nr,
        "window_ns": 100_000_000,
        "sample_ns": 5_000_000,
    }


def batch(rows: list[Row], start_row: int = 0) -> EventBatch:
    def col(
        name: str, dtype: Any, codes: dict[str, int] | None = None, null: int = 0
    ) -> np.ndarray:
        out = []
        for r in rows:
            v = r.get(name)
            out.append(null if v is None else (codes[v] if codes else v))
        return np.array(out, dtype=dtype)

    return EventBatch(
        start_row=start_row,
        t_ns=col("t_ns", np.int64),
        event=col("event", np.uint8, EVENT_CODE),
        vm=col("vm", np.uint16),
        vcpu=col("vcpu", np.uint16),
        gpa=col("gpa", np.uint64),
        len=col("len", np.uint64),
        op=col("op", np.int8, OP_CODE, -1),
        source=col("source", np.int8, SOURCE_CODE, -1),
        priority=col("priority", np.int8),
        nid=col("nid", np.int16),
        nr_to_scan=col("nr_to_scan", np.uint32),
        nr_accesses=col("nr_accesses", np.uint32),
        window_ns=col("window_ns", np.uint64),
        sample_ns=col("sample_ns", np.uint64),
        age=col("age", np.uint32),
    )


def both(
    rows: list[Row],
    tmeta: TraceMeta | None = None,
    policy: Policy = "zap",
    cfg: MmuConfig | None = None,
    costs: CostModel | None = None,
    split: int | None = None,
) -> EngineResult:
    """Replay with both engines (optionally feeding two batches); assert they agree."""
    tmeta = tmeta or meta()
    cfg = cfg or MmuConfig()
    costs = costs or CostModel()
    parts = [(0, rows)] if split is None else [(0, rows[:split]), (split, rows[split:])]
    results = []
    for cls in (ReferenceEngine, VectorEngine):
        engine = cls(tmeta, policy, cfg, costs)
        for at, part in parts:
            engine.feed(batch(part, start_row=at))
        results.append(engine.finish())
    ref, vec = results
    assert_agree(ref, vec)
    if policy in KEEPS_PAGE_TABLES:
        # The same rows from a walk shared with the other policy that keeps page tables, as
        # its companion and as the walk's own policy (ENGINE.md, "Shared walks").
        (other,) = KEEPS_PAGE_TABLES - {policy}
        walk = VectorEngine(tmeta, other, cfg, costs, companions=[(policy, None)])
        walk_own = VectorEngine(tmeta, policy, cfg, costs, companions=[(other, None)])
        for engine in (walk, walk_own):
            for at, part in parts:
                engine.feed(batch(part, start_row=at))
        assert_agree(ref, walk.companion(1).finish())
        assert_agree(ref, walk_own.finish())
    return ref


def assert_agree(ref: EngineResult, vec: EngineResult) -> None:
    """The two results have the same fault rows, scan rows, deferred work and logs."""
    for k in ref.faults:
        assert np.array_equal(ref.faults[k], vec.faults[k]), (k, ref.faults[k], vec.faults[k])
    assert ref.scans == vec.scans
    assert ref.nr_deferred == vec.nr_deferred
    assert sorted(ref.sp_removals) == sorted(vec.sp_removals)
    assert sorted(ref.cache_frees) == sorted(vec.cache_frees)


def fault_rows(result: EngineResult) -> list[dict[str, int]]:
    f = result.faults
    return [{k: int(v[i]) for k, v in f.items()} for i in range(len(f["row"]))]
