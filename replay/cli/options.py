"""What several commands declare alike: the choices typer checks, and shared options.

A choice is an enum, so typer lists its values in ``--help`` and refuses any other value with
a usage error (exit 2) before the command runs. The values are defined where the library
reads them (``replay.trace.schema.MMU_MODES``, ``replay.convert``'s ``LAYOUTS``,
``FAULT_CODES`` and ``ACCESS_SOURCES``, ``replay.run.records.ENGINES``); they are spelled out
again here so that ``replay --help`` does not import those modules, and a test checks that
both agree.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class EngineChoice(StrEnum):
    """``replay run --engine``."""

    FAST = "fast"
    REFERENCE = "reference"


class MmuMode(StrEnum):
    """``--mmu`` of ``replay run`` and ``replay convert``: a VM's MMU mode."""

    TDP_MMU = "tdp_mmu"
    SHADOW_DIRECT = "shadow_direct"


class LogLayout(StrEnum):
    """``replay convert --format`` and ``replay synth --as``: a kernel trace text layout."""

    FTRACE = "ftrace"
    PERF = "perf"
    TRACE_CMD = "trace-cmd"


class SynthAs(StrEnum):
    """``replay synth --as``: a kernel trace text layout, or what DAMON would have recorded."""

    FTRACE = "ftrace"
    PERF = "perf"
    TRACE_CMD = "trace-cmd"
    DAMON = "damon"


class DamonFormat(StrEnum):
    """``replay synth --as damon --damon-format``: a text layout or a damo record file."""

    FTRACE = "ftrace"
    PERF = "perf"
    TRACE_CMD = "trace-cmd"
    JSON = "json"
    JSON_COMPRESSED = "json_compressed"


class FaultCodes(StrEnum):
    """``replay convert --fault-codes``: how kvm_page_fault's error codes are written."""

    AUTO = "auto"
    VMX = "vmx"
    SVM = "svm"


class AccessSource(StrEnum):
    """``replay convert --access-source``: the event that marks a guest fault."""

    AUTO = "auto"
    KVM_PAGE_FAULT = "kvm_page_fault"
    KVM_MMU_SPTE_REQUESTED = "kvm_mmu_spte_requested"


ThreadsOption = Annotated[
    int | None,
    typer.Option(
        help=(
            "Cores for the replay: the policies in that many processes (this one reads the "
            "trace), then each epoch's VMs split between the threads left (default: one per "
            "core, for the policies; one for a trace under 100,000 rows); 1 replays on one "
            "thread."
        ),
        min=1,
    ),
]
"""``replay run --threads`` (issue 16; ``replay.run.driver.run_policies``'s ``threads``)."""

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
"""``--json`` of every command: one JSON document on stdout, messages stay on stderr."""

ForceFlag = Annotated[bool, typer.Option("--force", help="Replace outputs that exist.")]
"""``--force`` of the commands that write: without it an existing output is an error.
(``replay diff --force`` means something else and declares its own.)"""

SynthAsOption = Annotated[
    SynthAs | None,
    typer.Option(
        "--as",
        help=(
            "Write kernel trace text instead of Parquet "
            "(accesses as kvm_page_fault lines, passes as mm_shrink_slab lines; the VMs "
            "go to OUTPUT.vms.toml for replay convert --vm-config), or with damon what "
            "DAMON would have recorded of the accesses (see --damon-format)."
        ),
    ),
]
"""``replay synth --as``."""
DamonFormatOption = Annotated[
    DamonFormat,
    typer.Option(help="--as damon: damon_aggregated text in a layout, or a damo record."),
]
"""``replay synth --damon-format``."""
DamonIntervalsOption = Annotated[
    str | None,
    typer.Option(
        metavar="SAMPLE_US,AGGR_US",
        help="--as damon: the monitor's sampling and aggregation intervals (default "
        "5000,100000, damo's).",
    ),
]
"""``replay synth --damon-intervals``."""
FaultsUnderOption = Annotated[
    str | None,
    typer.Option(
        metavar="none",
        help="With --as LAYOUT: only the faults a replay under this policy has (none: "
        "what a 6.13+ host logs), with the host's events.",
    ),
]
"""``replay synth --faults-under``."""

TraceArgument = Annotated[Path, typer.Argument(help="A trace file (.parquet).", readable=False)]
"""The trace ``replay run`` and ``replay inspect`` read."""
