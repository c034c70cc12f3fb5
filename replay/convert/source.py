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
    from collections.abc import Iterator

BLOCK_BYTES = 16 << 20
"""Bytes read at a time (whole lines are handed on; a partial last line waits for the next)."""
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BINARY_PROBE = 4096


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


def read_blocks(path: Path | str, block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """Yield the log's text in blocks of whole lines; refuse binary data with a clear error."""
    raw, name = _open(path)
    try:
        import io

        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)  # type: ignore[type-var]
        stream, codec = _decompressing(raw, name)
        line = 1
        carry = b""
        first = True
        while True:
            try:
                chunk = stream.read(block_bytes)
            except OSError as exc:
                what = f"{codec} data" if codec else "data"
                raise LogFormatError(f"log {name}: its {what} is damaged ({exc})") from None
            if first:
                if b"\x00" in chunk[:BINARY_PROBE]:
                    raise LogFormatError(
                        f"log {name} is a binary file, not a text log; give the text of the "
                        "tracefs trace file, perf script or trace-cmd report (trace.dat and "
                        "perf.data must be turned into text first)"
                    )
                first = False
            if not chunk:
                if carry:
                    yield Block(carry, line, unterminated=True)
                return
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            block = data[:cut]
            yield Block(block, line, unterminated=False)
            line = -1  # numbered by the reader of the blocks, which counts their lines
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()
