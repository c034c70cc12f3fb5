"""``damo record`` files (damonitor/damo's JSON record format) as region rows.

damo (v1.8.2 and later) writes a JSON list of records, one per DAMON target, as ``json`` or,
by default, ``json_compressed`` (a zlib stream of the same text, magic ``78 9c``); both are told
apart by their content, whatever the file is called. A record (damo v3.3 key order):
``kdamond_idx, context_idx, intervals {sample_us, aggr_us, ...} or null, scheme_idx, target_id,
scheme_filters, snapshots [...], data_source``; a snapshot: ``start_time, end_time`` (ns, the
tracer's clock, as digit strings), ``regions [...]``, ``total_bytes, damos_stats,
sample_interval_us`` (the tuned sampling interval, null when not tuned); a region: ``start``,
``end`` (strings with thousands separators, ``"4,294,967,296"``), ``nr_accesses {samples,
percent}``, ``age {usec, aggr_intervals}`` (strings or null), and newer keys that are not read.
Older versions leave keys out; numbers may come as strings or numbers: both are read.

Each snapshot's regions are observations of the aggregation window that ended at its
``end_time``. A one-snapshot record written as ``perf_script`` gets a fake snapshot (one region
``0-0`` with ``nr_accesses -1``); it is counted and left out. The file is read whole (``json``
has no streaming reader in the standard library): memory grows with the record.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.damon import MISSING_INTERVALS, NO_AGE, Intervals, Observed, emit_regions
from replay.convert.report import FileReport
from replay.convert.rows import Rows
from replay.convert.source import LogFormatError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from replay.convert.damon import DamonPlacer
    from replay.convert.options import ConvertOptions
    from replay.convert.report import ConvertReport

PROBE = 4096
"""Bytes of a file read to tell a damo record from a text log."""
CHUNK = 1 << 20
"""Rows handed on at a time."""
OVERLAP = "damo region overlaps an earlier region of its snapshot"


def damo_kind(path: str) -> str | None:
    """``json`` or ``json_compressed`` when a file is a damo record, else None (a text log)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(PROBE)
    except OSError:
        return None
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        # A zlib header, which a text line may also start with ("x "): the stream must
        # inflate to a JSON list.
        try:
            head = zlib.decompressobj().decompress(head, 64)
        except zlib.error:
            return None
        return "json_compressed" if _json_list(head) else None
    return "json" if _json_list(head) else None


def _json_list(head: bytes) -> bool:
    """Whether text starts as a JSON list of objects (or an empty one), as damo writes."""
    text = head.lstrip()
    return text.startswith(b"[") and text[1:].lstrip()[:1] in (b"{", b"]", b"")


def _number(value: Any, what: str) -> int:
    """A damo number: a JSON number, or a string of digits with thousands separators."""
    if isinstance(value, bool):
        raise ValueError(what)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.replace(",", "").strip()
        if text.lstrip("-").isdigit():
            return int(text)
    raise ValueError(what)


class DamoFile:
    """One damo record file, read into region rows in time order."""

    def __init__(
        self,
        path: str,
        kind: str,
        report: ConvertReport,
        placer: DamonPlacer,
        options: ConvertOptions,
    ) -> None:
        self.path = path
        self.kind = kind
        self.name = path
        self.report = report
        self.placer = placer
        self.strict = options.strict
        self.info = FileReport(path, layout=f"damo {kind}")
        self.pids: dict[tuple[int, int], int] = {}

    def shown_as(self, name: str) -> None:
        """Name the file in messages and the report as the user gave it."""
        self.name = self.info.path = "<stdin>" if name == "-" else name

    def _bad(self, line: int, text: str, reason: str) -> None:
        where = f"{self.name} region {line}"
        if self.strict:
            raise LogFormatError(f"{where}: {reason}: {text[:160]} (--strict)")
        self.report.malformed(where, text, reason)

    def load(self) -> list[Any]:
        """The file's records; a truncated or damaged file is a one-line error."""
        import hashlib

        data = Path(self.path).read_bytes()
        self.info.sha256 = hashlib.sha256(data).hexdigest()
        fix = "copy the whole file again, or re-record it (damo record)"
        if self.kind == "json_compressed":
            try:
                data = zlib.decompress(data)
            except zlib.error as exc:
                raise LogFormatError(
                    f"{self.name}: damo record (json_compressed) is truncated or damaged "
                    f"({exc}); {fix}"
                ) from None
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            at = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise LogFormatError(
                f"{self.name}{at}: damo JSON record is truncated or damaged ({exc}); {fix}"
            ) from None
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise LogFormatError(
                f"{self.name}: JSON but not a damo record (a list of records with "
                "'target_id' and 'snapshots'); give damo record's output file"
            )
        return doc

    def target_pids(self) -> dict[tuple[int, int], int]:
        """(kdamond, target) index to the watched process, from damo's ``FILE.kdamonds``.

        ``damo record`` writes the monitor's setup beside its record (kdamonds, their contexts,
        each target's ``pid``); a record's ``target_id`` indexes the first context's targets.
        A side file that is missing or unreadable names no process (the VM is then found as
        without it).
        """
        side = Path(f"{self.path}.kdamonds")
        try:
            kdamonds = json.loads(side.read_text())
            out = {}
            for k, kd in enumerate(kdamonds):
                for t, target in enumerate(kd["contexts"][0]["targets"]):
                    if target.get("pid") is not None:
                        out[(k, t)] = int(target["pid"])
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            return {}
        self.report.events["damo .kdamonds target pids"] += len(out)
        return out

    def rows(self) -> Iterator[dict[str, np.ndarray]]:
        """The file's region rows, in time order."""
        self.pids = self.target_pids()
        rows = Rows()
        serial = 0
        for r, record in enumerate(self.load()):
            try:
                serial = self._record(rows, r, record, serial)
            except (ValueError, KeyError, TypeError) as exc:
                raise LogFormatError(
                    f"{self.name}: record {r}: not damo's record format (bad or missing "
                    f"{exc}); give damo record's json or json_compressed output"
                ) from None
        self.info.lines = serial
        cols = rows.take()
        order = np.lexsort((cols["line"], cols["t_ns"]))
        cols = {k: v[order] for k, v in cols.items()}
        if len(order):
            self.info.first_t_ns = int(cols["t_ns"][0])
            self.info.last_t_ns = int(cols["t_ns"][-1])
            self.info.region_rows = len(order)
        for at in range(0, len(order), CHUNK):
            yield {k: v[at : at + CHUNK] for k, v in cols.items()}

    def _intervals(self, record: dict[str, Any]) -> Intervals:
        given = record.get("intervals")
        if isinstance(given, dict):
            return Intervals(
                _number(given["sample_us"], "sample_us"),
                _number(given["aggr_us"], "aggr_us"),
                "record",
            )
        option = self.placer.initial_intervals()
        if option is None:
            raise LogFormatError(f"{self.name}: its records have no intervals: {MISSING_INTERVALS}")
        return option

    def _record(self, rows: Rows, r: int, record: dict[str, Any], serial: int) -> int:
        """One record's snapshots as rows; returns the last region number used."""
        target = _number(record["target_id"], "target_id")
        base = self._intervals(record)
        if base.sample_us <= 0 or base.aggr_us < base.sample_us:
            raise ValueError("intervals")
        kd = record.get("kdamond_idx")
        monitor = f"damo kdamond.{kd}" if kd is not None else "damo record"
        for snap in record["snapshots"]:
            regions = snap["regions"]
            end_time = _number(snap["end_time"], "end_time")
            tuned = snap.get("sample_interval_us")
            intervals = base
            if tuned is not None:
                sample = _number(tuned, "sample_interval_us")
                intervals = Intervals(sample, sample * base.max_accesses, base.source)
            n = len(regions)
            numbers = np.zeros((n, 4), dtype=np.int64)
            for k, reg in enumerate(regions):
                acc = reg["nr_accesses"]
                acc = acc.get("samples") if isinstance(acc, dict) else acc
                age = reg.get("age")
                age = age.get("aggr_intervals") if isinstance(age, dict) else age
                numbers[k] = (
                    _number(reg["start"], "start"),
                    _number(reg["end"], "end"),
                    -1 if acc is None else _number(acc, "nr_accesses"),
                    NO_AGE if age is None else _number(age, "age"),
                )
            first = serial + 1
            serial += n
            self.report.events["damo record regions"] += n
            if n == 1 and numbers[0, 2] == -1 and numbers[0, 0] == numbers[0, 1] == 0:
                self.report.skipped["damo fake snapshot (perf_script of one snapshot)"] += 1
                continue
            pid = self.pids.get((kd or 0, target))
            self._snapshot(rows, (monitor, pid), target, end_time, numbers, first, intervals)
        self.placer.intervals_seen[f"{self.name}: {monitor} target {target}"] = {
            "sample_us": base.sample_us,
            "aggr_us": base.aggr_us,
            "source": base.source,
        }
        return serial

    def _snapshot(
        self,
        rows: Rows,
        watched: tuple[str, int | None],
        target: int,
        end_time: int,
        numbers: np.ndarray,
        first: int,
        intervals: Intervals,
    ) -> None:
        """One snapshot's regions, checked (no access count, overlap), as rows.

        ``watched`` is the monitor's name and the process it watched (None when unknown).
        """
        line = first + np.arange(len(numbers), dtype=np.int64)
        # damo writes a snapshot in address order; sorted anyway, so overlap means overlap.
        order = np.argsort(numbers[:, 0], kind="stable")
        numbers, line = numbers[order], line[order]
        start, end = numbers[:, 0], numbers[:, 1]
        keep = numbers[:, 2] >= 0
        for k in np.flatnonzero(~keep).tolist():
            self._bad(int(line[k]), str(numbers[k].tolist()), "damo region without nr_accesses")
        bounds = keep & ((start < 0) | (end <= start))
        for k in np.flatnonzero(bounds).tolist():
            self._bad(int(line[k]), f"{int(start[k])}-{int(end[k])}", "damo region start >= end")
        keep &= ~bounds
        prior = np.maximum.accumulate(np.concatenate([[0], end[:-1]]))
        overlap = keep & (start < prior)
        for k in np.flatnonzero(overlap).tolist():
            self._bad(int(line[k]), f"{int(start[k])}-{int(end[k])}", OVERLAP)
        keep &= ~overlap
        self.placer.note("aggregations")
        if not keep.any():
            return
        obs = Observed(
            np.full(int(keep.sum()), end_time, dtype=np.int64),
            line[keep],
            start[keep].astype(np.uint64),
            end[keep].astype(np.uint64),
            numbers[keep, 2].astype(np.uint64),
            numbers[keep, 3],
        )
        where = f"{self.name} region {first}"
        place = self.placer.target(watched[0], target, where, end_time, watched[1])
        emit_regions(
            rows, self.placer, self.report, place, obs, intervals, self._bad, f"{self.name} region"
        )
