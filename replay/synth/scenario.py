"""Scenario files: the TOML that describes VMs, their workloads and the host's pressure.

A scenario is read strictly: an unknown key, a value of the wrong type or out of range stops the
read with the file, the table and the fix. The format is documented in
``traces/scenarios/README.md``; this module is its single implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from replay._toml import read_memslot, read_toml
from replay.errors import ScenarioError, TraceSchemaError
from replay.synth.variables import apply_variables
from replay.trace.schema import (
    MMU_MODES,
    PAGE_SIZE,
    PRIORITY_MAX,
    ROOT_LEVELS,
    check_vm,
)
from replay.trace.schema import Memslot as Memslot

if TYPE_CHECKING:
    from collections.abc import Mapping

    from replay._toml import TomlTable


def _scenario_dir() -> Path:
    package = Path(__file__).resolve().parents[1]
    bundled = package / "_scenarios"  # in a wheel (see pyproject's force-include)
    return bundled if bundled.is_dir() else package.parent / "traces" / "scenarios"


SCENARIO_DIR = _scenario_dir()
"""Where ``replay synth NAME`` looks for ``NAME.toml``."""

WORKLOAD_KINDS = ("uniform", "zipf", "sequential", "drift")
PRESSURE_KINDS = (
    "kswapd",
    "direct",
    "drop_caches",
    "proactive",
    "memcg",
    "shrink",
    "unmap",
    "zap_all",
)


@dataclass(frozen=True)
class Phase:
    """One stretch of a vCPU's workload, from ``at_s`` until the next phase or the end."""

    at_s: float
    kind: str
    rate: float
    """Accesses per second of one vCPU."""
    mix: tuple[float, float, float]
    """Probabilities of read, write, exec."""
    mmio_fraction: float
    footprint: int | None
    """Bytes of the VM's RAM (memslots in order, concatenated) the phase touches; None = all."""
    offset: int
    hot_pages: int
    exponent: float
    scatter: bool
    stride_pages: int
    working_set: int
    drift: int
    """Bytes per second the drifting working set moves."""


@dataclass(frozen=True)
class Workload:
    """What some vCPUs of a VM do."""

    vcpus: tuple[int, ...] | None
    """vCPU ids this workload drives; None = every vCPU not driven by an earlier workload."""
    phases: tuple[Phase, ...]
    partition: bool = False
    """Each vCPU gets its own equal slice of the footprint, in id order (memstress's default)."""


@dataclass(frozen=True)
class VmPlan:
    """One VM of the scenario (already expanded from ``count``)."""

    name: str
    vcpus: int
    mmu_mode: str
    root_level: int
    memslots: tuple[Memslot, ...]
    workloads: tuple[Workload, ...]
    mmio_gpa: int
    group: str
    """The ``name`` of the ``[[vm]]`` table this VM was expanded from."""


@dataclass(frozen=True)
class PressurePlan:
    """One ``[[pressure]]`` entry."""

    kind: str
    times_s: tuple[float, ...]
    min_priority: int
    passes_per_priority: int
    pass_interval_us: float
    repeats: int
    nodes: int
    nr_to_scan: int
    vm: str
    len: int
    footprint: int | None
    offset: int


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file, overrides applied."""

    name: str
    description: str
    seed: int
    duration_s: float
    accesses: int | None
    """Total accesses wanted; when set, every vCPU's rate is scaled to meet it exactly."""
    vms: tuple[VmPlan, ...]
    pressure: tuple[PressurePlan, ...]
    path: Path


def resolve_scenario(name_or_path: str) -> Path:
    """Return the file of a scenario given by name (``quick``) or by path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists() or "/" in name_or_path:
        if candidate.is_dir():
            raise ScenarioError(f"scenario {candidate} is a folder; give the path of a .toml file")
        if not candidate.is_file():
            raise ScenarioError(f"scenario {candidate} does not exist; check the path")
        return candidate
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(list_scenarios()) or "none found"
    raise ScenarioError(
        f"scenario {name_or_path!r} is neither a file nor a shipped scenario "
        f"(shipped: {names}); give a name or a path to a .toml file"
    )


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``traces/scenarios/``."""
    if not SCENARIO_DIR.is_dir():
        return []
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(
    name_or_path: str,
    *,
    seed: int | None = None,
    accesses: int | None = None,
    duration_s: float | None = None,
    variables: Mapping[str, str] | None = None,
) -> Scenario:
    """Read a scenario and apply command-line overrides.

    Parameters
    ----------
    name_or_path : str
        A shipped scenario's name (``replay synth --list``) or the path of a TOML file
        (``traces/scenarios/README.md`` describes the format).
    seed, accesses, duration_s : optional
        Replace the scenario's own seed, total number of accesses, or length in seconds.
    variables : optional
        Values, as text, for variables of the scenario's ``[variables]`` table
        (``replay synth --set vcpus=4``).

    Returns
    -------
    Scenario
        The checked scenario, ready for :func:`generate`.

    Raises
    ------
    ScenarioError
        The file is missing or not valid TOML, or a key or value is wrong; the message names
        the table and the key.

    Examples
    --------
    >>> from replay import load_scenario
    >>> sc = load_scenario("quick", seed=3, accesses=1_000)
    >>> sc.name, sc.seed, sc.accesses, [vm.name for vm in sc.vms]
    ('quick', 3, 1000, ['tdp', 'legacy'])
    >>> load_scenario("no-such-scenario")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    replay.errors.ScenarioError: scenario 'no-such-scenario' is neither a file nor a shipped ...
    """
    path = resolve_scenario(name_or_path)
    root = apply_variables(read_toml(path, "scenario", ScenarioError), variables or {})
    return _scenario(root, seed=seed, accesses=accesses, duration_s=duration_s)


def _scenario(
    root: TomlTable, *, seed: int | None, accesses: int | None, duration_s: float | None
) -> Scenario:
    """A whole scenario document, with the command line's overrides."""
    root.check_keys({"scenario", "vm", "pressure"}, {"scenario", "vm"})
    head = root.table("scenario")
    head.check_keys(
        {"name", "description", "seed", "duration_s", "accesses"}, {"name", "duration_s"}
    )
    name = head.text("name", nonempty=True)
    description = head.text("description", "")
    the_seed = seed if seed is not None else head.integer("seed", 0)
    if the_seed < 0:
        raise root.file.fail("command line", f"--seed {the_seed} must be >= 0")
    dur = duration_s if duration_s is not None else head.number("duration_s", strict_lo=True)
    if dur <= 0:
        raise root.file.fail("command line", f"--duration {dur:g} must be > 0")
    total = accesses
    if total is None and "accesses" in head:
        total = head.integer("accesses")
    if total is not None and total < 0:
        raise root.file.fail("command line", f"--accesses {total} must be >= 0")
    vms = _vms(root)
    groups = {v.group for v in vms} | {v.name for v in vms}
    pressure = tuple(_pressure(t, groups) for t in root.tables("pressure", [], nonempty=False))
    return Scenario(
        name=name,
        description=description,
        seed=the_seed,
        duration_s=dur,
        accesses=total,
        vms=tuple(vms),
        pressure=pressure,
        path=root.file.path,
    )


def _vms(root: TomlTable) -> list[VmPlan]:
    """Every VM of the ``[[vm]]`` tables, expanded from their ``count``."""
    vms: list[VmPlan] = []
    for table in root.tables("vm"):
        vms.extend(_vm(table))
    names = [v.name for v in vms]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise root.file.fail("[[vm]]", f"VM name {dup!r} is used twice; give each VM its own name")
    if len(vms) > 0x10000:
        raise root.file.fail("[[vm]]", f"{len(vms)} VMs is more than the 65536 a trace can hold")
    return vms


def _vm(table: TomlTable) -> list[VmPlan]:
    """One ``[[vm]]`` table: ``count`` VMs of the same shape."""
    table.check_keys(
        {"name", "count", "vcpus", "mmu_mode", "root_level", "memslots", "workload", "mmio_gpa"},
        {"name", "vcpus", "memslots", "workload"},
    )
    name = table.text("name", nonempty=True)
    table = table.at(f"{table.where} ({name})")
    count = table.integer("count", 1, lo=1, hi=0x10000)
    vcpus = table.integer("vcpus", lo=1, hi=0xFFFF)
    mmu_mode = table.choice("mmu_mode", MMU_MODES, "tdp_mmu")
    root_level = table.integer("root_level", 4, lo=min(ROOT_LEVELS), hi=max(ROOT_LEVELS))
    slots = tuple(read_memslot(s) for s in table.tables("memslots"))
    ram_end = max(s.gpa_end for s in slots)
    mmio_gpa = table.size("mmio_gpa", ram_end, positive=False)
    if any(s.gpa_start <= mmio_gpa < s.gpa_end for s in slots):
        raise table.fail(f"mmio_gpa {mmio_gpa:#x} lies inside a memslot; pick a hole")
    ram = sum(s.size for s in slots)
    workloads = tuple(_workload(w, vcpus, ram) for w in _workload_tables(table))
    driven: set[int] = set()
    for w in workloads:
        driven |= set(w.vcpus) if w.vcpus is not None else set(range(vcpus))
    if driven != set(range(vcpus)):
        idle = sorted(set(range(vcpus)) - driven)
        raise table.fail(f"vCPUs {idle} have no workload; add one with vcpus = {idle}")
    plans = []
    for c in range(count):
        vm_name = name if count == 1 else f"{name}-{c:0{len(str(count - 1))}d}"
        plan = VmPlan(vm_name, vcpus, mmu_mode, root_level, slots, workloads, mmio_gpa, name)
        _check_vm(plan, table)
        plans.append(plan)
    return plans


def _workload_tables(table: TomlTable) -> list[TomlTable]:
    """A VM's ``workload``: one table, or an array of them."""
    work = table.raw("workload")
    if isinstance(work, dict):
        work = [work]
    if not isinstance(work, list) or not work:
        raise table.fail("workload must be a table or an array of tables")
    return [table.child(w, f"{table.where} workload[{k}]") for k, w in enumerate(work)]


def _check_vm(plan: VmPlan, table: TomlTable) -> None:
    """A VM as a trace's VM table would check it."""
    from replay.trace.schema import VmSpec, check_vm_table

    spec = VmSpec(0, plan.name, plan.vcpus, plan.mmu_mode, plan.root_level, plan.memslots)
    try:
        check_vm(spec, table.where)
        check_vm_table((spec,), table.where)
    except TraceSchemaError as exc:
        raise table.file.fail("", str(exc)) from None


_PHASE_KEYS = frozenset(
    {
        "kind",
        "rate",
        "mix",
        "mmio_fraction",
        "footprint",
        "offset",
        "hot_pages",
        "exponent",
        "scatter",
        "stride_pages",
        "working_set",
        "drift",
    }
)
"""Keys of a phase; a workload gives them too, as defaults of its phases."""


def _workload(table: TomlTable, vcpus: int, ram: int) -> Workload:
    """One workload: the vCPUs it drives and its phases."""
    table.check_keys(_PHASE_KEYS | {"vcpus", "phases", "partition"})
    partition = table.boolean("partition", False)
    ids: tuple[int, ...] | None
    if table.raw("vcpus", "all") == "all":
        ids = None
    elif isinstance(table.raw("vcpus"), list) and table.raw("vcpus"):
        ids = table.integers("vcpus", lo=0, hi=vcpus - 1)
    else:
        raise table.fail('vcpus must be "all" or a list of vCPU ids')
    defaults = {k: v for k, v in table.data.items() if k in _PHASE_KEYS}
    if "phases" not in table:
        return Workload(
            ids, (_phase(table.child(defaults, table.where), ram, first=True),), partition
        )
    phases_doc = table.raw("phases")
    if not isinstance(phases_doc, list) or not phases_doc:
        raise table.fail("phases must be a non-empty array of tables")
    phases = tuple(
        _phase(
            table.child(
                {**defaults, **p} if isinstance(p, dict) else p, f"{table.where} phases[{j}]"
            ),
            ram,
            first=j == 0,
        )
        for j, p in enumerate(phases_doc)
    )
    starts = [p.at_s for p in phases]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise table.fail("phases must have increasing at_s")
    return Workload(ids, phases, partition)


def _phase(table: TomlTable, ram: int, *, first: bool) -> Phase:
    """One phase of a workload (its keys and the workload's defaults)."""
    table.check_keys(_PHASE_KEYS | {"at_s"}, {"kind", "rate"})
    kind = table.choice("kind", WORKLOAD_KINDS)
    at_s = table.number("at_s", 0.0)
    if first and at_s != 0.0:
        raise table.fail("the first phase starts at at_s = 0")
    mix = _mix(table.table("mix", {"read": 0.7, "write": 0.3, "exec": 0.0}))
    fp = table.size("footprint") if "footprint" in table else None
    offset = table.size("offset", 0, positive=False)
    span = fp if fp is not None else ram - offset
    if offset + span > ram or span < PAGE_SIZE:
        raise table.fail(
            f"offset + footprint ({offset} + {span} bytes) must fit in the VM's RAM ({ram} bytes)"
        )
    pages = span // PAGE_SIZE
    hot = table.integer("hot_pages", min(pages, 1 << 16), lo=1)
    if hot > pages:
        raise table.fail(f"hot_pages {hot} is more than the footprint's {pages} pages")
    if hot > 1 << 24:
        raise table.fail(f'hot_pages {hot} is more than 16Mi; use kind = "uniform"')
    ws = table.size("working_set", min(span, 256 << 20))
    if ws > span:
        raise table.fail("working_set must fit in the footprint")
    scatter = table.boolean("scatter", True)
    return Phase(
        at_s=at_s,
        kind=kind,
        rate=table.number("rate"),
        mix=mix,
        mmio_fraction=table.number("mmio_fraction", 0.0, hi=1.0),
        footprint=fp,
        offset=offset,
        hot_pages=hot,
        exponent=table.number("exponent", 1.0, strict_lo=True),
        scatter=scatter,
        stride_pages=table.integer("stride_pages", 1, lo=1),
        working_set=ws,
        drift=table.size("drift", 0, positive=False),
    )


def _mix(table: TomlTable) -> tuple[float, float, float]:
    """Probabilities of read, write and exec, from weights."""
    table.check_keys({"read", "write", "exec"})
    weights = tuple(table.number(k, 0.0) for k in ("read", "write", "exec"))
    if sum(weights) <= 0:
        raise table.fail("mix must give some access type a positive weight")
    return (weights[0] / sum(weights), weights[1] / sum(weights), weights[2] / sum(weights))


_PRESSURE_KEYS: dict[str, set[str]] = {
    "kswapd": {"min_priority", "passes_per_priority", "nodes"},
    "memcg": {"min_priority", "passes_per_priority", "nodes"},
    "direct": {"min_priority", "pass_interval_us", "nodes"},
    "proactive": {"min_priority", "pass_interval_us", "nodes"},
    "drop_caches": {"repeats", "pass_interval_us", "nodes"},
    "shrink": {"nr_to_scan"},
    "unmap": {"vm", "len", "footprint", "offset"},
    "zap_all": {"vm"},
}
"""Keys of each kind of ``[[pressure]]`` entry, besides ``kind`` and its timing."""
_TIMING = frozenset({"at_s", "start_s", "end_s", "interval_ms"})


def _pressure(table: TomlTable, vm_names: set[str]) -> PressurePlan:
    """One ``[[pressure]]`` entry (its kind decides its other keys)."""
    kind = table.choice("kind", PRESSURE_KINDS)
    table = table.at(f"{table.where} ({kind})")
    table.check_keys({"kind"} | _TIMING | _PRESSURE_KEYS[kind])
    times = _pressure_times(table)
    default_min = {"kswapd": 1, "memcg": 1, "direct": 4, "proactive": 6}.get(kind, 0)
    vm = table.raw("vm", "all")
    if vm != "all" and vm not in vm_names:
        raise table.fail(f"vm {vm!r} names no VM (known: all, {', '.join(sorted(vm_names))})")
    return PressurePlan(
        kind=kind,
        times_s=times,
        min_priority=table.integer("min_priority", default_min, hi=PRIORITY_MAX),
        passes_per_priority=table.integer("passes_per_priority", 1, lo=1),
        pass_interval_us=table.number("pass_interval_us", 100.0),
        repeats=table.integer("repeats", 1, lo=1, hi=1000),
        nodes=table.integer("nodes", 1, lo=1, hi=1024),
        nr_to_scan=table.integer("nr_to_scan", 128, hi=0xFFFFFFFF),
        vm=vm,
        len=table.size("len", 2 << 20),
        footprint=table.size("footprint") if "footprint" in table else None,
        offset=table.size("offset", 0, positive=False),
    )


def _pressure_times(table: TomlTable) -> tuple[float, ...]:
    """When a pressure entry happens: ``at_s = [...]``, or from ``start_s`` to ``end_s``."""
    if "at_s" in table:
        if _TIMING & set(table.data) - {"at_s"}:
            raise table.fail("give either at_s or start_s/end_s/interval_ms, not both")
        return tuple(sorted(table.numbers("at_s", nonempty=True)))
    if not {"start_s", "end_s", "interval_ms"} <= set(table.data):
        raise table.fail("give at_s = [...] or start_s, end_s and interval_ms")
    start = table.number("start_s")
    end = table.number("end_s")
    step = table.number("interval_ms", strict_lo=True) / 1e3
    if end < start:
        raise table.fail("end_s must not be before start_s")
    count = int((end - start) / step + 1e-9)
    if count > 10_000_000:
        raise table.fail(f"{count} occurrences is too many; raise interval_ms")
    return tuple(start + i * step for i in range(count))
