"""``replay convert``: kernel trace text (ftrace, perf script, trace-cmd report) into a trace.

The pipeline, per log file, a block of lines at a time (memory does not grow with the log):
:mod:`.source` reads the text (plain, gzip, zstd, stdin); :mod:`.lines` splits every line's
common fields with numpy; :mod:`.layout` reads the odd lines; :mod:`.payloads` reads each
event's fields; :mod:`.vms` assigns VMs and vCPUs; :mod:`.passes` groups shrinker lines into
reclaim passes. Rows are written in time order; several files are spooled and merged. What was
read, used and skipped is counted in a :class:`ConvertReport`: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.layout import LAYOUTS, Task, event_name, lost_count, parse_task, slow_line
from replay.convert.lines import split_block
from replay.convert.passes import Pass, PassBuilder
from replay.convert.payloads import FAST_FORMATS, KNOWN_UNUSED, USED, fast_fields, parse_payload
from replay.convert.source import LogFormatError, codec_of, read_blocks
from replay.convert.vms import VmRegistry, load_vm_config
from replay.errors import ReplayError
from replay.trace.schema import EVENT_CODE, OP_CODE, SOURCE_CODE, TraceMeta

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["ConvertOptions", "ConvertReport", "LogFormatError", "convert_logs"]

EXAMPLES = 5
"""Malformed lines quoted in the report (the rest are counted)."""
FAULT_CODES = ("auto", "vmx", "svm")
ACCESS_SOURCES = ("auto", "kvm_page_fault", "kvm_mmu_spte_requested")


class StrictError(ReplayError):
    """``--strict``: a line could not be read."""


@dataclass(frozen=True)
class ConvertOptions:
    """What the user chose on the command line."""

    layout: str | None = None
    fault_codes: str = "auto"
    vm_config: Path | None = None
    mmu: str | None = None
    strict: bool = False
    access_source: str = "auto"


@dataclass
class FileReport:
    """One input log."""

    path: str
    layout: str = "unknown"
    compression: str = ""
    lines: int = 0
    sha256: str = ""
    first_t_ns: int | None = None
    last_t_ns: int | None = None
    fault_codes: str | None = None


@dataclass
class ConvertReport:
    """Everything a conversion read, used and skipped."""

    files: list[FileReport] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    """Lines of each event the converter uses, by event name."""
    rows: Counter[str] = field(default_factory=Counter)
    """Trace rows written, by kind."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Lines (or rows) left out, by reason."""
    unknown_events: Counter[str] = field(default_factory=Counter)
    unused_events: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lost_events: int = 0
    access_source: str = ""
    vms: list[dict[str, Any]] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        """Lines read over all files."""
        return sum(f.lines for f in self.files)

    def malformed(self, where: str, text: str, reason: str) -> None:
        """Count a line that could not be read, quoting the first few."""
        self.skipped[reason] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {reason}: {text[:160]}")

    def to_json(self) -> dict[str, Any]:
        """The report as ``replay convert --json`` prints it."""
        return {
            "files": [vars(f) for f in self.files],
            "lines": self.lines,
            "events": dict(self.events),
            "rows": dict(self.rows),
            "skipped": dict(self.skipped),
            "unknown_events": dict(self.unknown_events),
            "unused_events": dict(self.unused_events),
            "lost_events": self.lost_events,
            "examples": self.examples,
            "warnings": self.warnings,
            "access_source": self.access_source,
            "vms": self.vms,
        }


SPOOL_COLUMNS = (
    "t_ns",
    "line",
    "event",
    "vm",
    "vcpu",
    "gpa",
    "len",
    "op",
    "source",
    "priority",
    "nid",
)
"""Columns of a converter's rows (the trace's, with the line for ordering)."""


class _Rows:
    """Trace rows of a block, as columns (provisional VM indices)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, n: int, **cols: Any) -> None:
        if n:
            self.parts.append(
                {k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in cols.items()}
            )

    def take(self) -> dict[str, np.ndarray]:
        out = {}
        for name in SPOOL_COLUMNS:
            arrays = [p.get(name) for p in self.parts]
            n = [len(p["t_ns"]) for p in self.parts]
            out[name] = (
                np.concatenate(
                    [
                        a if a is not None else np.full(k, -1, dtype=np.int64)
                        for a, k in zip(arrays, n, strict=True)
                    ]
                )
                if self.parts
                else np.zeros(0, dtype=np.int64)
            )
        self.parts = []
        return out


@dataclass
class _Prepared:
    """A block split into lines, with the payloads of the fast events already parsed.

    Made on the reading thread (numpy releases the GIL), so that it overlaps with the
    converter's own work on the previous block.
    """

    blk: Any
    unterminated: bool
    selections: dict[int, np.ndarray]
    """Fast-split line indices of each event column."""
    fast: dict[int, tuple[list[np.ndarray], np.ndarray]]
    """Parsed values and validity of each fast event column."""


def _prepare(data: bytes, first_line: int, unterminated: bool) -> _Prepared:
    blk = split_block(data, first_line)
    ok_idx = np.flatnonzero(blk.ok)
    selections: dict[int, np.ndarray] = {}
    fast: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}
    ids = blk.event_id[ok_idx]
    for eid, column in enumerate(blk.events):
        sel = ok_idx[ids == eid] if len(blk.events) > 1 else ok_idx
        selections[eid] = sel
        name = event_name(column)[0]
        if name in FAST_FORMATS and len(sel):
            fast[eid] = fast_fields(blk, sel, name)
    return _Prepared(blk, unterminated, selections, fast)


PREPARE_THREADS = 2
"""Blocks split at once, on the machine's 2 cores (numpy releases the GIL in its loops).
Measured on a 5-million-line log: 1 thread 4.7 s, 2 threads 4.3 s, 3 threads 4.3 s (more
memory), 4 threads 4.5 s."""
PREPARE_AHEAD = 4
"""Blocks read and being split ahead of the converter (bounds memory: 16 MiB each)."""


def _prepared_blocks(path: str, sha: Any) -> Iterator[_Prepared]:
    """Blocks of a log, split on worker threads a few blocks ahead, handed out in order."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    next_line = 1

    def numbered(prepared: _Prepared) -> _Prepared:
        # Blocks are split apart from each other; their lines are numbered here, in order.
        nonlocal next_line
        prepared.blk.line_no += next_line
        next_line += len(prepared.blk)
        return prepared

    with (
        ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="convert") as pool,
        ThreadPoolExecutor(1, thread_name_prefix="convert-sha") as hasher,  # in file order
    ):
        pending: deque[Any] = deque()
        try:
            for block in read_blocks(path):
                pending.append(hasher.submit(sha.update, block.data))
                pending.append(pool.submit(_prepare, block.data, 0, block.unterminated))
                if len(pending) >= 2 * PREPARE_AHEAD:
                    pending.popleft().result()
                    yield numbered(pending.popleft().result())
            while pending:
                pending.popleft().result()
                yield numbered(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()


class _FileConverter:
    """Reads one log file and produces its trace rows in time order."""

    def __init__(
        self,
        path: str,
        report: ConvertReport,
        registry: VmRegistry,
        options: ConvertOptions,
        access_source: str,
        file_index: int,
    ) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self.report = report
        self.registry = registry
        self.options = options
        self.access_source = access_source
        self.file_index = file_index
        self.info = FileReport(self.name)
        self.layout: str | None = options.layout
        self.tasks: dict[str, Task | None] = {}
        self.task_ids: dict[Task, int] = {}
        self.passes = PassBuilder()
        self.pending: dict[str, np.ndarray] | None = None
        self.last_t = np.iinfo(np.int64).min
        self.fault_codes: str | None = (
            None if options.fault_codes == "auto" else options.fault_codes
        )
        self.sha = hashlib.sha256()
        self.layouts_seen: dict[str, int] = {}
        self.cut_line = -1
        """Number of the log's last line when it has no newline (the capture stopped in it)."""

    # -- per line ---------------------------------------------------------------------
    def _where(self, line: int) -> str:
        return f"{self.name}:{line}"

    def _bad(self, line: int, text: str, reason: str) -> None:
        if line == self.cut_line:
            reason = "truncated last line"
        if self.options.strict:
            raise StrictError(f"{self._where(line)}: {reason}: {text[:160]} (--strict)")
        self.report.malformed(self._where(line), text, reason)

    def _task(self, head: str, line: int) -> Task | None:
        if head not in self.tasks:
            task = parse_task(head, self.layout or "ftrace")
            if task is None and self.layout is None:
                for layout in LAYOUTS:
                    task = parse_task(head, layout)
                    if task is not None:
                        break
            self.tasks[head] = task
        return self.tasks[head]

    def _note_layout(self, perf_style: bool, line: int, text: str) -> None:
        kind = "perf" if perf_style else "dash"
        if kind not in self.layouts_seen:
            self.layouts_seen[kind] = line
            if len(self.layouts_seen) > 1:
                first = min(self.layouts_seen.values())
                raise LogFormatError(
                    f"log {self.name} mixes perf script lines with ftrace/trace-cmd lines "
                    f"(line {first} and line {line}); convert each part as its own file"
                )
        if self.layout is None:
            self.layout = "perf" if perf_style else (self.layout or "ftrace")

    # -- per block --------------------------------------------------------------------
    def block_rows(self, prepared: _Prepared) -> dict[str, np.ndarray]:
        report = self.report
        blk = prepared.blk
        unterminated = prepared.unterminated
        if int(blk.line_no[0]) == 1 and self.layout is None:
            opening = blk.data[:64].lstrip()
            if opening.startswith(b"cpus="):
                self.layout = "trace-cmd"
        self.info.lines += len(blk)
        if unterminated:
            self.cut_line = int(blk.line_no[-1])
        # Lines the fast split left: headers, notices, odd layouts, damage.
        slow_t: list[int] = []
        slow_line_no: list[int] = []
        slow_head: list[str] = []
        slow_event: list[str] = []
        slow_payload: list[str] = []
        for i in np.flatnonzero(~blk.ok).tolist():
            text = blk.text(i)
            line = int(blk.line_no[i])
            got = slow_line(text)
            if isinstance(got, str):
                if got == "lost":
                    report.lost_events += lost_count(text)
                    report.skipped["lost-events notice"] += 1
                elif got == "malformed":
                    self._bad(line, text, "malformed line")
                else:
                    report.skipped[f"{got} line"] += 1
                continue
            slow_t.append(got.t_ns)
            slow_line_no.append(line)
            slow_head.append(got.head)
            slow_event.append(got.event)
            slow_payload.append(got.payload)

        rows = _Rows()
        # Events read line by line, dispatched in line order below: reclaim passes depend on
        # the order of begin, shrinker and end lines.
        ordered: list[tuple[int, int, str, str, str]] = []
        names = [event_name(e) for e in blk.events]
        for eid, (name, perf_style) in enumerate(names):
            sel = prepared.selections[eid]
            if not len(sel):
                continue
            self._note_layout(perf_style, int(blk.line_no[sel[0]]), "")
            if name not in USED:
                bucket = report.unused_events if name in KNOWN_UNUSED else report.unknown_events
                bucket[name] += len(sel)
                continue
            report.events[name] += len(sel)
            if eid in prepared.fast:
                values, good = prepared.fast[eid]
                self._fast_event(rows, blk, name, sel[good], [v[good] for v in values])
                sel = sel[~good]
            ordered += [
                (
                    int(blk.line_no[i]),
                    int(blk.t_ns[i]),
                    name,
                    blk.heads[blk.head_id[i]],
                    blk.payload(i),
                )
                for i in sel.tolist()
            ]
        for t, line, head, ev, payload in zip(
            slow_t, slow_line_no, slow_head, slow_event, slow_payload, strict=True
        ):
            name, perf_style = event_name(ev)
            self._note_layout(perf_style, line, payload)
            if name not in USED:
                bucket = report.unused_events if name in KNOWN_UNUSED else report.unknown_events
                bucket[name] += 1
                continue
            report.events[name] += 1
            ordered.append((line, t, name, head, payload))
        ordered.sort(key=lambda e: e[0])
        for line, t, name, head, payload in ordered:
            self._slow_event(rows, name, t, line, head, payload)
        return self._emit(rows, final=False)

    # -- events -----------------------------------------------------------------------
    def _task_index(self, task: Task) -> int:
        idx = self.task_ids.get(task)
        if idx is None:
            idx = self.task_ids[task] = len(self.task_ids)
        return idx

    def _fast_event(
        self, rows: _Rows, blk: Any, name: str, sel: np.ndarray, values: list[np.ndarray]
    ) -> None:
        if not len(sel):
            return
        if name != self.access_source:
            self.report.skipped[f"{name} (the access source is {self.access_source})"] += len(sel)
            return
        heads = blk.head_id[sel]
        t = blk.t_ns[sel]
        lines = blk.line_no[sel]
        # Resolve the block's few distinct tasks in Python (head ids number them in order of
        # first appearance), then map every line through small tables.
        n_heads = len(blk.heads)
        first_row = np.full(n_heads, len(sel), dtype=np.int64)
        first_row[heads[::-1]] = np.arange(len(sel) - 1, -1, -1)
        vm_of_head = np.full(n_heads, -1, dtype=np.int64)
        vcpu_of_head = np.full(n_heads, -1, dtype=np.int64)
        tasks: dict[int, Task] = {}
        for h in np.argsort(first_row, kind="stable").tolist():
            j = int(first_row[h])
            if j >= len(sel):
                continue  # a task with no line of this event
            task = self._task(blk.heads[h], int(lines[j]))
            if task is None:
                bad = np.flatnonzero(heads == h)
                for k in bad[:EXAMPLES].tolist():
                    self._bad(int(lines[k]), blk.heads[h], "unreadable task column")
                self.report.skipped["unreadable task column"] += max(0, len(bad) - EXAMPLES)
                continue
            tasks[h] = task
            vm_of_head[h] = self.registry.vm_of(task, int(t[j]))
        vm = vm_of_head[heads]
        keep = vm >= 0
        if name == "kvm_page_fault":
            vcpu = values[0].astype(np.int64)
            # Every (task, vcpu field) pair once, for the registry's vCPU table.
            top = int(vcpu.max(initial=0)) + 1
            pairs = np.flatnonzero(np.bincount(heads[keep] * top + vcpu[keep]))
            for h, c in zip((pairs // top).tolist(), (pairs % top).tolist(), strict=True):
                self.registry.vcpu_of(int(vm_of_head[h]), tasks[h], c)
        else:
            for h, task in tasks.items():
                vcpu_of_head[h] = self.registry.vcpu_of(int(vm_of_head[h]), task, None)
            vcpu = vcpu_of_head[heads]
        if name == "kvm_page_fault":
            gpa = values[1]
            op = self._ops(values[2])
        else:
            gpa = values[0] << np.uint64(12)
            op = np.full(len(sel), OP_CODE["read"], dtype=np.int64)
        if keep.all():
            self._accesses(rows, t, lines, vm, vcpu, gpa, op)
        else:
            self._accesses(rows, t[keep], lines[keep], vm[keep], vcpu[keep], gpa[keep], op[keep])

    def _ops(self, error_code: np.ndarray) -> np.ndarray:
        """Access types (read / write / exec) from fault error codes (KERNEL-NOTES.md §6)."""
        ec = error_code.astype(np.uint64)
        if self.fault_codes is None and len(ec):
            if np.any(ec >> np.uint64(32)):
                self.fault_codes = "svm"
            elif np.any(ec & np.uint64(0x180)):
                self.fault_codes = "vmx"
        codes = self.fault_codes or "svm"
        write = (ec & np.uint64(0x2)) != 0
        fetch_bit = np.uint64(0x4 if codes == "vmx" else 0x10)
        fetch = (ec & fetch_bit) != 0
        return np.where(write, OP_CODE["write"], np.where(fetch, OP_CODE["exec"], OP_CODE["read"]))

    def _accesses(
        self,
        rows: _Rows,
        t: np.ndarray,
        lines: np.ndarray,
        vm: np.ndarray,
        vcpu: np.ndarray,
        gpa: np.ndarray,
        op: np.ndarray,
    ) -> None:
        n = len(t)
        if not n:
            return
        self.registry.note_gpas(vm, gpa)
        rows.add(
            n,
            t_ns=t,
            line=lines,
            event=EVENT_CODE["access"],
            vm=vm,
            vcpu=vcpu,
            gpa=gpa.astype(np.int64),
            op=op,
        )

    def _slow_event(
        self, rows: _Rows, name: str, t: int, line: int, head: str, payload: str
    ) -> None:
        values = parse_payload(name, payload)
        if values is None:
            self._bad(line, payload, f"unreadable {name} payload")
            return
        task = self._task(head, line)
        if task is None:
            self._bad(line, head, "unreadable task column")
            return
        if name in FAST_FORMATS:
            if name != self.access_source:
                self.report.skipped[f"{name} (the access source is {self.access_source})"] += 1
                return
            vm = self.registry.vm_of(task, t)
            if name == "kvm_page_fault":
                vcpu_field, address, code = values
                vcpu = self.registry.vcpu_of(vm, task, vcpu_field)
                op = self._ops(np.array([code], dtype=np.uint64))
                gpa = np.array([address], dtype=np.uint64)
            else:
                vcpu = self.registry.vcpu_of(vm, task, None)
                op = np.array([OP_CODE["read"]])
                gpa = np.array([values[0] << 12], dtype=np.uint64)
            self._accesses(
                rows, np.array([t]), np.array([line]), np.array([vm]), np.array([vcpu]), gpa, op
            )
            return
        tid = self._task_index(task)
        if name == "mm_shrink_slab_start":
            sname, shrinker, nid, nr, _items, _delta, total, prio = values
            self.passes.shrink_start(
                tid,
                task.comm,
                t,
                line,
                str(sname),
                int(shrinker),
                int(nid),
                int(nr),
                int(total),
                prio,
            )
        elif name == "mm_shrink_slab_end":
            self.passes.shrink_end(tid, str(values[0]), int(values[6]))
        elif name.startswith("mm_vmscan_") and name != "mm_vmscan_kswapd_wake":
            self.passes.episode_event(tid, name)
        elif name == "kvm_mmu_zap_all_fast":
            vm = self.registry.vm_of(task, t)
            rows.add(1, t_ns=t, line=line, event=EVENT_CODE["zap_all"], vm=vm)
            self._observe("zap_all_fast", vm)
        elif name == "kvm_unmap_hva_range":
            self._unmap(rows, t, line, int(values[0]), int(values[1]))
        elif name in ("kvm_mmu_get_page", "kvm_mmu_prepare_zap_page"):
            _gfn, level, direct, created = values
            vm = self.registry.vm_of(task, t)
            what = (
                "sp_zapped"
                if name == "kvm_mmu_prepare_zap_page"
                else ("sp_new" if created else "sp_existing")
            )
            self._observe(f"{what}_l{level}", vm)
            if not direct:
                self._observe("sp_indirect", vm)

    def _observe(self, key: str, vm: int) -> None:
        counts = self.report.observed.setdefault("_by_vm", {}).setdefault(vm, Counter())
        counts[key] += 1

    def _unmap(self, rows: _Rows, t: int, line: int, start: int, end: int) -> None:
        hits = []
        for cfg in self.registry.configs:
            for s in cfg.slots:
                if s.hva_start is None:
                    continue
                lo, hi = max(start, s.hva_start), min(end, s.hva_start + s.slot.size)
                if lo < hi:
                    hits.append((cfg, s, lo, hi))
        if len({h[0].name for h in hits}) != 1:
            reason = "outside every configured memslot" if not hits else "in several VMs' memslots"
            self.report.skipped[f"kvm_unmap_hva_range {reason} (kept as observed)"] += 1
            self.report.observed["unplaced_unmaps"] = (
                self.report.observed.get("unplaced_unmaps", 0) + 1
            )
            return
        cfg = hits[0][0]
        task = Task(cfg.name, cfg.threads[0] if cfg.threads else 0, cfg.tgid)
        vm = self.registry.vm_of(task, t)
        for _, s, lo, hi in hits:
            rows.add(
                1,
                t_ns=t,
                line=line,
                event=EVENT_CODE["unmap"],
                vm=vm,
                gpa=s.slot.gpa_start + (lo - s.hva_start),  # type: ignore[operator]
                len=hi - lo,
            )

    # -- ordering ---------------------------------------------------------------------
    def _emit(self, rows: _Rows, *, final: bool) -> dict[str, np.ndarray]:
        for p in self.passes.take(final=final):
            self._pass_row(rows, p)
        cols = rows.take()
        if self.pending is not None:
            cols = {k: np.concatenate([self.pending[k], cols[k]]) for k in cols}
            self.pending = None
        t, line = cols["t_ns"], cols["line"]
        # Rows come nearly in order (the fast path's in line order, a few others after):
        # sort only when they are not.
        if len(t) > 1 and not (
            np.all((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (line[1:] >= line[:-1])))
        ):
            order = np.lexsort((line, t))
            cols = {k: v[order] for k, v in cols.items()}
        hold = None if final else self.passes.earliest_open()
        if hold is not None:
            cut = int(np.searchsorted(cols["t_ns"], hold, side="left"))
            self.pending = {k: v[cut:] for k, v in cols.items()}
            cols = {k: v[:cut] for k, v in cols.items()}
        t = cols["t_ns"]
        if len(t):
            behind = t < self.last_t
            if behind.any():
                self.report.skipped["out-of-order line (time moved up to the previous line's)"] += (
                    int(behind.sum())
                )
                t = np.maximum.accumulate(np.maximum(t, self.last_t))
                cols["t_ns"] = t
            self.last_t = int(t[-1])
            if self.info.first_t_ns is None:
                self.info.first_t_ns = int(t[0])
            self.info.last_t_ns = int(t[-1])
        return cols

    def _pass_row(self, rows: _Rows, p: Pass) -> None:
        guesses = self.report.observed.setdefault("guesses", Counter())
        if p.guessed_source:
            guesses["pass source taken as direct"] += 1
        if p.guessed_priority:
            guesses["pass priority taken as 12"] += 1
        rows.add(
            1,
            t_ns=p.t_ns,
            line=p.line,
            event=EVENT_CODE["reclaim"],
            source=SOURCE_CODE[p.source],
            priority=p.priority,
            nid=p.nid,
        )

    def rows(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield the file's trace rows, block by block, in time order."""
        for prepared in _prepared_blocks(self.path, self.sha):
            yield self.block_rows(prepared)
        yield self._emit(_Rows(), final=True)
        self.info.sha256 = self.sha.hexdigest()
        self.info.layout = self.layout or "unknown"
        self.info.fault_codes = self.fault_codes
        self.report.observed.setdefault("kvm_shrinker_scans", []).extend(
            {
                "t_ns": s.t_ns,
                "nr_deferred": s.nr_deferred,
                "total_scan": s.total_scan,
                "freed": s.freed,
            }
            for s in self.passes.kvm_scans
        )


def _spool_stdin(folder: Path) -> Path:
    """Copy standard input to a file, so that it can be read twice (access-source scan)."""
    import shutil
    import sys

    fd, name = tempfile.mkstemp(prefix=".replay-stdin-", suffix=".log", dir=folder)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return Path(name)


def _scan_for_page_faults(path: str) -> bool:
    """Whether a log holds a kvm_page_fault line (plain files mapped, compressed ones read)."""
    import mmap

    with Path(path).open("rb") as fh:
        if not codec_of(fh.read(4)):
            if os.fstat(fh.fileno()).st_size == 0:
                return False
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return m.find(b"kvm_page_fault: ") >= 0
    return any(b"kvm_page_fault: " in b.data for b in read_blocks(path))


def choose_access_source(paths: list[str], asked: str) -> str:
    """The event that marks a guest fault.

    kvm_page_fault when any log has it, else kvm_mmu_spte_requested: one per fault either
    way, so using both would count every fault twice.
    """
    if asked != "auto":
        return asked
    for p in paths:
        try:
            if _scan_for_page_faults(p):
                return "kvm_page_fault"
        except OSError:
            continue  # the conversion itself reports the unreadable file
    return "kvm_mmu_spte_requested"


def _check_inputs(paths: list[str]) -> None:
    if paths.count("-") > 1:
        raise LogFormatError("- (standard input) can be given once")
    for p in paths:
        if p == "-":
            continue
        path = Path(p)
        if not path.exists():
            raise LogFormatError(f"log {p} does not exist")
        if path.is_dir():
            raise LogFormatError(f"log {p} is a folder; give a text log file")
        if path.stat().st_size == 0:
            raise LogFormatError(f"log {p} is empty; nothing to convert")


def convert_logs(
    inputs: list[str],
    output: Path,
    options: ConvertOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert text logs of one host into a schema-v1 trace at ``output`` (written atomically)."""
    from replay.atomic import check_output_path

    options = options or ConvertOptions()
    if options.fault_codes not in FAULT_CODES:
        raise ReplayError(f"--fault-codes {options.fault_codes!r}: use auto, vmx or svm")
    if options.access_source not in ACCESS_SOURCES:
        raise ReplayError(
            f"--access-source {options.access_source!r}: use {', '.join(ACCESS_SOURCES)}"
        )
    if options.layout is not None and options.layout not in LAYOUTS:
        raise ReplayError(f"--format {options.layout!r}: use {', '.join(LAYOUTS)}")
    if not inputs:
        raise LogFormatError("give at least one log file (or - for standard input)")
    _check_inputs(inputs)
    check_output_path(output, "trace")
    configs = load_vm_config(options.vm_config, options.mmu) if options.vm_config else []
    report = ConvertReport()
    registry = VmRegistry(configs, options.mmu or "tdp_mmu")
    with tempfile.TemporaryDirectory(prefix=".replay-convert-", dir=output.parent) as tmp_name:
        tmp = Path(tmp_name)
        paths = [str(_spool_stdin(tmp)) if p == "-" else p for p in inputs]
        report.access_source = choose_access_source(paths, options.access_source)
        converters = [
            _FileConverter(p, report, registry, options, report.access_source, i)
            for i, p in enumerate(paths)
        ]
        for conv, shown in zip(converters, inputs, strict=True):
            conv.name = "<stdin>" if shown == "-" else shown
            conv.info.path = conv.name
        if len(converters) == 1:
            chunks: Iterator[dict[str, np.ndarray]] = converters[0].rows()
            _write(
                output, _counted(chunks, report, progress), registry, report, options, converters
            )
        else:
            spools = [
                _spool(conv, tmp / f"{i}.npz.parquet", report, progress)
                for i, conv in enumerate(converters)
            ]
            _write(output, _merged(spools, registry), registry, report, options, converters)
    return report


def _counted(
    chunks: Iterator[dict[str, np.ndarray]],
    report: ConvertReport,
    progress: Callable[[int], None] | None,
) -> Iterator[dict[str, np.ndarray]]:
    for cols in chunks:
        if progress is not None:
            progress(report.lines)
        yield cols


def _spool(
    conv: _FileConverter, path: Path, report: ConvertReport, progress: Callable[[int], None] | None
) -> Path:
    """One file's rows, in time order, in a temporary Parquet file (int64 columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64()) for c in SPOOL_COLUMNS])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for cols in _counted(conv.rows(), report, progress):
            if len(cols["t_ns"]):
                writer.write_table(pa.table({c: cols[c] for c in SPOOL_COLUMNS}, schema=schema))
    return path


def _merged(spools: list[Path], registry: VmRegistry) -> Iterator[dict[str, np.ndarray]]:
    """Rows of several time-ordered spools, merged in time order (ties: file order)."""
    import pyarrow.parquet as pq

    readers = [pq.ParquetFile(p).iter_batches(batch_size=1 << 18) for p in spools]
    buffers: list[dict[str, np.ndarray] | None] = [None] * len(readers)
    done = [False] * len(readers)

    def refill(i: int) -> None:
        if buffers[i] is None or not len(buffers[i]["t_ns"]):  # type: ignore[index]
            batch = next(readers[i], None)
            if batch is None:
                done[i] = True
                buffers[i] = None
            else:
                cols = {c: batch.column(c).to_numpy() for c in SPOOL_COLUMNS}
                cols["file"] = np.full(batch.num_rows, i, dtype=np.int64)
                buffers[i] = cols

    for i in range(len(readers)):
        refill(i)
    while True:
        live = [i for i in range(len(readers)) if buffers[i] is not None]
        if not live:
            return
        # Everything up to the smallest of the buffers' last times can be merged now.
        watermark = min(int(buffers[i]["t_ns"][-1]) for i in live)  # type: ignore[index]
        parts = []
        for i in live:
            buf = buffers[i]
            assert buf is not None
            cut = int(np.searchsorted(buf["t_ns"], watermark, side="right"))
            parts.append({k: v[:cut] for k, v in buf.items()})
            buffers[i] = {k: v[cut:] for k, v in buf.items()}
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.lexsort((cols["line"], cols["file"], cols["t_ns"]))
        yield {k: v[order] for k, v in cols.items() if k != "file"}
        for i in live:
            refill(i)


def _write(
    output: Path,
    chunks: Iterator[dict[str, np.ndarray]],
    registry: VmRegistry,
    report: ConvertReport,
    options: ConvertOptions,
    converters: list[_FileConverter],
) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from replay.trace.writer import build_table, write_trace

    rows_written = 0
    with write_trace(output) as sink:  # the footer is known at the end: set before closing
        remap: np.ndarray | None = None
        for cols in chunks:
            n = len(cols["t_ns"])
            if not n:
                continue
            if remap is None or len(remap) < len(registry.vms):
                # Provisional VM indices to ids in order of first appearance; stable once made,
                # because a VM first seen later has a later first time.
                remap = np.argsort(np.array(registry.final_order(), dtype=np.int64))
            values, valid = _trace_columns(cols, remap)
            sink.write(build_table(n, values, valid))
            rows_written += n
            for kind, code in EVENT_CODE.items():
                report.rows[kind] += int((cols["event"] == code).sum())
        for conv in converters:
            report.files.append(conv.info)
        if rows_written == 0:
            raise LogFormatError(_nothing_usable(report))
        if not report.rows["access"] and registry.vms:
            raise LogFormatError(
                f"no guest fault in {report.lines:,} lines ({_seen(report)}){_wrap_hint(report)}; "
                "replay run needs "
                "kvm:kvm_page_fault or kvmmmu:kvm_mmu_spte_requested lines"
            )
        if not registry.vms:
            raise LogFormatError(
                f"{report.rows['reclaim']:,} reclaim passes but no KVM event in "
                f"{report.lines:,} lines, so no VM to replay; convert this log together with "
                "the same host's kvm log (replay convert vmscan.txt kvm.txt -o trace.parquet)"
            )
        specs, notes = registry.specs(options.mmu)
        report.vms = [vm.to_json() for vm in specs]
        report.warnings += notes + _warnings(report, registry, converters)
        try:
            tool = version("kvm-mmu-replay")
        except PackageNotFoundError:  # pragma: no cover - a bare checkout
            tool = "unknown"
        sink.meta = TraceMeta(
            vms=tuple(specs),
            coverage="faults-only",
            provenance={
                "generator": "replay convert",
                "generator_version": tool,
                "files": [
                    {"path": f.path, "sha256": f.sha256, "layout": f.layout, "lines": f.lines}
                    for f in report.files
                ],
                "access_source": report.access_source,
                "vm_identity": sorted(registry.identity),
                "inferred": notes,
                "options": {
                    "format": options.layout,
                    "fault_codes": options.fault_codes,
                    "vm_config": None if options.vm_config is None else str(options.vm_config),
                    "mmu": options.mmu,
                },
            },
            observed=_observed(report, registry),
        )


def _trace_columns(
    cols: dict[str, np.ndarray], remap: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | bool]]:
    event = cols["event"]
    has_vm = cols["vm"] >= 0
    vm = remap[np.maximum(cols["vm"], 0)] if len(remap) else np.zeros(len(event), np.int64)
    vm = np.where(has_vm, vm, 0)
    values = {
        "t_ns": cols["t_ns"],
        "event": event,
        "vm": vm.astype(np.uint16),
        "vcpu": np.maximum(cols["vcpu"], 0).astype(np.uint16),
        "gpa": cols["gpa"].astype(np.uint64),
        "len": np.maximum(cols["len"], 0).astype(np.uint64),
        "op": np.maximum(cols["op"], 0),
        "source": np.maximum(cols["source"], 0),
        "priority": np.maximum(cols["priority"], 0).astype(np.int8),
        "nid": np.maximum(cols["nid"], 0).astype(np.int16),
    }
    access = event == EVENT_CODE["access"]
    unmap = event == EVENT_CODE["unmap"]
    reclaim = event == EVENT_CODE["reclaim"]
    valid: dict[str, np.ndarray | bool] = {
        "t_ns": True,
        "event": True,
        "vm": has_vm,
        "vcpu": access,
        "gpa": access | unmap,
        "len": unmap,
        "op": access,
        "source": reclaim,
        "priority": reclaim,
        "nid": reclaim,
        "nr_to_scan": False,
    }
    return values, valid


def _seen(report: ConvertReport) -> str:
    """What a log held, shortly: rows written, malformed and unknown lines."""
    parts = [f"{k} {v:,}" for k, v in report.rows.items() if v]
    parts += [f"{k} {v:,}" for k, v in report.skipped.most_common(2)]
    parts += [f"unknown {k} {v:,}" for k, v in report.unknown_events.most_common(2)]
    return ", ".join(parts) or "nothing"


def _wrap_hint(report: ConvertReport) -> str:
    """A hint when event lines look broken in two (a mail client wraps long lines)."""
    cut = sum(v for k, v in report.skipped.items() if k.startswith("unreadable"))
    if cut and report.skipped["malformed line"] >= cut // 2:
        return " (lines broken in two, as a mail client wraps them? join them back)"
    return ""


def _nothing_usable(report: ConvertReport) -> str:
    seen = []
    if report.unknown_events:
        top = ", ".join(f"{k} {v:,}" for k, v in report.unknown_events.most_common(3))
        seen.append(f"unknown events ({top})")
    if report.unused_events:
        top = ", ".join(f"{k} {v:,}" for k, v in report.unused_events.most_common(3))
        seen.append(f"events a replay does not use ({top})")
    if report.skipped:
        top = ", ".join(f"{k} {v:,}" for k, v in report.skipped.most_common(3))
        seen.append(f"skipped lines ({top})")
    what = "; ".join(seen) or "no event lines"
    return (
        f"no event a replay can use in {report.lines:,} lines: {what}{_wrap_hint(report)}; capture "
        "kvm:kvm_page_fault (or kvmmmu:kvm_mmu_spte_requested) and vmscan:mm_shrink_slab_start/end"
    )


def _warnings(
    report: ConvertReport, registry: VmRegistry, converters: list[_FileConverter]
) -> list[str]:
    out = []
    if "single" in registry.identity and report.rows["access"]:
        out.append(
            "the log does not tell VMs apart (no tgid column): all guest events are one VM; "
            "record with ftrace's record-tgid option or perf script -F +pid, or give --vm-config"
        )
    if registry.unconfigured:
        out.append(
            "events from tasks --vm-config does not name: "
            + ", ".join(sorted(registry.unconfigured)[:5])
        )
    by_vm = report.observed.get("_by_vm", {})
    if any(c.get("sp_indirect") for c in by_vm.values()):
        out.append(
            "kvm_mmu_get_page roles without 'direct': the host used shadow paging (no EPT/NPT), "
            "which v1 replays only as an approximation (faulting addresses taken as guest "
            "physical, MMU modes tdp_mmu/shadow_direct)"
        )
    layouts = {c.info.layout for c in converters}
    if len(converters) > 1 and len(layouts) > 1:
        out.append(
            f"logs of different layouts merged ({', '.join(sorted(layouts))}): their clocks may "
            "differ (perf's runs at an offset from the tracefs clock); events were merged by "
            "their time stamps as printed"
        )
    if report.lost_events:
        out.append(f"the kernel lost {report.lost_events:,} events (ring buffer overruns)")
    guesses = report.observed.get("guesses", {})
    for what, n in guesses.items():
        out.append(f"{n:,} reclaim passes: {what}")
    skipped_spte = sum(
        v for k, v in report.skipped.items() if k.startswith("kvm_mmu_spte_requested")
    )
    if skipped_spte:
        out.append(
            f"{skipped_spte:,} kvm_mmu_spte_requested lines not used: kvm_page_fault is the "
            "access source (one per fault; using both would count faults twice)"
        )
    return out


def _observed(report: ConvertReport, registry: VmRegistry) -> dict[str, Any]:
    """The footer's ``observed`` block: what the kernel's own events said."""
    order = registry.final_order()
    new_id = {prov: i for i, prov in enumerate(order)}
    per_vm = {}
    for prov, counts in sorted(report.observed.get("_by_vm", {}).items()):
        per_vm[str(new_id[prov])] = dict(sorted(counts.items()))
    scans = report.observed.get("kvm_shrinker_scans", [])
    return {
        "per_vm": per_vm,
        "kvm_shrinker_scans": {
            "calls": len(scans),
            "total_scan": sum(s["total_scan"] for s in scans),
            "freed": sum(s["freed"] or 0 for s in scans),
        },
        "unplaced_unmaps": report.observed.get("unplaced_unmaps", 0),
        "lost_events": report.lost_events,
        "guesses": dict(report.observed.get("guesses", {})),
    }
