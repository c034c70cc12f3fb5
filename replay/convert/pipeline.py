"""``convert_logs``: text logs of one host into one trace, from the checks to the footer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from replay.convert.converter import FileConverter
from replay.convert.merge import counted, merged, spool, spool_stdin
from replay.convert.options import ConvertOptions, check_options
from replay.convert.report import ConvertReport
from replay.convert.source import LogFormatError, codec_of, read_blocks
from replay.convert.vms import VmRegistry, load_vm_config
from replay.convert.write import write_converted

if TYPE_CHECKING:
    from collections.abc import Callable


def convert_logs(
    inputs: list[str],
    output: Path,
    options: ConvertOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert text logs of one host into a schema-v1 trace at ``output`` (written atomically).

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
    from replay.atomic import check_output_path

    options = options or ConvertOptions()
    check_options(options)
    if not inputs:
        raise LogFormatError("give at least one log file (or - for standard input)")
    _check_inputs(inputs)
    check_output_path(output, "trace")
    configs = load_vm_config(options.vm_config, options.mmu) if options.vm_config else []
    report = ConvertReport()
    registry = VmRegistry(configs, options.mmu or "tdp_mmu")
    with tempfile.TemporaryDirectory(prefix=".replay-convert-", dir=output.parent) as tmp_name:
        tmp = Path(tmp_name)
        paths = [str(spool_stdin(tmp)) if p == "-" else p for p in inputs]
        report.access_source = choose_access_source(paths, options.access_source)
        converters = [
            FileConverter(p, report, registry, options, report.access_source) for p in paths
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
            rows = merged(spools)
        write_converted(output, rows, registry, report, options)
    return report


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
