"""One log file's lines into trace rows, a block at a time, in time order.

Per block (already split by :mod:`.prepare`): the lines the fast split left are read with a
regular expression (:func:`.layout.slow_line`); each event column is counted, and the guest
faults of the fast events become rows with numpy; every other used event is dispatched line by
line, in line order, because reclaim passes (:mod:`.passes`) depend on the order of begin,
shrinker and end lines. Rows wait while a reclaim pass that may precede them is still open.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.layout import LAYOUTS, Task, event_name, lost_count, parse_task, slow_line
from replay.convert.passes import Pass, PassBuilder, ShrinkStart
from replay.convert.payloads import FAST_FORMATS, KNOWN_UNUSED, USED, parse_payload
from replay.convert.prepare import prepared_blocks
from replay.convert.report import EXAMPLES, FileReport
from replay.convert.rows import Rows
from replay.convert.source import LogFormatError
from replay.errors import ReplayError
from replay.trace.schema import EVENT_CODE, OP_CODE, SOURCE_CODE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from replay.convert.layout import SlowLine
    from replay.convert.lines import LineBlock
    from replay.convert.options import ConvertOptions
    from replay.convert.prepare import Prepared
    from replay.convert.report import ConvertReport
    from replay.convert.vms import VmRegistry

LineEvent = tuple[int, int, str, str, str]
"""A used event read line by line: line number, time (ns), event name, task column, payload."""


class StrictError(ReplayError):
    """``--strict``: a line could not be read."""


class FileConverter:
    """Reads one log file and produces its trace rows in time order."""

    def __init__(
        self,
        path: str,
        report: ConvertReport,
        registry: VmRegistry,
        options: ConvertOptions,
        access_source: str,
    ) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self.report = report
        self.registry = registry
        self.options = options
        self.access_source = access_source
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

    def shown_as(self, name: str) -> None:
        """Name the file in messages and the report as the user gave it (``-`` is stdin)."""
        self.name = "<stdin>" if name == "-" else name
        self.info.path = self.name

    def rows(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield the file's trace rows, block by block, in time order."""
        for prepared in prepared_blocks(self.path, self.sha):
            yield self.block_rows(prepared)
        yield self._emit(Rows(), final=True)
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

    # -- per line ---------------------------------------------------------------------
    def _where(self, line: int) -> str:
        return f"{self.name}:{line}"

    def _bad(self, line: int, text: str, reason: str) -> None:
        if line == self.cut_line:
            reason = "truncated last line"
        if self.options.strict:
            raise StrictError(f"{self._where(line)}: {reason}: {text[:160]} (--strict)")
        self.report.malformed(self._where(line), text, reason)

    def _task(self, head: str) -> Task | None:
        if head not in self.tasks:
            task = parse_task(head, self.layout or "ftrace")
            if task is None and self.layout is None:
                for layout in LAYOUTS:
                    task = parse_task(head, layout)
                    if task is not None:
                        break
            self.tasks[head] = task
        return self.tasks[head]

    def _task_index(self, task: Task) -> int:
        idx = self.task_ids.get(task)
        if idx is None:
            idx = self.task_ids[task] = len(self.task_ids)
        return idx

    def _note_layout(self, perf_style: bool, line: int) -> None:
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

    def _used(self, name: str, n: int) -> bool:
        """Count ``n`` lines of an event; whether a replay uses it."""
        report = self.report
        if name not in USED:
            bucket = report.unused_events if name in KNOWN_UNUSED else report.unknown_events
            bucket[name] += n
            return False
        report.events[name] += n
        return True

    # -- per block --------------------------------------------------------------------
    def block_rows(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """The rows of one block that are ready, in time order (see :meth:`_emit`)."""
        blk = prepared.blk
        self._start_block(blk, prepared.unterminated)
        slow = self._slow_lines(blk)
        rows = Rows()
        # Events read line by line, dispatched in line order below: reclaim passes depend on
        # the order of begin, shrinker and end lines.
        ordered = self._fast_columns(prepared, rows)
        for line, got in slow:
            name, perf_style = event_name(got.event)
            self._note_layout(perf_style, line)
            if self._used(name, 1):
                ordered.append((line, got.t_ns, name, got.head, got.payload))
        ordered.sort(key=lambda e: e[0])
        for line, t, name, head, payload in ordered:
            self._slow_event(rows, name, t, line, head, payload)
        return self._emit(rows, final=False)

    def _start_block(self, blk: LineBlock, unterminated: bool) -> None:
        if int(blk.line_no[0]) == 1 and self.layout is None:
            opening = blk.data[:64].lstrip()
            if opening.startswith(b"cpus="):
                self.layout = "trace-cmd"
        self.info.lines += len(blk)
        if unterminated:
            self.cut_line = int(blk.line_no[-1])

    def _slow_lines(self, blk: LineBlock) -> list[tuple[int, SlowLine]]:
        """The event lines the fast split left (headers, notices, odd layouts, damage).

        The others are counted (or, malformed, quoted) here.
        """
        report = self.report
        events = []
        for i in np.flatnonzero(~blk.ok).tolist():
            text = blk.text(i)
            line = int(blk.line_no[i])
            got = slow_line(text)
            if not isinstance(got, str):
                events.append((line, got))
            elif got == "lost":
                report.lost_events += lost_count(text)
                report.skipped["lost-events notice"] += 1
            elif got == "malformed":
                self._bad(line, text, "malformed line")
            else:
                report.skipped[f"{got} line"] += 1
        return events

    def _fast_columns(self, prepared: Prepared, rows: Rows) -> list[LineEvent]:
        """Count each event column; the fast events' parsed lines become rows here.

        Returns the used events left to read line by line.
        """
        blk = prepared.blk
        ordered: list[LineEvent] = []
        for eid, column in enumerate(blk.events):
            sel = prepared.selections[eid]
            if not len(sel):
                continue
            name, perf_style = event_name(column)
            self._note_layout(perf_style, int(blk.line_no[sel[0]]))
            if not self._used(name, len(sel)):
                continue
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
        return ordered

    # -- guest faults -----------------------------------------------------------------
    def _fast_event(
        self, rows: Rows, blk: LineBlock, name: str, sel: np.ndarray, values: list[np.ndarray]
    ) -> None:
        """Rows of the guest faults of one fast event column (lines ``sel``), with numpy."""
        if not len(sel):
            return
        if name != self.access_source:
            self.report.skipped[f"{name} (the access source is {self.access_source})"] += len(sel)
            return
        heads = blk.head_id[sel]
        t = blk.t_ns[sel]
        lines = blk.line_no[sel]
        vm_of_head, tasks = self._head_vms(blk, heads, t, lines)
        vm = vm_of_head[heads]
        keep = vm >= 0
        if name == "kvm_page_fault":
            vcpu = values[0].astype(np.int64)
            # Every (task, vcpu field) pair once, for the registry's vCPU table.
            top = int(vcpu.max(initial=0)) + 1
            pairs = np.flatnonzero(np.bincount(heads[keep] * top + vcpu[keep]))
            for h, c in zip((pairs // top).tolist(), (pairs % top).tolist(), strict=True):
                self.registry.vcpu_of(int(vm_of_head[h]), tasks[h], c)
            gpa = values[1]
            op = self._ops(values[2])
        else:
            vcpu_of_head = np.full(len(blk.heads), -1, dtype=np.int64)
            for h, task in tasks.items():
                vcpu_of_head[h] = self.registry.vcpu_of(int(vm_of_head[h]), task, None)
            vcpu = vcpu_of_head[heads]
            gpa = values[0] << np.uint64(12)
            op = np.full(len(sel), OP_CODE["read"], dtype=np.int64)
        if keep.all():
            self._accesses(rows, t, lines, vm, vcpu, gpa, op)
        else:
            self._accesses(rows, t[keep], lines[keep], vm[keep], vcpu[keep], gpa[keep], op[keep])

    def _head_vms(
        self, blk: LineBlock, heads: np.ndarray, t: np.ndarray, lines: np.ndarray
    ) -> tuple[np.ndarray, dict[int, Task]]:
        """The VM of each task column (-1 where unreadable), and the readable tasks.

        The block's few distinct tasks are resolved in Python, in order of their first line
        (the registry numbers VMs as they come); every line then maps through the table.
        """
        n_heads = len(blk.heads)
        first_row = np.full(n_heads, len(heads), dtype=np.int64)
        first_row[heads[::-1]] = np.arange(len(heads) - 1, -1, -1)
        vm_of_head = np.full(n_heads, -1, dtype=np.int64)
        tasks: dict[int, Task] = {}
        for h in np.argsort(first_row, kind="stable").tolist():
            j = int(first_row[h])
            if j >= len(heads):
                continue  # a task with no line of this event
            task = self._task(blk.heads[h])
            if task is None:
                bad = np.flatnonzero(heads == h)
                for k in bad[:EXAMPLES].tolist():
                    self._bad(int(lines[k]), blk.heads[h], "unreadable task column")
                self.report.skipped["unreadable task column"] += max(0, len(bad) - EXAMPLES)
                continue
            tasks[h] = task
            vm_of_head[h] = self.registry.vm_of(task, int(t[j]))
        return vm_of_head, tasks

    def _ops(self, error_code: np.ndarray) -> np.ndarray:
        """Access types (read / write / exec) from fault error codes.

        The bits are described in traces/logs/README.md, "Fault error codes".
        """
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
        rows: Rows,
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

    def _slow_access(
        self, rows: Rows, name: str, t: int, line: int, task: Task, values: tuple[Any, ...]
    ) -> None:
        """A guest fault the fast path could not read, as a row."""
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

    # -- other events -----------------------------------------------------------------
    def _slow_event(
        self, rows: Rows, name: str, t: int, line: int, head: str, payload: str
    ) -> None:
        """One used event read line by line."""
        values = parse_payload(name, payload)
        if values is None:
            self._bad(line, payload, f"unreadable {name} payload")
            return
        task = self._task(head)
        if task is None:
            self._bad(line, head, "unreadable task column")
            return
        if name in FAST_FORMATS:
            self._slow_access(rows, name, t, line, task, values)
            return
        tid = self._task_index(task)
        if name == "mm_shrink_slab_start":
            sname, shrinker, nid, nr, _items, _delta, total, prio = values
            start = ShrinkStart(
                task=tid,
                comm=task.comm,
                t_ns=t,
                line=line,
                name=str(sname),
                shrinker=int(shrinker),
                nid=int(nid),
                nr_deferred=int(nr),
                total_scan=int(total),
                priority=prio,
            )
            self.passes.shrink_start(start)
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
            self._shadow_page(name, self.registry.vm_of(task, t), values)

    def _shadow_page(self, name: str, vm: int, values: tuple[Any, ...]) -> None:
        """Count a shadow page the kernel made, found or zapped (the footer's ``observed``)."""
        _gfn, level, direct, created = values
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

    def _unmap(self, rows: Rows, t: int, line: int, start: int, end: int) -> None:
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
    def _emit(self, rows: Rows, *, final: bool) -> dict[str, np.ndarray]:
        """The rows that are ready, in time order; rows an open pass may precede wait."""
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
        self._clock(cols)
        return cols

    def _clock(self, cols: dict[str, np.ndarray]) -> None:
        """Keep time from going backwards across blocks, and note the file's time span."""
        t = cols["t_ns"]
        if not len(t):
            return
        behind = t < self.last_t
        if behind.any():
            self.report.skipped["out-of-order line (time moved up to the previous line's)"] += int(
                behind.sum()
            )
            t = np.maximum.accumulate(np.maximum(t, self.last_t))
            cols["t_ns"] = t
        self.last_t = int(t[-1])
        if self.info.first_t_ns is None:
            self.info.first_t_ns = int(t[0])
        self.info.last_t_ns = int(t[-1])

    def _pass_row(self, rows: Rows, p: Pass) -> None:
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
