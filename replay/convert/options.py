"""What the user chose for ``replay convert``, checked before any log is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from replay.convert.layout import LAYOUTS
from replay.errors import ReplayError

if TYPE_CHECKING:
    from pathlib import Path

FAULT_CODES = ("auto", "vmx", "svm")
"""How fault error codes are read: Intel's or AMD's bits, or told apart by the codes seen."""
ACCESS_SOURCES = ("auto", "kvm_page_fault", "kvm_mmu_spte_requested")
"""The event that marks a guest fault (``auto``: see :func:`.pipeline.choose_access_source`)."""


@dataclass(frozen=True)
class ConvertOptions:
    """What the user chose on the command line.

    Attributes
    ----------
    layout
        ``ftrace``, ``perf`` or ``trace-cmd``; None tells them apart by their lines.
    fault_codes
        One of :data:`FAULT_CODES`.
    vm_config
        A ``--vm-config`` TOML file naming each VM's threads and memslots.
    mmu
        The MMU mode of every VM (``tdp_mmu`` or ``shadow_direct``); None keeps the VM
        config's, else ``tdp_mmu``.
    strict
        Stop at the first line that cannot be read instead of counting it.
    access_source
        One of :data:`ACCESS_SOURCES`.
    force
        Replace an existing output; without it, an output that appears while the trace is
        written is an error and is left as it is.
    damon_intervals
        DAMON's sampling and aggregation intervals (µs) for records that do not hold them
        (kernel trace text); a damo record's own intervals win.
    """

    layout: str | None = None
    fault_codes: str = "auto"
    vm_config: Path | None = None
    mmu: str | None = None
    strict: bool = False
    access_source: str = "auto"
    force: bool = True
    damon_intervals: tuple[int, int] | None = None


def parse_intervals(text: str) -> tuple[int, int]:
    """``--damon-intervals SAMPLE_US,AGGR_US`` as two integers (checked by check_options)."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ReplayError(
            f"--damon-intervals {text!r}: give SAMPLE_US,AGGR_US in microseconds, such as "
            "5000,100000"
        )
    return int(parts[0]), int(parts[1])


def check_options(options: ConvertOptions) -> None:
    """Refuse a choice no conversion can honour (library callers bypass the CLI's checks)."""
    if options.fault_codes not in FAULT_CODES:
        raise ReplayError(f"--fault-codes {options.fault_codes!r}: use auto, vmx or svm")
    if options.access_source not in ACCESS_SOURCES:
        raise ReplayError(
            f"--access-source {options.access_source!r}: use {', '.join(ACCESS_SOURCES)}"
        )
    if options.damon_intervals is not None:
        sample, aggr = options.damon_intervals
        if not 0 < sample <= aggr:
            raise ReplayError(
                f"--damon-intervals {sample},{aggr}: give SAMPLE_US,AGGR_US with "
                "0 < SAMPLE_US <= AGGR_US (DAMON's defaults are 5000,100000)"
            )
    if options.layout is not None and options.layout not in LAYOUTS:
        raise ReplayError(f"--format {options.layout!r}: use {', '.join(LAYOUTS)}")
