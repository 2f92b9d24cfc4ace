"""Box headers and box paths (ISO/IEC 14496-12 §4.2), without ``construct``.

The one reader of a box header (32-bit size and type, the 64-bit ``largesize``, size 0 for "to
the end", the ``uuid`` extended type) and the one namer of box paths (``moov/trak[1]/mdia``:
``name[i]`` is the i-th child of that type, from 0; ``name`` alone is ``name[0]``), for the box
engine, the sample index, the dataset's fast path and ``bzna inspect``.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from .errors import BoxError

__all__ = ["SIZE_TYPE", "LARGE_SIZE", "EXTENDED_TYPE_SIZE", "Header", "read_header", "child_path"]

SIZE_TYPE = struct.Struct(">I4s")
"""``size`` (uint32) and ``type`` (four bytes): the first 8 bytes of every box."""

LARGE_SIZE = struct.Struct(">Q")
"""``largesize`` (uint64), after ``size`` == 1."""

EXTENDED_TYPE_SIZE = 16
"""Bytes of a ``uuid`` box's ``usertype``, after the size fields."""


class Header(NamedTuple):
    """A box header: ``type``, total ``size`` (size 0 resolved to the bytes left), ``header``
    bytes (size fields and ``usertype``), whether the size was 64-bit or 0."""

    type: str
    size: int
    header: int
    large_size: bool
    size_to_end: bool


def read_header(buf: Any, at: int, left: int, offset: int, path: str | None) -> Header:
    """The header at ``buf[at:]``, which has ``left`` (at least 8) bytes to the end of its parent.

    ``offset`` (the header's file offset) and ``path`` name it in a ``BoxError``: a 64-bit size
    or a ``uuid`` type cut short, or a size smaller than the header. A size past ``left`` is the
    caller's to judge (an error inside a parent, a tolerated tail at the top level of a file).
    """
    size, raw = SIZE_TYPE.unpack_from(buf, at)
    fourcc = raw.decode("latin-1")
    header = 8
    large = to_end = False
    if size == 1:
        if left < 16:
            raise BoxError(f"'{fourcc}' box with a 64-bit size needs 16 header bytes, {left} left", offset=offset, path=path)
        size = LARGE_SIZE.unpack_from(buf, at + 8)[0]
        header = 16
        large = True
    elif size == 0:
        size = left
        to_end = True
    if fourcc == "uuid":
        header += EXTENDED_TYPE_SIZE
        if left < header:
            raise BoxError(f"'uuid' box needs {header} header bytes, {left} left", offset=offset, path=path)
    if size < header:
        raise BoxError(f"'{fourcc}' box size {size} is smaller than its {header}-byte header", offset=offset, path=path)
    return Header(fourcc, size, header, large, to_end)


def child_path(parent: str, fourcc: Any, seen: dict) -> str:
    """The path of the next child of type ``fourcc`` under ``parent``; ``seen`` counts the
    children of each type met so far under that parent (the caller keeps one per parent)."""
    index = seen.get(fourcc, 0)
    seen[fourcc] = index + 1
    name = f"{fourcc}[{index}]" if index else f"{fourcc}"
    return f"{parent}/{name}" if parent else name
