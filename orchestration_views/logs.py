"""A task's log (``logs/<id>.log``: the agent's output, across attempts), read from the end.

One tailer for ``orchestrator logs`` and the dashboard: it seeks instead of reading the whole file,
reads at most a bounded number of bytes at a time, and keeps its offset on a character boundary,
so a UTF-8 character is never split between two reads (an offset handed back by a client stays
valid too). A log that is a symbolic link or no regular file reads as empty: a worker writes the
log, so the reader follows no link it planted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 256 * 1024
"""How much of a log one read returns at most, and how far back a tail of lines looks."""

_CONTINUATION = 0b1100_0000
"""Mask of the top bits: a byte ``10xxxxxx`` continues a UTF-8 character."""


def regular_size(path: Path) -> int | None:
    """The size in bytes of a regular file; None when it is missing, a link or no regular file."""
    try:
        return int(path.lstat().st_size) if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


def _is_continuation(byte: int) -> bool:
    return byte & _CONTINUATION == 0b1000_0000


def _char_length(lead: int) -> int:
    for length, mask, value in ((1, 0x80, 0x00), (2, 0xE0, 0xC0), (3, 0xF0, 0xE0), (4, 0xF8, 0xF0)):
        if lead & mask == value:
            return length
    return 1


def complete_prefix(data: bytes) -> int:
    """How many bytes of ``data`` end on a character boundary (a cut last character is left)."""
    for back in range(1, min(4, len(data)) + 1):
        lead = data[-back]
        if not _is_continuation(lead):
            return len(data) - back if _char_length(lead) > back else len(data)
    return len(data)


def _lead_skip(data: bytes) -> int:
    """How many bytes at the start of ``data`` continue a character begun before it."""
    skip = 0
    while skip < min(3, len(data)) and _is_continuation(data[skip]):
        skip += 1
    return skip


def _read(path: Path, offset: int, count: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(count)
    except OSError:
        return b""


def lines_offset(path: Path, lines: int, max_bytes: int = TAIL_BYTES) -> int:
    """Where the last ``lines`` lines of the log begin, looking back at most ``max_bytes``."""
    size = regular_size(path) or 0
    start = max(0, size - max_bytes)
    data = _read(path, start, size - start)
    cut = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return start + _lead_skip(data)
    return start + cut + 1


@dataclass
class LogTail:
    """Reads a log from an offset onwards in bounded pieces, never splitting a UTF-8 character."""

    path: Path
    offset: int = 0
    """The byte where the next read begins: always on a character boundary."""

    def start_at_tail(self, tail_bytes: int = TAIL_BYTES) -> bool:
        """Begin about ``tail_bytes`` before the end; True when earlier text is left out."""
        size = regular_size(self.path) or 0
        start = max(0, size - tail_bytes)
        self.offset = start + (_lead_skip(_read(self.path, start, 3)) if start else 0)
        return self.offset > 0

    def start_at_lines(self, lines: int, max_bytes: int = TAIL_BYTES) -> bool:
        """Begin at the last ``lines`` lines; True when earlier text is left out."""
        self.offset = lines_offset(self.path, lines, max_bytes)
        return self.offset > 0

    def read_new(self, limit: int = TAIL_BYTES) -> str:
        """What was appended since the last read, at most ``limit`` bytes of it (at least one
        character's worth, so a read always moves on)."""
        size = regular_size(self.path)
        if size is None:
            return ""
        if size < self.offset:  # the log was replaced: start it again
            self.offset = 0
        chunk = _read(self.path, self.offset, min(size - self.offset, max(limit, 4)))
        whole = complete_prefix(chunk)
        self.offset += whole
        return chunk[:whole].decode(errors="replace")

    def read_rest(self) -> str:
        """Everything from the offset to the end, read in bounded pieces."""
        pieces: list[str] = []
        while piece := self.read_new():
            pieces.append(piece)
        return "".join(pieces)
