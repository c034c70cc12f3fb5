"""``convert_logs``: text logs of one host into one trace, from the checks to the footer."""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from replay.convert.converter import FileConverter
from replay.convert.damo import DamoFile, damo_kind
from replay.convert.damon import DamonPlacer
from replay.convert.merge import counted, merged, spool, spool_stdin
from replay.convert.options import ConvertOptions, check_options
from replay.convert.report import ConvertReport, FileReport
from replay.convert.source import LogFormatError, codec_of, read_blocks
from replay.convert.vms import VmRegistry, load_vm_config
from replay.convert.write import write_converted

if TYPE_CHECKING:
    from collections.abc import Callable

    from replay.convert.vms import VmConfig


def convert_logs(
    inputs: list[str],
    output: Path,
    options: ConvertOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert text logs (and damo records) of one host into a trace at ``output`` (atomically).

    Parameters
    ----------
    inputs
        Paths of the logs (plain, gzip or zstd), ``-`` for standard input.
    output
        The trace to write; its folder must exist.
    options
        What the user chose (defaults: layouts and fault codes told apart by the logs).
    progress
        Called after each block of rows with the lines read so far, over all logs.

    Returns
    -------
    ConvertReport
        What was read, used and skipped.

    Raises
    ------
    ReplayError
        A bad option, a missing or empty log, a bad ``--vm-config``, or logs with nothing a
        replay can use (:class:`.source.LogFormatError`); no output is left behind.
    """
    from replay.atomic import check_output_path, raise_if_disk_full

    options = options or ConvertOptions()
    check_options(options)
    if not inputs:
        raise LogFormatError("give at least one log file (or - for standard input)")
    _check_inputs(inputs)
    check_output_path(output, "trace")
    configs = load_vm_config(options.vm_config, options.mmu) if options.vm_config else []
    report = ConvertReport()
    registry = VmRegistry(configs, options.mmu or "tdp_mmu")
    try:
        _convert(inputs, output, options, report, (configs, registry), progress)
    except OSError as exc:
        # Also the spool of standard input and of several logs, beside the output.
        raise_if_disk_full(exc, output, "trace")
        raise
    return report


def _convert(  # the state of one conversion, handed over from convert_logs
    inputs: list[str],
    output: Path,
    options: ConvertOptions,
    report: ConvertReport,
    vms: tuple[list[VmConfig], VmRegistry],
    progress: Callable[[int], None] | None,
) -> None:
    configs, registry = vms
    # The pid in the name lets a later command recognise the folder of a killed conversion
    # (replay.atomic.sweep_leftovers).
    tmp = output.parent / f".replay-convert-{os.getpid()}-{secrets.token_hex(4)}"
    with ExitStack() as stack:
        # Its removal is registered before the folder is made: a signal (SIGTERM raises in the
        # main thread) between the two would otherwise leave it behind.
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        tmp.mkdir()
        paths = [str(spool_stdin(tmp, p)) if _is_stream(p) else p for p in inputs]
        kinds = [damo_kind(p) for p in paths]
        text = [p for p, k in zip(paths, kinds, strict=True) if k is None]
        report.access_source = choose_access_source(text, options.access_source)
        placer = DamonPlacer(
            configs,
            list(zip(paths, inputs, strict=True)),
            registry,
            options.damon_intervals,
            report,
        )
        converters: list[FileConverter | DamoFile] = [
            FileConverter(p, report, registry, options, report.access_source, placer)
            if k is None
            else DamoFile(p, k, report, placer, options)
            for p, k in zip(paths, kinds, strict=True)
        ]
        for conv, shown in zip(converters, inputs, strict=True):
            conv.shown_as(shown)
        # Each file's report is filled in as the file is read.
        report.files.extend(conv.info for conv in converters)
        if len(converters) == 1:
            rows = counted(converters[0].rows(), converters, progress)
        else:
            # Converted one after the other into time-ordered spools, then merged.
            spools = [
                spool(counted(conv.rows(), converters, progress), tmp / f"{i}.npz.parquet")
                for i, conv in enumerate(converters)
            ]
            windows = [v["aggr_us"] * 1000 for v in placer.intervals_seen.values()]
            check_clocks(report, max(windows, default=0))
            rows = merged(spools)
        write_converted(output, rows, registry, report, options, placer)


def check_clocks(report: ConvertReport, window_ns: int = 0) -> None:
    """Refuse a DAMON record that shares no time with the kvm log it is converted with.

    Files are merged by their time stamps as printed; a DAMON record on another clock (perf's
    or damo's, a record from another boot) would put its regions beside the wrong faults, so
    spans with no time in common are an error. A region row stands for the ``window_ns``
    before its time stamp (the longest aggregation interval is given), so the record's span
    starts that much earlier. Spans that overlap but come from different layouts are warned
    about (``layouts_merged``), as for perf beside ftrace.
    """
    damon = [f for f in report.files if f.region_rows and not f.access_rows]
    kvm = [f for f in report.files if f.access_rows]
    if not damon or not kvm:
        return
    for f in damon:
        for k in kvm:
            if _overlap(f, k, window_ns):
                break
        else:
            k = kvm[0]
            raise LogFormatError(
                f"{f.path}: its DAMON regions span {_span(f)}, the faults of {k.path} "
                f"{_span(k)}: no time in common, so the two clocks cannot be aligned (a record "
                "of another clock, perf's or damo's beside tracefs's, or of another boot); "
                "record both with the same tracer and clock, or in one trace"
            )


def _overlap(damon: FileReport, kvm: FileReport, window_ns: int) -> bool:
    if None in (damon.first_t_ns, damon.last_t_ns, kvm.first_t_ns, kvm.last_t_ns):
        return True
    start = damon.first_t_ns - window_ns  # type: ignore[operator]
    return not (damon.last_t_ns < kvm.first_t_ns or kvm.last_t_ns < start)  # type: ignore[operator]


def _span(f: FileReport) -> str:
    return f"{(f.first_t_ns or 0) / 1e9:.6f}-{(f.last_t_ns or 0) / 1e9:.6f} s"


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
        if path.stat().st_size == 0 and not _is_stream(p):
            raise LogFormatError(f"log {p} is empty; nothing to convert")


def _is_stream(path: str) -> bool:
    """Whether a log is read as a stream (stdin, a FIFO, ``<(cat log)``): no size, read once."""
    import stat

    if path == "-":
        return True
    try:
        return not stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False  # the conversion reports the unreadable file


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
