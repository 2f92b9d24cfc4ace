"""The box engine: headers (ISO/IEC 14496-12 §4.2), the registry of box types, parse and build.

A parsed box is a ``construct.Container``::

    Container(type="stsz", version=0, flags=0, sample_size=0, sample_count=3,
              entry_sizes=array([...], dtype='>u4'))

with ``type`` first, then the header's unusual encodings when present (``large_size=True`` for a
64-bit size that was not needed... or was; ``size_to_end=True`` for size 0; ``extended_type`` for
``uuid``), the typed fields of its schema, ``children`` (a list of boxes) for containers, and
``trailing`` (bytes) when a known box holds more bytes than its schema reads. Raw boxes (unknown
types, ``mdat``, ``free``) hold ``data``: a memoryview slice of the parsed buffer, never a copy.
``_offset`` and ``_size`` give the box's place in the input; keys that start with ``_`` take no
part in equality, so equal boxes at different offsets compare equal.
"""

from __future__ import annotations

import contextlib
import contextvars
import struct
from typing import Any, Iterable, Iterator, Mapping

from construct import Array, ConstructError, Construct, Container, GreedyRange, ListContainer, RepeatUntil, SizeofError, StreamError

from ..errors import BoxError
from ..headers import LARGE_SIZE as _LARGE
from ..headers import SIZE_TYPE as _SIZE_TYPE
from ..headers import child_path, read_header
from ..stream import ChunkWriter, ViewStream, as_memoryview

__all__ = [
    "BoxType",
    "RawBox",
    "register",
    "lookup",
    "registered_types",
    "parse_box",
    "parse_boxes",
    "build_box",
    "Box",
    "Boxes",
    "BoxWarning",
    "tolerate",
    "tolerating",
    "collect_warnings",
    "MAX_DEPTH",
    "SAMPLE_LOCATING",
    "PADDED_TYPES",
    "unreadable_header",
    "field_position",
]

MAX_DEPTH = 64
"""Deepest nesting of boxes accepted; deeper input is rejected rather than recursed into."""

SAMPLE_LOCATING = frozenset({"tkhd", "hdlr", "stsz", "stz2", "stco", "co64", "stsc", "trex", "tfhd", "trun"})
"""Boxes that locate samples: one of these cut short has no sound reading and stays an error."""

PADDED_TYPES = frozenset({"mdat", "free", "skip", "wide"})
"""Top-level boxes kept, cut to the end of the file, when their size runs past it."""

CLIPPED = "kept as the bytes up to the end of the file"
TRAILING = "the bytes from here to the end of the file are kept as its trailing bytes"

_MAX32 = 0xFFFFFFFF
_LISTS = (Array, GreedyRange, RepeatUntil)
_HEADER_KEYS = ("type", "large_size", "size_to_end", "extended_type", "declared_size")
_PARSE_ERRORS = (ConstructError, struct.error, ValueError, OverflowError)
"""What malformed input raises inside a schema's parse; anything else is a bug in the schema."""
_BUILD_ERRORS = (*_PARSE_ERRORS, TypeError, IndexError, KeyError, AttributeError)
"""What a value that does not fit its schema raises while building (a missing key, a wrong type)."""


class BoxWarning:
    """A deviation from the specification that a reading tolerated: what, where (offset, box path).

    ``str(warning)`` reads like a :class:`BoxError`: ``moov/.../colr at offset 1234: ...``.
    """

    __slots__ = ("reason", "offset", "path")

    def __init__(self, reason: str, *, offset: int | None = None, path: str | None = None):
        self.reason = reason
        self.offset = offset
        self.path = path

    def __str__(self) -> str:
        return str(BoxError(self.reason, offset=self.offset, path=self.path))

    def __repr__(self) -> str:
        return f"BoxWarning({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, BoxWarning) and (self.reason, self.offset, self.path) == (other.reason, other.offset, other.path)

    def __hash__(self) -> int:
        return hash((self.reason, self.offset, self.path))


_WARNINGS: contextvars.ContextVar[list | None] = contextvars.ContextVar("bzna_box_warnings", default=None)


@contextlib.contextmanager
def collect_warnings(strict: bool = False) -> Iterator[list[BoxWarning]]:
    """Collect the deviations that parses inside the block tolerate (``strict``: none, each an error)."""
    found: list[BoxWarning] = []
    token = _WARNINGS.set(None if strict else found)
    try:
        yield found
    finally:
        _WARNINGS.reset(token)


def tolerate(reason: str, kept: str, offset: int | None = None, path: str | None = None) -> None:
    """Record a tolerated deviation (``reason``, then what was ``kept`` of it) as a warning;
    outside :func:`collect_warnings` (or when strict) ``reason`` is a BoxError."""
    found = _WARNINGS.get()
    if found is None:
        raise BoxError(reason, offset=offset, path=path)
    found.append(BoxWarning(f"{reason}: {kept}", offset=offset, path=path))


def tolerating() -> bool:
    """True inside a non-strict :func:`collect_warnings` block."""
    return _WARNINGS.get() is not None


class _CutShort(BoxError):
    """A box's own fields need more bytes than its body holds."""


class BoxType:
    """The schema of one box type.

    ``fields`` is a ``construct`` struct for the body's fixed part (FullBox version and flags
    included); when ``children`` is true the rest of the body is a sequence of boxes, else any
    bytes the fields leave are kept as ``trailing``. Subclasses override :meth:`parse_body` and
    :meth:`build_body` for the few boxes that a struct cannot describe.
    """

    raw = False

    def __init__(self, fourcc: str, name: str, fields: Construct | None = None, *, children: bool = False):
        if len(fourcc.encode("latin-1")) != 4:
            raise ValueError(f"fourcc {fourcc!r} is not 4 bytes")
        self.fourcc = fourcc
        self.name = name
        self.fields = fields
        self.children = children

    def __repr__(self) -> str:
        return f"<BoxType {self.fourcc!r} {self.name}>"

    def parse_body(self, view: memoryview, value: Container, offset: int, path: str, depth: int) -> None:
        """Parse ``view`` (the body, after the header) into ``value``; ``offset`` is the body's file offset."""
        pos = self.parse_fields(view, value, offset, path)
        self.parse_rest(view, pos, value, offset, path, depth)

    def parse_fields(self, view: memoryview, value: Container, offset: int, path: str, fields=None) -> int:
        fields = self.fields if fields is None else fields
        if fields is None:
            return 0
        stream = ViewStream(view)
        try:
            value.update(fields.parse_stream(stream))
        except _PARSE_ERRORS as exc:
            error = _CutShort if _ran_out(exc, fields) else BoxError
            raise error(_reason(exc, "parse"), offset=offset + stream.pos, path=path) from exc
        finally:
            pos = stream.pos
            stream.release()
        return pos

    def parse_rest(self, view: memoryview, pos: int, value: Container, offset: int, path: str, depth: int) -> None:
        if self.children:
            value.children, trailing = parse_boxes(view, offset, path, depth + 1, start=pos, tolerate_tail=True)
            if trailing:
                value.trailing = trailing
        elif pos < len(view):
            value.trailing = bytes(view[pos:])

    def build_body(self, value: Mapping, out: ChunkWriter, path: str) -> None:
        self.build_fields(value, out, path)
        self.build_rest(value, out, path)

    def build_fields(self, value: Mapping, out: ChunkWriter, path: str, fields=None) -> None:
        fields = self.fields if fields is None else fields
        if fields is None:
            return
        try:
            fields.build_stream(value, out)
        except _BUILD_ERRORS as exc:
            raise BoxError(_reason(exc, "build"), path=path) from exc

    def build_rest(self, value: Mapping, out: ChunkWriter, path: str) -> None:
        if self.children:
            _build_children(value.get("children") or (), out, path)
        trailing = value.get("trailing")
        if trailing:
            out.write(bytes(trailing))


class RawBox(BoxType):
    """A box kept as its payload bytes: ``data`` is a zero-copy slice of the input."""

    raw = True

    def parse_body(self, view, value, offset, path, depth):
        value.data = view

    def build_body(self, value, out, path):
        data = value.get("data", b"")
        out.write(data if isinstance(data, (bytes, bytearray, memoryview)) else bytes(data))


_REGISTRY: dict[str, BoxType] = {}
_UNKNOWN = RawBox("????", "UnknownBox")


def register(box_type: BoxType) -> BoxType:
    """Make ``box_type`` the schema for its fourcc (replacing any earlier one) and return it."""
    _REGISTRY[box_type.fourcc] = box_type
    return box_type


def lookup(fourcc: str) -> BoxType:
    """The schema registered for ``fourcc``, or the raw fallback that keeps the payload as is."""
    return _REGISTRY.get(fourcc, _UNKNOWN)


def registered_types() -> dict[str, BoxType]:
    """A copy of the registry: fourcc -> :class:`BoxType`."""
    return dict(_REGISTRY)


def _ran_out(exc: BaseException, fields: Construct) -> bool:
    """True when ``exc`` says the body ended before one of the box's own fixed-size fields.

    Not when a value is wrong, nor when a list or table needs more bytes than the box holds:
    a count that cannot be true stays an error.
    """
    if not isinstance(exc, StreamError) or "less than specified amount" not in str(exc):
        return False
    names = (getattr(exc, "path", None) or "").split(" -> ")
    if len(names) != 2:
        return False
    for sc in getattr(fields, "subcons", ()):
        if sc.name == names[1]:
            return not isinstance(getattr(sc, "subcon", sc), _LISTS)
    return True  # a packed group of bit fields


def _reason(exc: BaseException, action: str) -> str:
    if isinstance(exc, ConstructError):
        text = str(exc)
        where = getattr(exc, "path", None) or ""
        message = text.split("\n", 1)[1] if text.startswith("Error in path") and "\n" in text else text
        field = where.replace("(parsing)", "").replace("(building)", "").replace(" -> ", ".").strip(". ")
        return f"field {field}: {message}" if field else message
    if isinstance(exc, (KeyError, AttributeError)):
        return f"missing field {exc.args[0]!r}" if action == "build" and exc.args else f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)


def parse_box(view: memoryview, pos: int, end: int, base: int, path: str, depth: int, *, clip: bool = False) -> tuple[Container, int]:
    """Parse the box at ``view[pos:]`` inside ``view[:end]``; return it and the position after it.

    ``base`` is the file offset of ``view[0]``; ``path`` is the box path used in errors.
    ``clip`` (top level): an ``mdat``, ``free``, ``skip`` or ``wide`` box whose size runs past
    ``end`` is kept as the bytes there are, its size as ``declared_size``. Inside
    :func:`collect_warnings`, a box whose own fields need more bytes than it holds (other than
    the :data:`SAMPLE_LOCATING` ones) is kept as its raw ``data``; each is a warning.
    """
    offset = base + pos
    left = end - pos
    if left < 8:
        raise BoxError(f"box header needs 8 bytes, {left} left", offset=offset, path=path)
    fourcc, size, header, large_size, size_to_end = read_header(view, pos, left, offset, path)
    value = Container(type=fourcc)
    if large_size:
        value.large_size = True
    elif size_to_end:
        value.size_to_end = True
    if fourcc == "uuid":
        value.extended_type = bytes(view[pos + header - 16 : pos + header])
    if size > left:
        reason = f"'{fourcc}' box size {size} runs past the end of its parent ({left} bytes left)"
        if not (clip and fourcc in PADDED_TYPES):
            raise BoxError(reason, offset=offset, path=path)
        tolerate(reason, CLIPPED, offset, path)
        value.declared_size = size
        size = left
    if depth > MAX_DEPTH:
        raise BoxError(f"boxes nested deeper than {MAX_DEPTH} levels", offset=offset, path=path)
    body_start = pos + header
    body = view[body_start : pos + size]
    box_type = lookup(fourcc)
    try:
        box_type.parse_body(body, value, base + body_start, path, depth)
    except _CutShort as exc:
        if exc.path != path or fourcc in SAMPLE_LOCATING:
            raise
        tolerate(exc.reason, "the box is cut short, its body is kept as raw bytes", exc.offset, path)
        for key in [k for k in value if k not in _HEADER_KEYS]:
            del value[key]
        value.data = body
    value._offset = offset
    value._size = size
    return value, pos + size


def parse_boxes(
    view: memoryview,
    base: int = 0,
    parent: str = "",
    depth: int = 0,
    *,
    start: int = 0,
    tolerate_tail: bool = False,
    top_level: bool = False,
) -> tuple[ListContainer, bytes]:
    """Parse consecutive boxes filling ``view[start:]``.

    Returns the boxes and the tail: fewer than 8 bytes left at the end (kept when
    ``tolerate_tail``, as inside a container, else an error). ``top_level`` (a whole file):
    after the first box, a tail too short for a header or a header of an unknown type that
    cannot be a box (its size smaller than a header, or past the end of the file) ends the
    boxes, and the bytes from there are the returned tail (a warning, see :func:`tolerate`).
    """
    boxes = ListContainer()
    seen: dict[str, int] = {}
    end = len(view)
    pos = start
    while pos < end:
        if end - pos < 8:
            if tolerate_tail:
                return boxes, bytes(view[pos:end])
            reason = f"{end - pos} bytes after the last box are too few for a box header"
            if top_level and boxes and tolerating():
                tolerate(reason, TRAILING, base + pos, parent or None)
                return boxes, bytes(view[pos:end])
            raise BoxError(reason, offset=base + pos, path=parent or None)
        path = child_path(parent, bytes(view[pos + 4 : pos + 8]).decode("latin-1"), seen)
        if top_level and boxes and tolerating():
            bogus = unreadable_header(view, pos, end)
            if bogus:
                tolerate(bogus, TRAILING, base + pos, path)
                return boxes, bytes(view[pos:end])
        box, pos = parse_box(view, pos, end, base, path, depth, clip=top_level)
        boxes.append(box)
    return boxes, b""


def unreadable_header(view: memoryview, pos: int, end: int) -> str | None:
    """Why the top-level header at ``pos`` (8 bytes at least) is garbage rather than a box, or None.

    Garbage: a type that no schema knows (or a padding type) whose size is smaller than a
    header or runs past ``end`` (a padding box, which is kept cut short, excepted). A known
    box cut short is an error, not garbage.
    """
    fourcc = bytes(view[pos + 4 : pos + 8]).decode("latin-1")
    if fourcc in _REGISTRY and fourcc not in PADDED_TYPES:
        return None  # a known box cut short is an error, not garbage
    size, _ = _SIZE_TYPE.unpack_from(view, pos)
    left = end - pos
    header = 8
    if size == 1:
        if left < 16:
            return f"a {left}-byte tail with a 64-bit size header"
        size, header = _LARGE.unpack_from(view, pos + 8)[0], 16
    elif size == 0:
        return None
    if fourcc == "uuid":
        header += 16
    if size < header:
        return f"a header of size {size}, smaller than a header"
    if size > left and fourcc not in PADDED_TYPES:
        return f"a header of size {size}, past the end of the file ({left} bytes left)"
    return None


def field_position(box: Mapping, name: str) -> int:
    """Where field ``name`` of a parsed ``box`` lies in the buffer it was parsed from: the box's
    ``_offset``, its header and the field's offset in its schema (for the box's ``version``)."""
    from .fields import field_offset

    header = _SIZE_TYPE.size + (_LARGE.size if box.get("large_size") else 0) + (16 if box.get("extended_type") is not None else 0)
    context = {"version": box["version"]} if "version" in box else {}
    return box._offset + header + field_offset(lookup(box["type"]).fields, name, **context)


def build_box(value: Mapping, out: ChunkWriter, path: str = "") -> None:
    """Append the bytes of one box to ``out``; sizes are computed, never taken from ``value``."""
    try:
        fourcc = value["type"]
    except (KeyError, TypeError):
        raise BoxError("a box needs a 'type'", path=path or None) from None
    try:
        raw_type = fourcc.encode("latin-1") if isinstance(fourcc, str) else bytes(fourcc)
    except (UnicodeEncodeError, TypeError):
        raw_type = b""
    if len(raw_type) != 4:
        raise BoxError(f"box type {fourcc!r} is not 4 bytes", path=path or None)
    path = path or raw_type.decode("latin-1")
    if path.count("/") > MAX_DEPTH:  # what parse_box would reject, and before Python's recursion limit
        raise BoxError(f"boxes nested deeper than {MAX_DEPTH} levels", path=path)
    body = ChunkWriter()
    box_type = lookup(raw_type.decode("latin-1"))
    if "data" in value and not box_type.raw:
        box_type = _UNKNOWN  # a box kept as raw bytes because it was cut short
    box_type.build_body(value, body, path)
    header = 8
    extended = b""
    if raw_type == b"uuid":
        extended = bytes(value.get("extended_type", b""))
        if len(extended) != 16:
            raise BoxError("a 'uuid' box needs a 16-byte extended_type", path=path)
        header += 16
    size = header + body.size
    declared = value.get("declared_size")
    if declared is not None and declared > size + 8 * bool(value.get("large_size")):
        size = declared - 8 * bool(value.get("large_size"))  # a box cut short by the end of its file: its header as it was
    if value.get("size_to_end"):
        head = _SIZE_TYPE.pack(0, raw_type)
    elif value.get("large_size") or size > _MAX32:
        head = _SIZE_TYPE.pack(1, raw_type) + _LARGE.pack(size + 8)
    else:
        head = _SIZE_TYPE.pack(size, raw_type)
    out.write(head + extended)
    out.extend(body)


def _build_children(children: Iterable[Mapping], out: ChunkWriter, parent: str) -> None:
    seen: dict[Any, int] = {}
    for child in children:
        fourcc = child.get("type") if isinstance(child, Mapping) else None
        build_box(child, out, child_path(parent, fourcc, seen))


class _BoxConstruct(Construct):
    """Shared parts of :data:`Box` and :data:`Boxes`: zero-copy entry points over any input."""

    def parse(self, data, *, strict: bool = False, **contextkw):
        """Parse ``data`` (bytes, bytearray, memoryview, mmap, file object or path) without copying payloads.

        Tolerated deviations are listed in the result's ``warnings`` (see :func:`parse_boxes`);
        ``strict=True`` makes each of them a :class:`BoxError` instead.
        """
        view, base = as_memoryview(data)
        return self._parse_tolerant(view, base, strict)

    def parse_file(self, filename, *, strict: bool = False, **contextkw):
        view, base = as_memoryview(filename)
        return self._parse_tolerant(view, base, strict)

    def parse_stream(self, stream, *, strict: bool = False, **contextkw):
        if isinstance(stream, ViewStream):
            return self._parse(stream, None, "(parsing)")
        view, base = as_memoryview(stream)
        result = self._parse_tolerant(view, base, strict)
        if hasattr(stream, "seek"):
            stream.seek(base + self._consumed(result))
        return result

    def _parse_tolerant(self, view, base, strict):
        with collect_warnings(strict) as found:
            result = self._parse_view(view, base)
        self._attach(result, found)
        return result

    def build(self, obj, **contextkw) -> bytes:
        out = ChunkWriter()
        self._build_chunks(obj, out)
        return out.getvalue()

    def build_stream(self, obj, stream, **contextkw):
        out = ChunkWriter()
        self._build_chunks(obj, out)
        for chunk in out.chunks:
            stream.write(chunk)
        return obj

    def build_file(self, obj, filename, **contextkw):
        """Build into ``filename`` through a temporary file beside it, renamed into place on success."""
        from ..atomic import atomic_file  # tempfile and fcntl: only a writer needs them

        out = ChunkWriter()
        self._build_chunks(obj, out)
        with atomic_file(filename) as f:
            for chunk in out.chunks:
                f.write(chunk)
        return obj

    def _build(self, obj, stream, context, path):
        return self.build_stream(obj, stream)

    def _sizeof(self, context, path):
        raise SizeofError("a box's size depends on its content", path=path)


class _OneBox(_BoxConstruct):
    def _parse_view(self, view, base):
        return parse_box(view, 0, len(view), base, _peek_type(view), 0)[0]

    def _attach(self, box, found):
        if found:
            box._warnings = found  # a key starting with "_": no part in equality

    def _consumed(self, box):
        return box._size

    def _parse(self, stream, context, path):
        if isinstance(stream, ViewStream):
            view = stream.view
            box, end = parse_box(view, stream.pos, len(view), 0, _peek_type(view[stream.pos :]), 0)
            stream.pos = end
            return box
        head = stream.read(16)
        size = _SIZE_TYPE.unpack_from(head)[0] if len(head) >= 8 else 0
        if size == 1 and len(head) >= 16:
            size = _LARGE.unpack_from(head, 8)[0]
        rest = stream.read() if size == 0 else stream.read(max(0, size - len(head)))
        data = head + rest
        box = parse_box(memoryview(data), 0, len(data), 0, _peek_type(data), 0)[0]
        if box._size < len(data) and hasattr(stream, "seek"):
            stream.seek(box._size - len(data), 1)
        return box

    def _build_chunks(self, obj, out):
        build_box(obj, out)


class _AllBoxes(_BoxConstruct):
    def _parse_view(self, view, base):
        boxes, tail = parse_boxes(view, base, top_level=True)
        if tail:
            boxes.trailing = tail
        return boxes

    def _attach(self, boxes, found):
        boxes.warnings = found

    def _consumed(self, boxes):
        return sum(box._size for box in boxes) + len(getattr(boxes, "trailing", b""))

    def _parse(self, stream, context, path):
        if isinstance(stream, ViewStream):
            boxes = parse_boxes(stream.view, 0, start=stream.pos)[0]
            stream.pos = len(stream.view)
            return boxes
        data = stream.read()
        return parse_boxes(memoryview(data))[0]

    def _build_chunks(self, obj, out):
        _build_children(obj, out, "")
        trailing = getattr(obj, "trailing", b"")
        if trailing:
            out.write(bytes(trailing))  # what followed the last box of the file it was parsed from


def _peek_type(view) -> str:
    return bytes(view[4:8]).decode("latin-1") if len(view) >= 8 else "box"


Box = _OneBox()
"""A construct for one box (recursively): ``Box.parse(buf)`` / ``Box.build(value)``."""

Boxes = _AllBoxes()
"""A construct for all the boxes of a buffer or file: ``Boxes.parse(mm)`` -> list of boxes."""
