"""Scenario files: the TOML that describes VMs, their workloads and the host's pressure.

A scenario is read strictly: an unknown key, a value of the wrong type or out of range stops the
read with the file, the table and the fix. The format is documented in
``traces/scenarios/README.md``; this module is its single implementation.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from replay.errors import ReplayError, ScenarioError, TraceSchemaError
from replay.synth.variables import read_variables, substitute
from replay.trace.schema import (
    BACKINGS,
    MMU_MODES,
    PAGE_SIZE,
    PRIORITY_MAX,
    ROOT_LEVELS,
    check_memslot,
    check_vm,
)
from replay.trace.schema import Memslot as Memslot

if TYPE_CHECKING:
    from collections.abc import Mapping


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

    ``variables`` maps names of the scenario's ``[variables]`` to values given as text
    (``replay synth --set vcpus=4``).

    Examples
    --------
    >>> from replay.synth import load_scenario
    >>> sc = load_scenario("quick", seed=3)  # doctest: +SKIP
    >>> sc.seed  # doctest: +SKIP
    3
    """
    path = resolve_scenario(name_or_path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {path}: not valid TOML ({exc}); fix the syntax") from None
    except OSError as exc:
        raise ScenarioError(f"scenario {path} cannot be read ({exc.strerror})") from None
    parser = _ScenarioParser(path)
    values = read_variables(
        doc.get("variables"),
        variables or {},
        parser.fail,
        lambda text, where: parser.size(text, where, "value"),
    )
    doc = substitute(doc, values, parser.fail)
    return parser.scenario(doc, seed=seed, accesses=accesses, duration_s=duration_s)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


class TableReader:
    """Strict reading of TOML tables; every error names the file and the table.

    Scenario files use it, and so do the VM configuration files of ``replay convert``
    (a subclass sets :attr:`what` and :attr:`error`).
    """

    what = "scenario"
    error: type[ReplayError] = ScenarioError

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, msg: str) -> ReplayError:
        """The error to raise: file, table, message."""
        return self.error(f"{self.what} {self.path}: {where}: {msg}")

    def keys(self, table: Any, where: str, allowed: set[str], required: set[str]) -> None:
        """Refuse unknown keys (with a "did you mean") and missing required ones."""
        if not isinstance(table, dict):
            raise self.fail(where, "must be a table")
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(
                    where, f"unknown key {key!r}{hint} (known: {', '.join(sorted(allowed))})"
                )
        for key in sorted(required):
            if key not in table:
                raise self.fail(where, f"required key {key!r} is missing")

    def num(
        self,
        value: Any,
        where: str,
        key: str,
        *,
        lo: float = 0.0,
        hi: float | None = None,
        strict_lo: bool = False,
    ) -> float:
        """A number within [lo, hi] (lo excluded with ``strict_lo``)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{key} must be a number, not {value!r}")
        x = float(value)
        if x < lo or (strict_lo and x == lo) or (hi is not None and x > hi):
            bound = f"> {lo:g}" if strict_lo else f">= {lo:g}"
            rng = f"{bound}" + (f" and <= {hi:g}" if hi is not None else "")
            raise self.fail(where, f"{key} = {value!r} is out of range; it must be {rng}")
        return x

    def integer(
        self, value: Any, where: str, key: str, *, lo: int = 0, hi: int | None = None
    ) -> int:
        """A whole number within [lo, hi]."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"{key} must be a whole number, not {value!r}")
        if value < lo or (hi is not None and value > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise self.fail(where, f"{key} = {value} is out of range; it must be {rng}")
        return value

    def size(self, value: Any, where: str, key: str, *, positive: bool = True) -> int:
        """A byte count: an integer or a string such as "3GiB", "512M", "4k", "0x1000"."""
        if isinstance(value, bool):
            raise self.fail(where, f'{key} must be a size such as 4096 or "2GiB", not {value!r}')
        if isinstance(value, int):
            n = value
        elif isinstance(value, str):
            text = value.strip()
            if text.lower().startswith("0x"):
                try:
                    n = int(text, 16)
                except ValueError:
                    raise self.fail(where, f"{key} = {value!r} is not a size") from None
            else:
                m = _SIZE_RE.match(text)
                if m is None or text.startswith("-"):
                    raise self.fail(
                        where, f'{key} = {value!r} is not a size; write e.g. 4096, "2GiB", "512M"'
                    )
                n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
        else:
            raise self.fail(where, f'{key} must be a size such as 4096 or "2GiB", not {value!r}')
        if n < 0 or (positive and n == 0):
            raise self.fail(
                where, f"{key} = {value!r} must be {'positive' if positive else '>= 0'}"
            )
        return n

    def memslot(self, table: Any, where: str) -> Memslot:
        """A ``{gpa_start, size, backing, dirty_log}`` table, checked like a trace's memslot."""
        self.keys(
            table, where, {"gpa_start", "size", "backing", "dirty_log"}, {"gpa_start", "size"}
        )
        backing = table.get("backing", "4k")
        if backing not in BACKINGS:
            raise self.fail(where, f"backing {backing!r} must be one of {', '.join(BACKINGS)}")
        dirty = table.get("dirty_log", False)
        if not isinstance(dirty, bool):
            raise self.fail(where, "dirty_log must be true or false")
        slot = Memslot(
            self.size(table["gpa_start"], where, "gpa_start", positive=False),
            self.size(table["size"], where, "size"),
            backing,
            dirty,
        )
        try:
            check_memslot(slot, where)
        except TraceSchemaError as exc:
            raise self.error(f"{self.what} {self.path}: {exc}") from None
        return slot


class _ScenarioParser(TableReader):
    """Reads one scenario document."""

    def scenario(
        self,
        doc: dict[str, Any],
        *,
        seed: int | None,
        accesses: int | None,
        duration_s: float | None,
    ) -> Scenario:
        self.keys(doc, "top level", {"scenario", "vm", "pressure"}, {"scenario", "vm"})
        head = doc["scenario"]
        self.keys(
            head,
            "[scenario]",
            {"name", "description", "seed", "duration_s", "accesses"},
            {"name", "duration_s"},
        )
        name = head["name"]
        if not isinstance(name, str) or not name:
            raise self.fail("[scenario]", "name must be a non-empty string")
        description = head.get("description", "")
        if not isinstance(description, str):
            raise self.fail("[scenario]", "description must be a string")
        the_seed = (
            seed if seed is not None else self.integer(head.get("seed", 0), "[scenario]", "seed")
        )
        if the_seed < 0:
            raise self.fail("command line", f"--seed {the_seed} must be >= 0")
        dur = (
            duration_s
            if duration_s is not None
            else self.num(head["duration_s"], "[scenario]", "duration_s", strict_lo=True)
        )
        if dur <= 0:
            raise self.fail("command line", f"--duration {dur:g} must be > 0")
        total = accesses
        if total is None and "accesses" in head:
            total = self.integer(head["accesses"], "[scenario]", "accesses")
        if total is not None and total < 0:
            raise self.fail("command line", f"--accesses {total} must be >= 0")
        vm_tables = doc["vm"]
        if not isinstance(vm_tables, list) or not vm_tables:
            raise self.fail("[[vm]]", "give at least one [[vm]] table")
        vms: list[VmPlan] = []
        for i, table in enumerate(vm_tables):
            vms.extend(self.vm(table, f"[[vm]] #{i + 1}"))
        names = [v.name for v in vms]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise self.fail("[[vm]]", f"VM name {dup!r} is used twice; give each VM its own name")
        if len(vms) > 0x10000:
            raise self.fail("[[vm]]", f"{len(vms)} VMs is more than the 65536 a trace can hold")
        groups = {v.group for v in vms} | set(names)
        press = doc.get("pressure", [])
        if not isinstance(press, list):
            raise self.fail("[[pressure]]", "pressure must be an array of tables ([[pressure]])")
        pressure = tuple(
            self.pressure(t, f"[[pressure]] #{i + 1}", groups) for i, t in enumerate(press)
        )
        return Scenario(
            name=name,
            description=description,
            seed=the_seed,
            duration_s=dur,
            accesses=total,
            vms=tuple(vms),
            pressure=pressure,
            path=self.path,
        )

    def vm(self, table: Any, where: str) -> list[VmPlan]:
        self.keys(
            table,
            where,
            {
                "name",
                "count",
                "vcpus",
                "mmu_mode",
                "root_level",
                "memslots",
                "workload",
                "mmio_gpa",
            },
            {"name", "vcpus", "memslots", "workload"},
        )
        name = table["name"]
        if not isinstance(name, str) or not name:
            raise self.fail(where, "name must be a non-empty string")
        where = f"{where} ({name})"
        count = self.integer(table.get("count", 1), where, "count", lo=1, hi=0x10000)
        vcpus = self.integer(table["vcpus"], where, "vcpus", lo=1, hi=0xFFFF)
        mmu_mode = table.get("mmu_mode", "tdp_mmu")
        if mmu_mode not in MMU_MODES:
            raise self.fail(where, f"mmu_mode {mmu_mode!r} must be one of {', '.join(MMU_MODES)}")
        root_level = table.get("root_level", 4)
        if root_level not in ROOT_LEVELS:
            raise self.fail(where, f"root_level {root_level!r} must be 4 or 5")
        slots_doc = table["memslots"]
        if not isinstance(slots_doc, list) or not slots_doc:
            raise self.fail(where, "memslots must be a non-empty array of tables")
        slots = tuple(self.memslot(s, f"{where} memslots[{j}]") for j, s in enumerate(slots_doc))
        ram_end = max(s.gpa_end for s in slots)
        mmio_gpa = self.size(table.get("mmio_gpa", ram_end), where, "mmio_gpa", positive=False)
        if any(s.gpa_start <= mmio_gpa < s.gpa_end for s in slots):
            raise self.fail(where, f"mmio_gpa {mmio_gpa:#x} lies inside a memslot; pick a hole")
        work_doc = table["workload"]
        if isinstance(work_doc, dict):
            work_doc = [work_doc]
        if not isinstance(work_doc, list) or not work_doc:
            raise self.fail(where, "workload must be a table or an array of tables")
        ram = sum(s.size for s in slots)
        workloads = tuple(
            self.workload(w, f"{where} workload #{k + 1}", vcpus, ram)
            for k, w in enumerate(work_doc)
        )
        driven: set[int] = set()
        for w in workloads:
            driven |= set(w.vcpus) if w.vcpus is not None else set(range(vcpus))
        if driven != set(range(vcpus)):
            idle = sorted(set(range(vcpus)) - driven)
            raise self.fail(where, f"vCPUs {idle} have no workload; add one with vcpus = {idle}")
        plans = []
        for c in range(count):
            vm_name = name if count == 1 else f"{name}-{c:0{len(str(count - 1))}d}"
            plan = VmPlan(vm_name, vcpus, mmu_mode, root_level, slots, workloads, mmio_gpa, name)
            self.check_vm(plan, where)
            plans.append(plan)
        return plans

    def check_vm(self, plan: VmPlan, where: str) -> None:
        from replay.trace.schema import VmSpec, check_vm_table

        spec = VmSpec(0, plan.name, plan.vcpus, plan.mmu_mode, plan.root_level, plan.memslots)
        try:
            check_vm(spec, where)
            check_vm_table((spec,), where)
        except TraceSchemaError as exc:
            raise ScenarioError(f"scenario {self.path}: {exc}") from None

    _PHASE_KEYS: ClassVar[set[str]] = {
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

    def workload(self, table: Any, where: str, vcpus: int, ram: int) -> Workload:
        self.keys(table, where, self._PHASE_KEYS | {"vcpus", "phases", "partition"}, set())
        sel = table.get("vcpus", "all")
        ids: tuple[int, ...] | None
        if sel == "all":
            ids = None
        elif isinstance(sel, list) and sel:
            ids = tuple(self.integer(v, where, "vcpus", lo=0, hi=vcpus - 1) for v in sel)
        else:
            raise self.fail(where, 'vcpus must be "all" or a list of vCPU ids')
        defaults = {k: v for k, v in table.items() if k in self._PHASE_KEYS}
        phases_doc = table.get("phases")
        phases: tuple[Phase, ...]
        if phases_doc is None:
            phases = (self.phase(defaults, where, ram, first=True),)
        else:
            if not isinstance(phases_doc, list) or not phases_doc:
                raise self.fail(where, "phases must be a non-empty array of tables")
            phases = tuple(
                self.phase(
                    {**defaults, **p} if isinstance(p, dict) else p,
                    f"{where} phases[{j}]",
                    ram,
                    first=j == 0,
                )
                for j, p in enumerate(phases_doc)
            )
            starts = [p.at_s for p in phases]
            if starts != sorted(starts) or len(set(starts)) != len(starts):
                raise self.fail(where, "phases must have increasing at_s")
        partition = table.get("partition", False)
        if not isinstance(partition, bool):
            raise self.fail(where, "partition must be true or false")
        return Workload(ids, phases, partition)

    def phase(self, table: Any, where: str, ram: int, *, first: bool) -> Phase:
        self.keys(table, where, self._PHASE_KEYS | {"at_s"}, {"kind", "rate"})
        kind = table["kind"]
        if kind not in WORKLOAD_KINDS:
            raise self.fail(where, f"kind {kind!r} must be one of {', '.join(WORKLOAD_KINDS)}")
        at_s = self.num(table.get("at_s", 0.0), where, "at_s")
        if first and at_s != 0.0:
            raise self.fail(where, "the first phase starts at at_s = 0")
        mix_doc = table.get("mix", {"read": 0.7, "write": 0.3, "exec": 0.0})
        self.keys(mix_doc, f"{where} mix", {"read", "write", "exec"}, set())
        weights = tuple(
            self.num(mix_doc.get(k, 0.0), where, f"mix.{k}") for k in ("read", "write", "exec")
        )
        if sum(weights) <= 0:
            raise self.fail(where, "mix must give some access type a positive weight")
        mix = (weights[0] / sum(weights), weights[1] / sum(weights), weights[2] / sum(weights))
        footprint = table.get("footprint")
        fp = None if footprint is None else self.size(footprint, where, "footprint")
        offset = self.size(table.get("offset", 0), where, "offset", positive=False)
        span = fp if fp is not None else ram - offset
        if offset + span > ram or span < PAGE_SIZE:
            raise self.fail(
                where,
                f"offset + footprint ({offset} + {span} bytes) must fit in the VM's RAM "
                f"({ram} bytes)",
            )
        pages = span // PAGE_SIZE
        hot = self.integer(table.get("hot_pages", min(pages, 1 << 16)), where, "hot_pages", lo=1)
        if hot > pages:
            raise self.fail(where, f"hot_pages {hot} is more than the footprint's {pages} pages")
        if hot > 1 << 24:
            raise self.fail(where, f'hot_pages {hot} is more than 16Mi; use kind = "uniform"')
        ws = self.size(table.get("working_set", min(span, 256 << 20)), where, "working_set")
        if ws > span:
            raise self.fail(where, "working_set must fit in the footprint")
        scatter = table.get("scatter", True)
        if not isinstance(scatter, bool):
            raise self.fail(where, "scatter must be true or false")
        return Phase(
            at_s=at_s,
            kind=kind,
            rate=self.num(table["rate"], where, "rate"),
            mix=mix,
            mmio_fraction=self.num(table.get("mmio_fraction", 0.0), where, "mmio_fraction", hi=1.0),
            footprint=fp,
            offset=offset,
            hot_pages=hot,
            exponent=self.num(table.get("exponent", 1.0), where, "exponent", strict_lo=True),
            scatter=scatter,
            stride_pages=self.integer(table.get("stride_pages", 1), where, "stride_pages", lo=1),
            working_set=ws,
            drift=self.size(table.get("drift", 0), where, "drift", positive=False),
        )

    _PRESSURE_KEYS: ClassVar[dict[str, set[str]]] = {
        "kswapd": {"min_priority", "passes_per_priority", "nodes"},
        "memcg": {"min_priority", "passes_per_priority", "nodes"},
        "direct": {"min_priority", "pass_interval_us", "nodes"},
        "proactive": {"min_priority", "pass_interval_us", "nodes"},
        "drop_caches": {"repeats", "pass_interval_us", "nodes"},
        "shrink": {"nr_to_scan"},
        "unmap": {"vm", "len", "footprint", "offset"},
        "zap_all": {"vm"},
    }

    def pressure(self, table: Any, where: str, vm_names: set[str]) -> PressurePlan:
        if not isinstance(table, dict) or table.get("kind") not in PRESSURE_KINDS:
            kind = table.get("kind") if isinstance(table, dict) else None
            raise self.fail(where, f"kind {kind!r} must be one of {', '.join(PRESSURE_KINDS)}")
        kind = table["kind"]
        where = f"{where} ({kind})"
        timing = {"at_s", "start_s", "end_s", "interval_ms"}
        self.keys(table, where, {"kind"} | timing | self._PRESSURE_KEYS[kind], set())
        if "at_s" in table:
            if timing & set(table) - {"at_s"}:
                raise self.fail(where, "give either at_s or start_s/end_s/interval_ms, not both")
            at = table["at_s"]
            if not isinstance(at, list) or not at:
                raise self.fail(where, "at_s must be a non-empty list of times in seconds")
            times = tuple(sorted(self.num(t, where, "at_s") for t in at))
        elif {"start_s", "end_s", "interval_ms"} <= set(table):
            start = self.num(table["start_s"], where, "start_s")
            end = self.num(table["end_s"], where, "end_s")
            step = self.num(table["interval_ms"], where, "interval_ms", strict_lo=True) / 1e3
            if end < start:
                raise self.fail(where, "end_s must not be before start_s")
            count = int((end - start) / step + 1e-9)
            if count > 10_000_000:
                raise self.fail(where, f"{count} occurrences is too many; raise interval_ms")
            times = tuple(start + i * step for i in range(count))
        else:
            raise self.fail(where, "give at_s = [...] or start_s, end_s and interval_ms")
        default_min = {"kswapd": 1, "memcg": 1, "direct": 4, "proactive": 6}.get(kind, 0)
        vm = table.get("vm", "all")
        if vm != "all" and vm not in vm_names:
            raise self.fail(
                where, f"vm {vm!r} names no VM (known: all, {', '.join(sorted(vm_names))})"
            )
        return PressurePlan(
            kind=kind,
            times_s=times,
            min_priority=self.integer(
                table.get("min_priority", default_min), where, "min_priority", hi=PRIORITY_MAX
            ),
            passes_per_priority=self.integer(
                table.get("passes_per_priority", 1), where, "passes_per_priority", lo=1
            ),
            pass_interval_us=self.num(
                table.get("pass_interval_us", 100.0), where, "pass_interval_us"
            ),
            repeats=self.integer(table.get("repeats", 1), where, "repeats", lo=1, hi=1000),
            nodes=self.integer(table.get("nodes", 1), where, "nodes", lo=1, hi=1024),
            nr_to_scan=self.integer(
                table.get("nr_to_scan", 128), where, "nr_to_scan", hi=0xFFFFFFFF
            ),
            vm=vm,
            len=self.size(table.get("len", 2 << 20), where, "len"),
            footprint=None
            if "footprint" not in table
            else self.size(table["footprint"], where, "footprint"),
            offset=self.size(table.get("offset", 0), where, "offset", positive=False),
        )
