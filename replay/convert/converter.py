"""One log file's lines into trace rows, a block at a time, in time order.

Per block (already split by :mod:`.prepare`): the lines the fast split left are read with a
regular expression (:func:`.layout.slow_line`); each event column is counted, and the guest
faults of the fast events become rows with numpy; every other used event is dispatched line by
line, in line order, because reclaim passes (:mod:`.passes`) depend on the order of begin,
shrinker and end lines. Rows wait while a reclaim pass that may precede them is still open.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.damon import DAMON_USED, DamonPlacer, task_monitor
from replay.convert.damontext import DamonLines
from replay.convert.kernelrows import KernelRows
from replay.convert.layout import LAYOUTS, Task, event_name, lost_count, parse_task, slow_line
from replay.convert.passes import DEF_PRIORITY, PassBuilder, ShrinkStart
from replay.convert.payloads import FAST_FORMATS, KNOWN_UNUSED, USED, access_ops, parse_payload
from replay.convert.prepare import prepared_blocks
from replay.convert.report import EXAMPLES, FileReport
from replay.convert.rows import Rows, joined
from replay.convert.source import MAX_LINE, LogFormatError
from replay.convert.timeorder import INT64_MAX, OUT_OF_RANGE, TimeOrder
from replay.convert.vms import MAX_VCPUS
from replay.errors import ReplayError
from replay.trace.schema import EVENT_CODE, OP_CODE, PAGE_SHIFT

if TYPE_CHECKING:
    from collections.abc import Iterator

    from replay.convert.layout import SlowLine
    from replay.convert.lines import LineBlock
    from replay.convert.options import ConvertOptions
    from replay.convert.prepare import Prepared
    from replay.convert.report import ConvertReport
    from replay.convert.vms import VmRegistry

REGION = EVENT_CODE["region"]
VCPU_RANGE = f"vcpu field past {MAX_VCPUS - 1} (a trace holds vCPUs 0..{MAX_VCPUS - 1})"
GPA_RANGE = "fault address beyond what the VM's paging maps (2**52, or its root_level's reach)"
NID_MAX = 0x7FFF
"""Largest NUMA node a trace holds (its ``nid`` column is int16; kernels have at most 1024)."""
PENDING_MAX = 1 << 21
"""Rows held back for the reorder window at most (2 Mi rows, under 200 MiB of columns)."""
LineEvent = tuple[int, int, str, str, str]
"""A used event read line by line: line number, time (ns), event name, task column, payload."""


class StrictError(ReplayError):
    """``--strict``: a line could not be read."""


class FileConverter(KernelRows):
    """Reads one log file and produces its trace rows in time order."""

    def __init__(
        self,
        path: str,
        report: ConvertReport,
        registry: VmRegistry,
        options: ConvertOptions,
        access_source: str,
        damon: DamonPlacer | None = None,
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
        self.order = TimeOrder()
        self.fault_codes: str | None = (
            None if options.fault_codes == "auto" else options.fault_codes
        )
        self.sha = hashlib.sha256()
        self.layouts_seen: dict[str, int] = {}
        self.cut_line = -1
        """Number of the log's last line when it has no newline (the capture stopped in it)."""
        if damon is None:  # a converter on its own: DAMON targets placed by the config alone
            damon = DamonPlacer(
                registry.configs, [(path, self.name)], registry, options.damon_intervals, report
            )
        self.damon = DamonLines(self.name, damon, report, self._bad)

    def shown_as(self, name: str) -> None:
        """Name the file in messages and the report as the user gave it (``-`` is stdin)."""
        self.name = self.damon.name = "<stdin>" if name == "-" else name
        self.info.path = self.name

    def rows(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield the file's trace rows, block by block, in time order."""
        for prepared in prepared_blocks(self.path, self.sha):
            yield self.block_rows(prepared)
        self.damon.finish()
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
        left_out = self._judge_time(blk, slow)
        if len(left_out):
            gone = set(left_out.tolist())
            slow = [(line, got) for line, got in slow if line not in gone]
        rows = Rows()
        # Events read line by line, dispatched in line order below: reclaim passes depend on
        # the order of begin, shrinker and end lines.
        ordered = self._fast_columns(prepared, rows, left_out)
        for line, got in slow:
            name, perf_style = event_name(got.event)
            self._note_layout(perf_style, line)
            if self._used(name, 1):
                if name in DAMON_USED:
                    mon = self.damon.monitor(self._monitor(got.head))
                    self.damon.add_line(line, got.t_ns, mon, name, got.payload)
                else:
                    ordered.append((line, got.t_ns, name, got.head, got.payload))
        ordered.sort(key=lambda e: e[0])
        for line, t, name, head, payload in ordered:
            self._slow_event(rows, name, t, line, head, payload)
        self.damon.flush(rows)
        return self._emit(rows, final=False)

    def _monitor(self, head: str) -> str:
        """The kdamond a DAMON line's task column names."""
        task = self._task(head)
        return head.strip() if task is None else task_monitor(task)

    def _damon_column(self, blk: LineBlock, name: str, sel: np.ndarray, fast: Any) -> None:
        """DAMON lines of one event column: numpy-read ones as columns, the rest one by one."""
        heads = blk.head_id[sel]
        lookup = np.zeros(len(blk.heads), dtype=np.int64)
        for h in np.unique(heads).tolist():
            lookup[h] = self.damon.monitor(self._monitor(blk.heads[h]))
        mon = lookup[heads]
        if fast is not None:
            values, good = fast
            at = sel[good]
            self.damon.add_columns(
                blk.line_no[at], blk.t_ns[at], mon[good], [v[good] for v in values]
            )
            sel, mon = sel[~good], mon[~good]
        for i, m in zip(sel.tolist(), mon.tolist(), strict=True):
            self.damon.add_line(int(blk.line_no[i]), int(blk.t_ns[i]), m, name, blk.payload(i))

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
                if got.t_ns > INT64_MAX:
                    self._bad(line, text, OUT_OF_RANGE)  # cannot be a trace's t_ns
                    continue
                events.append((line, got))
            elif got == "lost":
                report.lost_events += lost_count(text)
                report.skipped["lost-events notice"] += 1
            elif got == "malformed":
                self._bad(line, text, "malformed line")
            elif got == "memslot":
                # QEMU's kvm_set_user_memory (its log backend): the memslot table DAMON's
                # regions are placed with, read apart (.hostmap).
                report.events["kvm_set_user_memory"] += 1
            elif got == "long":
                self._bad(line, "", f"line longer than {MAX_LINE >> 20} MiB (skipped unread)")
            else:
                report.skipped[f"{got} line"] += 1
        return events

    def _judge_time(self, blk: LineBlock, slow: list[tuple[int, SlowLine]]) -> np.ndarray:
        """Judge the block's lines by their time stamps (:mod:`.timeorder`, issue 12 item 6).

        Returns the numbers of the block's lines to leave out; the others' rows are re-sorted.
        """
        at = np.flatnonzero(blk.ok)
        lines, t = blk.line_no[at], blk.t_ns[at]
        if slow:
            lines = np.concatenate([lines, np.array([ln for ln, _ in slow], dtype=np.int64)])
            t = np.concatenate([t, np.array([got.t_ns for _, got in slow], dtype=np.int64)])
            order = np.argsort(lines, kind="stable")
            lines, t = lines[order], t[order]
        verdict = self.order.judge(lines, t)
        self.report.reordered += verdict.reordered
        first = int(blk.line_no[0])
        for reason, bad in verdict.bad.items():
            for line in bad[:EXAMPLES].tolist():
                text = blk.text(line - first) if line >= first else "(an earlier block's line)"
                self._bad(line, text, reason)
            if len(bad) > EXAMPLES:
                self.report.skipped[reason] += len(bad) - EXAMPLES
        if len(verdict.retracted) and self.pending is not None:
            keep = ~np.isin(self.pending["line"], verdict.retracted)
            self.pending = {k: v[keep] for k, v in self.pending.items()}
        if not verdict.bad:
            return np.zeros(0, dtype=np.int64)
        out = np.concatenate(list(verdict.bad.values()))
        return np.sort(out[out >= first])

    def _fast_columns(
        self, prepared: Prepared, rows: Rows, left_out: np.ndarray
    ) -> list[LineEvent]:
        """Count each event column; the fast events' parsed lines become rows here.

        Lines ``left_out`` (for their time) are skipped. Returns the used events left to read
        line by line.
        """
        blk = prepared.blk
        ordered: list[LineEvent] = []
        for eid, column in enumerate(blk.events):
            sel = prepared.selections[eid]
            fast = prepared.fast.get(eid)
            if len(left_out) and len(sel):
                keep = ~np.isin(blk.line_no[sel], left_out)
                sel = sel[keep]
                if fast is not None:
                    fast = ([v[keep] for v in fast[0]], fast[1][keep])
            if not len(sel):
                continue
            name, perf_style = event_name(column)
            self._note_layout(perf_style, int(blk.line_no[sel[0]]))
            if not self._used(name, len(sel)):
                continue
            if name in DAMON_USED:
                self._damon_column(blk, name, sel, fast)
                continue
            if fast is not None:
                values, good = fast
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
        keep &= self._in_range(blk, sel, vm, values, name)
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
            vm_of_head[h] = self.registry.vm_of(task, int(t[j]), self._where(int(lines[j])))
        return vm_of_head, tasks

    def _in_range(
        self, blk: LineBlock, sel: np.ndarray, vm: np.ndarray, values: list[np.ndarray], name: str
    ) -> np.ndarray:
        """Which fault lines a trace can hold; the others are quoted and counted by reason.

        A vcpu field past 65534 or an address past what the VM's paging can map (2**52, or the
        root level a ``--vm-config`` gives) is a damaged line in an otherwise good log: it is
        skipped, never written into a trace its own reader would refuse (issue 12 item 4).
        """
        limit = self.registry.gpa_limits()[np.maximum(vm, 0)]
        if name == "kvm_page_fault":
            bad_vcpu = values[0] >= np.uint64(MAX_VCPUS)
            bad_gpa = values[1] >= limit
        else:
            bad_vcpu = np.zeros(len(sel), dtype=bool)
            bad_gpa = values[0] >= (limit >> np.uint64(PAGE_SHIFT))
        bad_gpa &= ~bad_vcpu
        for mask, reason in ((bad_vcpu, VCPU_RANGE), (bad_gpa, GPA_RANGE)):
            at = np.flatnonzero(mask & (vm >= 0))
            for k in at[:EXAMPLES].tolist():
                self._bad(int(blk.line_no[sel[k]]), blk.text(int(sel[k])), reason)
            if len(at) > EXAMPLES:
                self.report.skipped[reason] += len(at) - EXAMPLES
        ok: np.ndarray = ~(bad_vcpu | bad_gpa)
        return ok

    def _ops(self, error_code: np.ndarray) -> np.ndarray:
        """Access types from fault error codes; ``auto`` fault codes are told on first sight."""
        ops, self.fault_codes = access_ops(error_code, self.fault_codes)
        return ops

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
        vm = self.registry.vm_of(task, t, self._where(line))
        limit = int(self.registry.gpa_limits()[vm])
        if name == "kvm_page_fault":
            vcpu_field, address, code = values
            if vcpu_field is not None and not 0 <= vcpu_field < MAX_VCPUS:
                self._bad(line, f"vcpu {vcpu_field}", VCPU_RANGE)
                return
            if not 0 <= address < limit:
                self._bad(line, f"address {address:#x}", GPA_RANGE)
                return
            if not 0 <= code < 1 << 64:
                self._bad(line, f"error_code {code:#x}", "error code past 64 bits")
                return
            vcpu = self.registry.vcpu_of(vm, task, vcpu_field)
            op = self._ops(np.array([code], dtype=np.uint64))
            gpa = np.array([address], dtype=np.uint64)
        else:
            if not 0 <= values[0] < limit >> PAGE_SHIFT:
                self._bad(line, f"gfn {values[0]:#x}", GPA_RANGE)
                return
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
            if not 0 <= nid <= NID_MAX or not (prio is None or 0 <= prio <= DEF_PRIORITY):
                # A trace's nid is int16 and a priority 0..12: garbage is not wrapped or clamped.
                self._bad(line, payload, f"nid past 0..{NID_MAX} or priority past 0..12")
                return
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
            vm = self.registry.vm_of(task, t, self._where(line))
            rows.add(1, t_ns=t, line=line, event=EVENT_CODE["zap_all"], vm=vm)
            self._observe("zap_all_fast", vm)
        elif name == "kvm_unmap_hva_range":
            self._unmap(rows, t, line, int(values[0]), int(values[1]))
        elif name in ("kvm_mmu_get_page", "kvm_mmu_prepare_zap_page"):
            self._shadow_page(name, self.registry.vm_of(task, t, self._where(line)), values)

    # -- ordering ---------------------------------------------------------------------
    def _emit(self, rows: Rows, *, final: bool) -> dict[str, np.ndarray]:
        """The rows that are ready, in time order; rows an open pass may precede wait."""
        for p in self.passes.take(final=final):
            self._pass_row(rows, p)
        cols = rows.take()
        if self.pending is not None:
            cols = joined(self.pending, cols)
            self.pending = None
        t, line = cols["t_ns"], cols["line"]
        # Rows come nearly in order (the fast path's in line order, a few others after):
        # sort only when they are not.
        if len(t) > 1 and not (
            np.all((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (line[1:] >= line[:-1])))
        ):
            order = np.lexsort((line, t))
            cols = {k: v[order] for k, v in cols.items()}
        if not final:
            cut = self._ready(cols["t_ns"])
            self.pending = {k: v[cut:] for k, v in cols.items()}
            cols = {k: v[:cut] for k, v in cols.items()}
        self._span(cols)
        return cols

    def _ready(self, t: np.ndarray) -> int:
        """How many of the sorted rows ``t`` can be written: none a line to come may precede.

        Rows wait while within :data:`.timeorder.WINDOW_NS` of the latest line (a later line
        may interleave before them) or after an open reclaim pass's start. At most
        :data:`PENDING_MAX` rows wait for the window: past that, lines that would go before
        written rows are left out as behind (:mod:`.timeorder`), never moved.
        """
        window = self.order.cut()
        cut = 0 if window is None else int(np.searchsorted(t, window, side="left"))
        cut = max(cut, len(t) - PENDING_MAX)
        hold = self.passes.earliest_open()
        if hold is not None:
            cut = min(cut, int(np.searchsorted(t, hold, side="left")))
        if cut:
            self.order.floor = max(self.order.floor, int(t[cut - 1]))
        return cut

    def _span(self, cols: dict[str, np.ndarray]) -> None:
        """Note the file's time span (rows come in time order)."""
        t = cols["t_ns"]
        if not len(t):
            return
        self.info.region_rows += int((cols["event"] == REGION).sum())
        self.info.access_rows += int((cols["event"] == EVENT_CODE["access"]).sum())
        if self.info.first_t_ns is None:
            self.info.first_t_ns = int(t[0])
        self.info.last_t_ns = int(t[-1])
