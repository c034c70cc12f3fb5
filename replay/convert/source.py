"""Open a text log, whatever it came in: a file, ``-`` (stdin), gzip or zstd.

Compression is recognised by its magic bytes, not the file name, and undone with pyarrow's
codecs (no other dependency). A log is read in blocks of whole lines, so memory does not grow
with its length.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from replay.errors import InputFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BLOCK_BYTES = 16 << 20
"""Bytes read at a time (whole lines are handed on; a partial last line waits for the next)."""
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BINARY_PROBE = 4096
MAX_LINE = 1 << 20
"""Longest line read (1 MiB; real lines are under 1 KiB): a longer one is garbage, such as a
capture cut while a buffer was being written, and is skipped without being held whole."""
LONG_LINE = b"\x00 over-long line\n"
"""What a block holds in place of a line longer than :data:`MAX_LINE` (a NUL never starts a
text line: the slow path tells it apart, :func:`.layout.slow_line`)."""


class LogFormatError(InputFileError):
    """A log is not text, is empty, or has no line this version can read."""


@dataclass(frozen=True)
class Block:
    """Whole lines of a log: ``data`` ends with a newline unless ``unterminated``."""

    data: bytes
    first_line: int
    """1-based number of the block's first line in its file; -1 after the first block (the
    consumer counts lines as it splits them, so the reader need not)."""
    unterminated: bool
    """The block's last line has no newline: the log ends in the middle of a line."""


def _open(path: Path | str) -> tuple[BinaryIO, str]:
    if str(path) == "-":
        return sys.stdin.buffer, "<stdin>"
    try:
        return Path(path).open("rb"), str(path)  # closed by read_blocks
    except FileNotFoundError:
        raise LogFormatError(f"log {path} does not exist") from None
    except IsADirectoryError:
        raise LogFormatError(f"log {path} is a folder; give a text log file") from None
    except OSError as exc:
        raise LogFormatError(f"log {path} cannot be read ({exc.strerror})") from None


def codec_of(head: bytes) -> str:
    """The compression a file's first 4 bytes show: 'gzip', 'zstd' or '' (plain text)."""
    return "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head[:4] == ZSTD_MAGIC else ""


def _decompressing(raw: BinaryIO, name: str) -> tuple[Any, str]:
    """A readable stream of the log's text, and its compression ('' when none)."""
    import pyarrow as pa

    codec = codec_of(raw.peek(4)[:4] if hasattr(raw, "peek") else b"")
    if not codec:
        return raw, ""
    return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec), codec


def read_blocks(
    path: Path | str,
    block_bytes: int = BLOCK_BYTES,
    on_read: Callable[[bytes], None] | None = None,
) -> Iterator[Block]:
    """Yield the log's text in blocks of whole lines; refuse binary data with a clear error.

    ``on_read`` is given every chunk of text as it is read, in order (the file's hash).
    """
    raw, name = _open(path)
    try:
        import io

        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)  # type: ignore[type-var]
        stream, codec = _decompressing(raw, name)

        def chunks() -> Iterator[bytes]:
            first = True
            while True:
                try:
                    chunk: bytes = stream.read(block_bytes)
                except OSError as exc:
                    what = f"{codec} data" if codec else "data"
                    raise LogFormatError(f"log {name}: its {what} is damaged ({exc})") from None
                if first and b"\x00" in chunk[:BINARY_PROBE]:
                    raise LogFormatError(
                        f"log {name} is a binary file, not a text log; give the text of the "
                        "tracefs trace file, perf script or trace-cmd report (trace.dat and "
                        "perf.data must be turned into text first)"
                    )
                first = False
                if not chunk:
                    return
                if on_read is not None:
                    on_read(chunk)
                yield chunk

        yield from _whole_lines(chunks())
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


def _whole_lines(chunks: Iterator[bytes]) -> Iterator[Block]:
    """Chunks of text as blocks of whole lines (a partial last line waits for the next chunk).

    A line longer than :data:`MAX_LINE` is never held whole: the rest of it is read past, and
    the block holds :data:`LONG_LINE` in its place, so it is counted as a skipped line.
    """
    line = 1
    carry = b""
    skipping = False
    for chunk in chunks:
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                continue  # still inside the over-long line
            data, skipping = LONG_LINE + chunk[end + 1 :], False
        else:
            data = carry + chunk
        cut = data.rfind(b"\n") + 1
        block, carry = data[:cut], data[cut:]
        if len(carry) > MAX_LINE:
            carry, skipping = b"", True
        if block:
            yield Block(block, line, unterminated=False)
            line = -1  # numbered by the reader of the blocks, which counts their lines
    if carry or skipping:
        yield Block(carry or LONG_LINE, line, unterminated=not skipping)
