"""Trace schema v2 in code, built from the single definition in ``schemas/trace.v2.json``.

The column list, the enumerations and the footer's field lists are read from that file; this
module adds only what JSON cannot say: the Arrow types, and the checks of the footer's values
(unique VM ids, aligned memslots that do not overlap, a known MMU mode).

Version 1 traces still read: their footers are checked against ``schemas/trace.v1.json`` (which
has no ``region`` rows, no sampled coverages and no ``hva_start``), and the columns version 2
added read as all null (:mod:`replay.trace.reader`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from replay._schemas import load_schema
from replay.errors import TraceSchemaError, TraceVersionError

if TYPE_CHECKING:
    import pyarrow as pa

_DOC = load_schema("trace.v2")
_DOCS: dict[int, dict[str, Any]] = {1: load_schema("trace.v1"), 2: _DOC}
"""Every version this package reads, by number: a footer is checked against its own version."""

SCHEMA_VERSION: int = int(_DOC["schema_version"])
FOOTER_KEY: str = str(_DOC["footer_key"])
ENUMS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _DOC["enums"].items()}
EVENT_KINDS: tuple[str, ...] = ENUMS["event"]
OPS: tuple[str, ...] = ENUMS["op"]
SOURCES: tuple[str, ...] = ENUMS["source"]
MMU_MODES: tuple[str, ...] = ENUMS["mmu_mode"]
BACKINGS: tuple[str, ...] = ENUMS["backing"]
COVERAGES: tuple[str, ...] = ENUMS["coverage"]
COLUMNS: tuple[str, ...] = tuple(c["name"] for c in _DOC["columns"])
COLUMN_TYPES: dict[str, str] = {c["name"]: c["type"] for c in _DOC["columns"]}
NULLABLE: dict[str, bool] = {c["name"]: bool(c["nullable"]) for c in _DOC["columns"]}
REQUIRED_BY_EVENT: dict[str, tuple[str, ...]] = {
    k: tuple(v["required"]) for k, v in _DOC["events"].items()
}
PRIORITY_MAX: int = int(_DOC["limits"]["priority_max"])
ROOT_LEVELS: tuple[int, ...] = tuple(_DOC["limits"]["root_levels"])
PAGE_SIZE: int = int(_DOC["limits"]["page_size"])
PAGE_SHIFT = 12
READABLE_VERSIONS: tuple[int, ...] = tuple(sorted(_DOCS))
V1_COLUMNS: tuple[str, ...] = tuple(c["name"] for c in _DOCS[1]["columns"])
"""The columns of a version 1 trace; the others read as null there."""
SAMPLED_COVERAGES: tuple[str, ...] = ("sampled", "faults+sampled")
"""Coverages whose traces hold ``region`` rows (DAMON observations)."""
LOGGED_FAULT_COVERAGES: tuple[str, ...] = ("faults-only", "faults+sampled")
"""Coverages whose ``access`` rows are faults a kernel logged, not every access."""

# Integer codes of the enumerations, in schema order. The engines work on these codes.
EVENT_CODE: dict[str, int] = {name: i for i, name in enumerate(EVENT_KINDS)}
OP_CODE: dict[str, int] = {name: i for i, name in enumerate(OPS)}
SOURCE_CODE: dict[str, int] = {name: i for i, name in enumerate(SOURCES)}

BACKING_LEVEL: dict[str, int] = {"4k": 1, "2m": 2, "1g": 3}
"""Leaf level a backing allows (MODEL.md rule 3b)."""

_OUT_OF_SCOPE_MODES = {
    "shadow": "shadow paging without EPT/NPT",
    "shadow_paging": "shadow paging without EPT/NPT",
    "nested": "nested guests",
    "shadow_nested": "nested guests",
}
# Guest physical addresses have at most 52 bits on x86-64.
MAX_GPA = 1 << 52


@cache
def arrow_schema() -> pa.Schema:
    """Return the Arrow schema of a trace (the current version), without footer metadata."""
    import pyarrow as pa

    plain = {
        "int8": pa.int8(),
        "int16": pa.int16(),
        "int64": pa.int64(),
        "uint16": pa.uint16(),
        "uint32": pa.uint32(),
        "uint64": pa.uint64(),
    }
    fields = []
    for col in _DOC["columns"]:
        kind = col["type"]
        dtype = pa.dictionary(pa.int8(), pa.string()) if kind.startswith("enum:") else plain[kind]
        fields.append(pa.field(col["name"], dtype, nullable=col["nullable"]))
    return pa.schema(fields)


@dataclass(frozen=True)
class Memslot:
    """One RAM memslot of a VM: ``[gpa_start, gpa_start + size)`` backed by ``backing`` pages.

    The values are checked when a trace is read or written, not here.

    Parameters
    ----------
    gpa_start : int
        The slot's first guest physical byte, a multiple of 4096.
    size : int
        Its length in bytes, a positive multiple of 4096.
    backing : str
        The host page size behind it, ``"4k"``, ``"2m"`` or ``"1g"``: the largest leaf a fault
        can install there (MODEL.md rule 3b).
    dirty_log : bool
        Whether dirty logging is on; every leaf is then 4 KiB.
    hva_start : int or None, optional
        The host virtual address of the slot's first byte in the VMM process, where known
        (``replay convert`` keeps it to say how DAMON regions were placed); not read by the
        replay.

    Examples
    --------
    >>> from replay import Memslot
    >>> slot = Memslot(gpa_start=4 << 30, size=1 << 30, backing="2m")
    >>> slot.gfn_start, slot.npages, hex(slot.gpa_end)
    (1048576, 262144, '0x140000000')
    """

    gpa_start: int
    size: int
    backing: str = "4k"
    dirty_log: bool = False
    hva_start: int | None = None

    @property
    def gpa_end(self) -> int:
        """First byte past the slot."""
        return self.gpa_start + self.size

    @property
    def gfn_start(self) -> int:
        """First guest frame number of the slot."""
        return self.gpa_start >> PAGE_SHIFT

    @property
    def npages(self) -> int:
        """Number of 4 KiB pages in the slot."""
        return self.size >> PAGE_SHIFT

    def to_json(self) -> dict[str, Any]:
        """Return the footer form of the slot (``hva_start`` only when known)."""
        doc: dict[str, Any] = {
            "gpa_start": self.gpa_start,
            "size": self.size,
            "backing": self.backing,
            "dirty_log": self.dirty_log,
        }
        if self.hva_start is not None:
            doc["hva_start"] = self.hva_start
        return doc


@dataclass(frozen=True)
class VmSpec:
    """One VM of the footer's VM table.

    The values are checked when a trace is read or written, not here.

    Parameters
    ----------
    id : int
        The VM's id in the trace's ``vm`` column, 0 to 65535, unique in the trace.
    name : str
        A name for people.
    vcpus : int
        Its vCPUs, numbered 0 to ``vcpus - 1``.
    mmu_mode : str
        ``"tdp_mmu"`` or ``"shadow_direct"`` (MODEL.md section 0).
    root_level : int
        4, or 5 for 5-level EPT/NPT.
    memslots : tuple of Memslot
        Its RAM; a guest physical address in none of them is MMIO.

    Examples
    --------
    >>> from replay import Memslot, VmSpec
    >>> slots = (Memslot(0, 3 << 30), Memslot(4 << 30, 1 << 30, "2m"))
    >>> vm = VmSpec(0, "web-1", 4, "shadow_direct", 4, slots)
    >>> vm.guest_pages
    1048576
    >>> vm.to_json()["memslots"][1]
    {'gpa_start': 4294967296, 'size': 1073741824, 'backing': '2m', 'dirty_log': False}
    """

    id: int
    name: str
    vcpus: int
    mmu_mode: str
    root_level: int
    memslots: tuple[Memslot, ...]

    @property
    def guest_pages(self) -> int:
        """Pages of all the VM's memslots together."""
        return sum(s.npages for s in self.memslots)

    def to_json(self) -> dict[str, Any]:
        """Return the footer form of the VM."""
        return {
            "id": self.id,
            "name": self.name,
            "vcpus": self.vcpus,
            "mmu_mode": self.mmu_mode,
            "root_level": self.root_level,
            "memslots": [s.to_json() for s in self.memslots],
        }


@dataclass(frozen=True)
class TraceMeta:
    """The footer of a trace: everything about it that is not a row.

    Parameters
    ----------
    vms : tuple of VmSpec
        The VM table, in ``vm_list`` order, head first (MODEL.md section 2).
    coverage : str
        ``"all-accesses"`` (every guest access, as ``replay synth`` writes),
        ``"faults-only"`` (only the faults a kernel log recorded), ``"sampled"`` (DAMON
        region observations only) or ``"faults+sampled"`` (logged faults and region rows).
    provenance : dict
        Where the trace came from: generator, scenario and seed, or converted files.
    observed : dict, optional
        For converted traces, what the kernel's own events reported.
    schema_version : int, optional
        The trace schema's major version: that of the file read, the current one for a trace
        being written (:func:`replay.trace.writer.write_trace` writes the current version).

    Examples
    --------
    >>> from replay import Memslot, TraceMeta, VmSpec
    >>> vm = VmSpec(0, "a", 1, "tdp_mmu", 4, (Memslot(0, 1 << 30),))
    >>> meta = TraceMeta(vms=(vm,), coverage="all-accesses", provenance={"generator": "doc"})
    >>> meta.to_json()[:46]
    '{"schema_version":2,"coverage":"all-accesses",'
    >>> TraceMeta.from_json(meta.to_json(), "example") == meta
    True
    """

    vms: tuple[VmSpec, ...]
    coverage: str
    provenance: dict[str, Any]
    observed: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def vm_by_id(self) -> dict[int, VmSpec]:
        """Map VM id to its spec."""
        return {vm.id: vm for vm in self.vms}

    def to_json(self) -> str:
        """Return the footer JSON, in the key order of the schema's example."""
        doc = {
            "schema_version": self.schema_version,
            "coverage": self.coverage,
            "vms": [vm.to_json() for vm in self.vms],
            "provenance": self.provenance,
            "observed": self.observed,
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> TraceMeta:
        """Parse and check a footer; ``where`` names the file in error messages."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TraceSchemaError(
                f"trace {where}: the {FOOTER_KEY!r} footer is not valid JSON ({exc}); "
                "re-create the trace with replay synth"
            ) from None
        except RecursionError:
            # json's decoder recurses per nesting level: a footer nested thousands deep is
            # damage (or hostile), never a footer this schema describes.
            raise TraceSchemaError(
                f"trace {where}: the {FOOTER_KEY!r} footer nests too deeply to be a trace "
                "footer; re-create the trace with replay synth"
            ) from None
        return cls.from_dict(doc, where)

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> TraceMeta:
        """Check a parsed footer document against the schema and build a :class:`TraceMeta`."""
        if not isinstance(doc, dict):
            raise TraceSchemaError(f"trace {where}: the footer is not a JSON object")
        version = doc.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise TraceSchemaError(
                f"trace {where}: footer has no integer schema_version; "
                "re-create the trace with replay synth"
            )
        if version not in _DOCS:
            newer = version > SCHEMA_VERSION
            fix = (
                "upgrade kvm-mmu-replay (python -m pip install -U kvm-mmu-replay)"
                if newer
                else "re-convert the original log with this version"
            )
            raise TraceVersionError(
                f"trace {where}: schema version {version} is not supported "
                f"(this replay reads versions {', '.join(map(str, READABLE_VERSIONS))}); {fix}"
            )
        schema = _DOCS[version]
        _check_keys(doc, schema["footer"]["fields"], f"trace {where}: footer")
        coverage = doc["coverage"]
        if coverage not in schema["enums"]["coverage"]:
            raise TraceSchemaError(
                f"trace {where}: footer coverage is {_shown(coverage)}; it must be one of "
                f"{', '.join(schema['enums']['coverage'])} in a version {version} trace"
            )
        vms_doc = doc["vms"]
        if not isinstance(vms_doc, list) or not vms_doc:
            raise TraceSchemaError(f"trace {where}: footer 'vms' must be a non-empty list of VMs")
        vms = tuple(
            _parse_vm(v, f"trace {where}: footer vms[{i}]", schema) for i, v in enumerate(vms_doc)
        )
        check_vm_table(vms, f"trace {where}")
        provenance = doc["provenance"]
        observed = doc.get("observed", {})
        for key, value in (("provenance", provenance), ("observed", observed)):
            if not isinstance(value, dict):
                raise TraceSchemaError(f"trace {where}: footer {key!r} must be a JSON object")
        check_observed(observed, f"trace {where}: footer observed")
        return cls(
            vms=vms,
            coverage=coverage,
            provenance=provenance,
            observed=observed,
            schema_version=version,
        )


def check_observed(observed: dict[str, Any], where: str) -> None:
    """Check the counters of ``observed`` that the tool reads back (``replay run`` prints them).

    Every count is a whole number >= 0: ``per_vm`` maps VM ids to ``{counter: count}``,
    ``kvm_shrinker_scans`` holds ``calls``, ``total_scan`` and ``freed``, ``guesses`` maps a
    guess to a count, ``unplaced_unmaps`` and ``lost_events`` are counts. Other keys are kept as
    they are (they are shown, not computed with).
    """

    def count(value: Any, name: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TraceSchemaError(
                f"{where}: {name} is {_shown(value)}; it must be a whole number >= 0"
            )

    def counts(value: Any, name: str) -> None:
        if not isinstance(value, dict):
            raise TraceSchemaError(f"{where}: {name} must be a JSON object of counts")
        for key, n in value.items():
            count(n, f"{name}.{key}")

    per_vm = observed.get("per_vm", {})
    if not isinstance(per_vm, dict):
        raise TraceSchemaError(f"{where}: per_vm must be a JSON object of VMs")
    for vm, vm_counts in per_vm.items():
        counts(vm_counts, f"per_vm.{vm}")
    if "kvm_shrinker_scans" in observed:
        counts(observed["kvm_shrinker_scans"], "kvm_shrinker_scans")
    if "guesses" in observed:
        counts(observed["guesses"], "guesses")
    for key in ("unplaced_unmaps", "lost_events"):
        if key in observed:
            count(observed[key], key)


def check_vm_table(vms: tuple[VmSpec, ...], where: str) -> None:
    """Check what involves several VMs or memslots: unique ids, slots that do not overlap."""
    seen: set[int] = set()
    for vm in vms:
        if vm.id in seen:
            raise TraceSchemaError(f"{where}: VM id {vm.id} appears twice in the VM table")
        seen.add(vm.id)
        ordered = sorted(vm.memslots, key=lambda s: s.gpa_start)
        for left, right in itertools.pairwise(ordered):
            if right.gpa_start < left.gpa_end:
                raise TraceSchemaError(
                    f"{where}: VM {vm.id} ({vm.name}) has overlapping memslots at "
                    f"{left.gpa_start:#x} and {right.gpa_start:#x}; give each slot its own range"
                )


def check_memslot(slot: Memslot, where: str) -> None:
    """Check one memslot's values."""
    if slot.size <= 0 or slot.size % PAGE_SIZE:
        raise TraceSchemaError(f"{where}: size {slot.size} must be a positive multiple of 4096")
    if slot.gpa_start < 0 or slot.gpa_start % PAGE_SIZE:
        raise TraceSchemaError(
            f"{where}: gpa_start {slot.gpa_start:#x} must be a non-negative multiple of 4096"
        )
    if slot.gpa_end > MAX_GPA:
        raise TraceSchemaError(f"{where}: the slot ends past 2**52, beyond any x86-64 guest")
    _check_enum(slot.backing, "backing", f"{where}: backing")
    if slot.hva_start is not None and (
        isinstance(slot.hva_start, bool)
        or not isinstance(slot.hva_start, int)
        or not 0 <= slot.hva_start < 1 << 64
        or slot.hva_start % PAGE_SIZE
    ):
        raise TraceSchemaError(
            f"{where}: hva_start {_shown(slot.hva_start)} must be a page-aligned host address "
            "(a multiple of 4096 below 2**64)"
        )


def check_vm(vm: VmSpec, where: str) -> None:
    """Check one VM's values (not its relation to other VMs)."""
    if not 0 <= vm.id <= 0xFFFF:
        raise TraceSchemaError(f"{where}: id {vm.id} must be in 0..65535")
    if not 1 <= vm.vcpus <= 0xFFFF:
        raise TraceSchemaError(f"{where}: vcpus {vm.vcpus} must be in 1..65535")
    if vm.mmu_mode in _OUT_OF_SCOPE_MODES:
        raise TraceSchemaError(
            f"{where}: mmu_mode {vm.mmu_mode!r} ({_OUT_OF_SCOPE_MODES[vm.mmu_mode]}) is out of "
            f"scope; use one of {', '.join(MMU_MODES)}"
        )
    _check_enum(vm.mmu_mode, "mmu_mode", f"{where}: mmu_mode")
    if vm.root_level not in ROOT_LEVELS:
        raise TraceSchemaError(f"{where}: root_level {vm.root_level} must be 4 or 5")
    if not vm.memslots:
        raise TraceSchemaError(f"{where}: VM {vm.name!r} has no memslots; give it at least one")
    reach = 1 << (PAGE_SHIFT + 9 * vm.root_level)
    for i, slot in enumerate(vm.memslots):
        check_memslot(slot, f"{where} memslots[{i}]")
        if slot.gpa_end > reach:
            raise TraceSchemaError(
                f"{where} memslots[{i}]: ends at {slot.gpa_end:#x}, beyond the {reach:#x} bytes a "
                f"{vm.root_level}-level root maps; use root_level 5"
            )


def _parse_vm(doc: Any, where: str, schema: dict[str, Any]) -> VmSpec:
    if not isinstance(doc, dict):
        raise TraceSchemaError(f"{where}: a VM must be a JSON object")
    _check_keys(doc, schema["footer"]["vm"], where)
    slots_doc = doc["memslots"]
    if not isinstance(slots_doc, list):
        raise TraceSchemaError(f"{where}: memslots must be a list")
    slots = []
    for i, s in enumerate(slots_doc):
        if not isinstance(s, dict):
            raise TraceSchemaError(f"{where} memslots[{i}]: a memslot must be a JSON object")
        _check_keys(s, schema["footer"]["memslot"], f"{where} memslots[{i}]")
        slots.append(
            Memslot(s["gpa_start"], s["size"], s["backing"], s["dirty_log"], s.get("hva_start"))
        )
    vm = VmSpec(
        id=doc["id"],
        name=doc["name"],
        vcpus=doc["vcpus"],
        mmu_mode=doc["mmu_mode"],
        root_level=doc["root_level"],
        memslots=tuple(slots),
    )
    check_vm(vm, where)
    return vm


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "str": (str,),
    "bool": (bool,),
    "object": (dict,),
}


def _check_keys(doc: dict[str, Any], fields: dict[str, Any], where: str) -> None:
    """Reject unknown keys, missing required keys and values of the wrong JSON type."""
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise TraceSchemaError(
            f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(fields)}"
        )
    for name, spec in fields.items():
        if name not in doc:
            if spec["required"]:
                raise TraceSchemaError(f"{where}: required key {name!r} is missing")
            continue
        kind: str = spec["type"]
        value = doc[name]
        if kind.startswith("enum:"):
            if not isinstance(value, str):  # the value itself is checked where it is used
                raise TraceSchemaError(f"{where}: {name!r} must be a string, not {_shown(value)}")
            continue
        if kind.startswith("list:"):
            ok = isinstance(value, list)
        else:
            ok = isinstance(value, _JSON_TYPES[kind]) and not (
                kind == "int" and isinstance(value, bool)
            )
        if not ok:
            raise TraceSchemaError(f"{where}: {name!r} must be of type {kind}, not {_shown(value)}")


def _check_enum(value: Any, enum: str, where: str) -> None:
    if value not in ENUMS[enum]:
        raise TraceSchemaError(
            f"{where} is {_shown(value)}; it must be one of {', '.join(ENUMS[enum])}"
        )


def _shown(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut short (a footer may hold anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
