"""Find a fleet's traces: files, folders (recursively), globs and ``pyarrow.fs`` URIs.

The client only lists the traces and reads each one's Parquet footer (a few kilobytes) for its
fingerprint; the workers read the traces themselves. A remote object is streamed by the worker
to a local temporary file that it removes after the job (:func:`local_copy`), rather than read
in place through a ``pyarrow.fs`` file, because:

* the trace reader and the run driver then read a local file exactly as ``replay run`` does
  (the fingerprint, the error messages naming the file, the read-ahead of row groups), so a
  fleet's runs are ``replay run``'s by construction, with no second reading path to keep equal;
* a replay reads every column chunk of every row group once, in order: one sequential GET of
  the object costs one request's latency, where reading in place costs a ranged request per
  column chunk (a dozen per row group of 2^20 rows), each with the store's latency;
* the copy is streamed in 8 MiB chunks, so memory stays flat, and it costs local disk equal to
  one trace per worker for the length of one job.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replay.errors import InputFileError

if TYPE_CHECKING:
    from collections.abc import Iterator

TRACE_SUFFIX = ".parquet"
_TAIL = 64 * 1024
_COPY_CHUNK = 8 * 1024 * 1024
_FOOTER_READERS = 16


@dataclass(frozen=True)
class TraceRef:
    """A trace of the fleet, before any worker has opened it."""

    source: str
    """An absolute local path, or a URI (``s3://bucket/key``) that ``pyarrow.fs`` opens."""
    name: str
    """The file name without ``.parquet``."""
    size: int
    fingerprint: str
    """As :func:`replay.run.driver.fingerprint` computes it, so that runs and jobs agree."""

    @property
    def is_remote(self) -> bool:
        """Whether the trace lives behind a URI rather than at a local path."""
        return "://" in self.source

    @property
    def short(self) -> str:
        """The first 12 hex digits of the fingerprint, for folder names."""
        return self.fingerprint.removeprefix("sha256:")[:12]


def _filesystem(uri: str) -> tuple[Any, str]:
    """The ``pyarrow.fs`` file system and path of ``uri``; one clear line if it has none."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(
            f"trace location {uri} cannot be opened ({reason}); give a local path or a URI "
            "such as s3://bucket/prefix/ or file:///path"
        ) from None
    return fs, str(path)


def _listing(fs: Any, path: str, shown: str) -> list[tuple[str, int]]:
    """The traces at ``path`` of ``fs``: the file itself, or a folder's ``.parquet`` files."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [(info.path, int(info.size))]
        if info.type == pafs.FileType.Directory:
            found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = [
                (i.path, int(i.size))
                for i in found
                if i.type == pafs.FileType.File and i.path.endswith(TRACE_SUFFIX)
            ]
            if not files:
                raise InputFileError(
                    f"folder {shown} holds no trace ({TRACE_SUFFIX} file); give a folder of "
                    "traces or the traces themselves"
                )
            return sorted(files)
    except (pa.ArrowException, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(
            f"trace location {shown} cannot be listed ({reason}); check the address, the "
            "credentials and that the store is reachable"
        ) from None
    raise InputFileError(f"trace {shown} does not exist; check the path")


def _expand_one(item: str) -> list[tuple[str, int]]:
    """``(source, size)`` of every trace ``item`` names."""
    import pyarrow.fs as pafs

    if "://" in item and not item.startswith("file://"):
        fs, path = _filesystem(item)
        scheme = item.split("://", 1)[0]
        # Keep the query (endpoint_override=...) so that a worker opens the same store.
        query = item.partition("?")[2]
        tail = f"?{query}" if query else ""
        return [(f"{scheme}://{p}{tail}", size) for p, size in _listing(fs, path, item)]
    local = item.removeprefix("file://")
    if glob.has_magic(local):
        # glob.glob, not Path.glob: the pattern may be absolute and may hold ** anywhere.
        found = glob.glob(local, recursive=True)  # noqa: PTH207
        matches = sorted(Path(p).resolve() for p in found if Path(p).is_file())
        if not matches:
            raise InputFileError(f"pattern {item} matches no trace file; check the pattern")
        return [(str(m), m.stat().st_size) for m in matches]
    return _listing(pafs.LocalFileSystem(), str(Path(local).resolve()), item)


def expand_inputs(items: list[str]) -> list[TraceRef]:
    """Every trace the inputs name, each once, with its fingerprint, in the order given.

    Raises :class:`InputFileError` for an input that names nothing: a missing path, an empty
    folder, a pattern without matches, an unreachable store.
    """
    if not items:
        raise InputFileError("give at least one trace, folder of traces or URI")
    from concurrent.futures import ThreadPoolExecutor

    found: dict[str, int] = {}
    for item in items:
        for source, size in _expand_one(item):
            found.setdefault(source, size)
    # One footer read per trace: from an object store each is a request's latency, so they
    # are made side by side (the reads wait on the network, not on the CPU).
    with ThreadPoolExecutor(max_workers=_FOOTER_READERS) as pool:
        prints = list(pool.map(_fingerprint, found, found.values()))
    return [
        TraceRef(source, _name(source), size, fp)
        for (source, size), fp in zip(found.items(), prints, strict=True)
    ]


def _name(source: str) -> str:
    """The trace's file name without ``.parquet`` (and without a URI's query)."""
    return source.rsplit("/", 1)[-1].split("?", 1)[0].removesuffix(TRACE_SUFFIX)


def _open_input(source: str) -> Any:
    import pyarrow.fs as pafs

    if "://" in source:
        fs, path = _filesystem(source)
        return fs.open_input_file(path)
    return pafs.LocalFileSystem().open_input_file(source)


def _fingerprint(source: str, size: int) -> str:
    """sha256 of the Parquet footer and the size, as the run driver computes it.

    A file too damaged to have a footer gets a fingerprint of its tail instead: its job fails
    in the worker with the reader's own message, and the fingerprint only has to be stable.
    """
    import pyarrow as pa

    try:
        with _open_input(source) as fh:
            tail = fh.read_at(min(size, _TAIL), max(size - _TAIL, 0))
            footer_len = int.from_bytes(tail[-8:-4], "little") if len(tail) >= 8 else -1
            if len(tail) < 8 or tail[-4:] != b"PAR1" or footer_len + 8 > size:
                footer = b"damaged:" + tail
            elif footer_len + 8 <= len(tail):
                footer = tail[len(tail) - 8 - footer_len : len(tail) - 8]
            else:
                footer = fh.read_at(footer_len, size - 8 - footer_len)
    except (pa.ArrowException, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(f"trace {source} cannot be read ({reason})") from None
    digest = hashlib.sha256(footer)
    digest.update(str(size).encode())
    return "sha256:" + digest.hexdigest()


@contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """A local path to read the trace from, for as long as the block runs.

    A local trace is its own path. A remote one is streamed (in chunks, so memory stays flat)
    into a temporary file in the system's temporary folder, removed when the block ends: the
    trace reader and the run driver then read a local file exactly as ``replay run`` does.
    """
    if "://" not in source or source.startswith("file://"):
        yield Path(source.removeprefix("file://"))
        return
    import pyarrow as pa

    fs, path = _filesystem(source)
    fd, tmp = tempfile.mkstemp(prefix=f".replay-fleet-{os.getpid()}-", suffix=TRACE_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with fs.open_input_stream(path) as src:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
            except (pa.ArrowException, OSError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputFileError(f"trace {source} cannot be read ({reason})") from None
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)
