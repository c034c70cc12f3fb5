"""``replay convert``: kernel trace text (ftrace, perf script, trace-cmd report) into a trace.

The pipeline, per log file, a block of lines at a time (memory does not grow with the log):
:mod:`.source` reads the text (plain, gzip, zstd, stdin); :mod:`.prepare` splits blocks on
worker threads with :mod:`.lines` (every line's common fields, with numpy); :mod:`.converter`
turns a file's lines into trace rows, with :mod:`.layout` for the odd lines, :mod:`.payloads`
for each event's fields, :mod:`.vms` for VMs and vCPUs and :mod:`.passes` for reclaim passes;
:mod:`.damontext` groups DAMON's ``damon_aggregated`` lines into aggregations and :mod:`.damon`
places them in guests as ``region`` rows through the memslots' host addresses (:mod:`.hostmap`);
:mod:`.damo` reads ``damo record`` files (``DAMON.md`` beside this file says how and why);
:mod:`.merge` merges several files in time order; :mod:`.write` writes the trace and its footer;
:mod:`.pipeline` runs it all from the options (:mod:`.options`). What was read, used and
skipped is counted in a :class:`ConvertReport` (:mod:`.report`): nothing is dropped silently.
:mod:`.render` goes the other way (a trace as kernel text, for ``replay synth --as``).
"""

from __future__ import annotations

from replay.convert.options import ConvertOptions
from replay.convert.pipeline import convert_logs
from replay.convert.report import ConvertReport
from replay.convert.source import LogFormatError

__all__ = ["ConvertOptions", "ConvertReport", "LogFormatError", "convert_logs"]
