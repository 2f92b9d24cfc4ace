"""Field constructs shared by the box schemas: fixed-point numbers, fourccs, strings, numpy tables.

Every construct here is a bijection on the bytes it accepts, so that parse then build gives the
input back byte for byte (reserved bits and string padding included).
"""

from __future__ import annotations

import struct

import numpy as np
from construct import (
    Adapter,
    Bytes,
    Construct,
    Container,
    Default,
    FormatField,
    GreedyBytes,
    Int16sb,
    Int16ub,
    Int24ub,
    Int32sb,
    Int32ub,
    Int8ub,
    IfThenElse,
    Pass,
    Renamed,
    StopFieldError,
    StreamError,
    Struct,
    Subconstruct,
    evaluate,
    stream_read,
    stream_write,
)

from ..stream import ChunkWriter, ViewStream

__all__ = [
    "Fields",
    "Packed",
    "full_box",
    "FourCC",
    "Fixed16_16",
    "SignedFixed16_16",
    "SignedFixed8_8",
    "Language",
    "Utf8Rest",
    "NulString",
    "PascalName32",
    "Table",
    "as_table",
    "field_offset",
    "field_code",
    "field_struct",
    "entry_struct",
]


class Fields(Struct):
    """A ``Struct`` whose parsed Container holds only the fields (no ``_io`` back-reference)."""

    def _nested(self, context, stream) -> Container:
        """The context of this struct's fields, nested in ``context`` as ``Struct`` nests it."""
        nested = Container(
            _=context,
            _params=context._params,
            _root=None,
            _parsing=context._parsing,
            _building=context._building,
            _sizing=context._sizing,
            _subcons=self._subcons,
            _io=stream,
            _index=context.get("_index", None),
        )
        nested._root = context.get("_root", nested)
        return nested

    def _parse(self, stream, context, path):
        obj = Container()
        context = self._nested(context, stream)
        for sc in self.subcons:
            try:
                subobj = sc._parsereport(stream, context, path)
            except StopFieldError:
                break
            if sc.name:
                obj[sc.name] = subobj
                context[sc.name] = subobj
            elif isinstance(subobj, dict):
                obj.update(subobj)
                context.update(subobj)
        # The context refers to itself (_root): clear it, or the fields it holds (numpy tables
        # viewing an mmap) live until the garbage collector runs and the map cannot be closed.
        context.clear()
        return obj

    def _build(self, obj, stream, context, path):
        if obj is None:
            obj = Container()
        context = self._nested(context, stream)
        context.update(obj)
        for sc in self.subcons:
            if isinstance(sc, Packed):
                context.update(sc._build(context, stream, context, path))
                continue
            if sc.flagbuildnone:
                subobj = obj.get(sc.name, None)
            else:
                try:
                    subobj = obj[sc.name]
                except KeyError:
                    if not _absent_here(sc, context):
                        raise StreamError(f"missing field {sc.name!r}", path=path) from None
                    subobj = None
            if sc.name:
                context[sc.name] = subobj
            built = sc._build(subobj, stream, context, path)
            if sc.name:
                context[sc.name] = built
        if context._root is context:
            # Top level (the caller drops the result): clear the self-referring context as _parse
            # does, or the values it holds (tables viewing an mmap) wait for the garbage collector.
            context.clear()
        return context


def _absent_here(sc: Construct, context) -> bool:
    """True for a conditional field (``If``) whose condition is false here: it may be left out."""
    inner = sc.subcon if isinstance(sc, Renamed) else sc
    return isinstance(inner, IfThenElse) and inner.elsesubcon is Pass and not evaluate(inner.condfunc, context)


class Packed(Construct):
    """Several bit fields packed MSB-first into one integer field, parsed into the enclosing
    :class:`Fields` as separate keys (``Fields`` merges them).

    Each spec is ``(name, bits)``, ``(name, bits, default)`` or ``(name, bits, fn)`` where ``fn(ctx)``
    computes the value when building (a count, like ``Rebuild``). ``when(ctx)`` makes the whole
    group optional. Reserved bits get a name and a default so that any input round-trips.
    """

    def __init__(self, subcon: Construct, *specs, when=None):
        super().__init__()
        self.subcon = subcon
        self.specs = [(s[0], s[1], s[2] if len(s) > 2 else None) for s in specs]
        self.when = when
        total = sum(bits for _, bits, _ in self.specs)
        self.width = subcon.sizeof() * 8
        if total != self.width:
            raise ValueError(f"bit fields add up to {total} bits, field has {self.width}")

    def _parse(self, stream, context, path):
        if self.when is not None and not self.when(context):
            return None
        try:
            raw = self.subcon._parsereport(stream, context, path)
        except StreamError as exc:  # name the fields that are missing, not the integer holding them
            names = "+".join(name for name, _, _ in self.specs if not name.startswith("reserved")) or self.specs[0][0]
            raise StreamError(str(exc).split("\n")[-1], path=f"{path} -> {names}") from exc
        out = {}
        shift = self.width
        for name, bits, _ in self.specs:
            shift -= bits
            out[name] = (raw >> shift) & ((1 << bits) - 1)
        return out

    def _build(self, obj, stream, context, path):
        if self.when is not None and not self.when(context):
            return {}
        raw = 0
        shift = self.width
        built = {}
        for name, bits, default in self.specs:
            shift -= bits
            if callable(default):
                value = default(context)
            elif name in obj and obj[name] is not None:
                value = obj[name]
            elif default is not None:
                value = default
            else:
                raise StreamError(f"missing field {name!r}", path=path)
            value = int(value)
            if not 0 <= value < (1 << bits):
                raise StreamError(f"{name}={value} does not fit {bits} bits", path=path)
            raw |= value << shift
            built[name] = value
        self.subcon._build(raw, stream, context, path)
        return built

    def _sizeof(self, context, path):
        return self.subcon._sizeof(context, path)


class _FourCC(Adapter):
    def _decode(self, obj, context, path):
        return obj.decode("latin-1")

    def _encode(self, obj, context, path):
        data = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(data) != 4:
            raise StreamError(f"fourcc {obj!r} is not 4 bytes", path=path)
        return data


FourCC = _FourCC(Bytes(4))
"""Four bytes as a str (latin-1, so every byte value round-trips)."""


class _Fixed(Adapter):
    def __init__(self, subcon, fraction_bits: int):
        super().__init__(subcon)
        self.scale = 1 << fraction_bits

    def _decode(self, obj, context, path):
        return obj / self.scale

    def _encode(self, obj, context, path):
        return int(round(obj * self.scale))


Fixed16_16 = _Fixed(Int32ub, 16)
SignedFixed16_16 = _Fixed(Int32sb, 16)
SignedFixed8_8 = _Fixed(Int16sb, 8)


class _Language(Adapter):
    """ISO-639-2/T code packed in 15 bits (each letter minus 0x60), plus the leading pad bit."""

    def _decode(self, obj, context, path):
        code = "".join(chr(((obj >> shift) & 0x1F) + 0x60) for shift in (10, 5, 0))
        return code if not obj & 0x8000 else "!" + code

    def _encode(self, obj, context, path):
        pad = obj.startswith("!")
        letters = obj[1:] if pad else obj
        if len(letters) != 3 or any(not 0x60 <= ord(c) <= 0x7F for c in letters):
            raise StreamError(f"language {obj!r} is not three letters", path=path)
        value = 0x8000 if pad else 0
        for c, shift in zip(letters, (10, 5, 0)):
            value |= (ord(c) - 0x60) << shift
        return value


Language = _Language(Int16ub)
"""mdhd's packed language as a str such as ``"und"`` (``"!und"`` when the pad bit is set)."""


class _Utf8(Adapter):
    def _decode(self, obj, context, path):
        return obj.decode("utf-8", "surrogateescape")

    def _encode(self, obj, context, path):
        return obj.encode("utf-8", "surrogateescape") if isinstance(obj, str) else bytes(obj)


Utf8Rest = _Utf8(GreedyBytes)
"""The rest of the box body as a str, kept exactly (a trailing NUL, if any, stays in the str)."""


class _NulTerminated(Construct):
    """A NUL-terminated UTF-8 string (the NUL is not part of the value)."""

    def _parse(self, stream, context, path):
        if isinstance(stream, ViewStream):
            view = stream.view
            end = bytes(view[stream.pos :]).find(b"\x00") if len(view) - stream.pos < 4096 else -2
            if end == -2:
                end = bytes(view[stream.pos : stream.pos + 65536]).find(b"\x00")
            if end < 0:
                raise StreamError("string has no terminating NUL", path=path)
            data = stream.read(end)
            stream.read(1)
        else:
            chunks = []
            while True:
                b = stream_read(stream, 1, path)
                if b == b"\x00":
                    break
                chunks.append(b)
            data = b"".join(chunks)
        return data.decode("utf-8", "surrogateescape")

    def _build(self, obj, stream, context, path):
        data = obj.encode("utf-8", "surrogateescape") if isinstance(obj, str) else bytes(obj)
        if b"\x00" in data:
            raise StreamError(f"string {obj!r} contains a NUL", path=path)
        stream_write(stream, data + b"\x00", len(data) + 1, path)
        return obj


NulString = _NulTerminated()


class _PascalName32(Adapter):
    """The 32-byte compressorname: a length byte, the name, zero padding.

    Parses to a str when the field is canonical (length <= 31, zero padding), else to the raw
    32 bytes, so that any input round-trips.
    """

    def _decode(self, obj, context, path):
        n = obj[0]
        if n <= 31 and not any(obj[1 + n :]):
            try:
                return obj[1 : 1 + n].decode("utf-8")
            except UnicodeDecodeError:
                pass
        return obj

    def _encode(self, obj, context, path):
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        data = obj.encode("utf-8")
        if len(data) > 31:
            raise StreamError(f"compressor name {obj!r} is longer than 31 bytes", path=path)
        return bytes([len(data)]) + data + bytes(31 - len(data))


PascalName32 = _PascalName32(Bytes(32))


def as_table(obj, dtype: np.dtype, what: str = "table") -> np.ndarray:
    """``obj`` (array, list of ints or of tuples) as a contiguous array of ``dtype``.

    Values that do not fit the field widths raise ``ValueError`` instead of wrapping around.
    """
    dtype = np.dtype(dtype)
    if isinstance(obj, np.ndarray) and obj.dtype == dtype:
        return np.ascontiguousarray(obj)
    if dtype.names is None:
        arr = _exact_array(obj)
        if arr.size == 0:
            return np.zeros(0, dtype)
        if arr.ndim != 1:
            raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
        _check_range(arr, dtype, what)
        return np.ascontiguousarray(arr.astype(dtype))
    if isinstance(obj, np.ndarray) and obj.dtype.names is not None:
        if obj.dtype.names != dtype.names:
            raise ValueError(f"{what} has fields {obj.dtype.names}, expected {dtype.names}")
        out = np.empty(len(obj), dtype)
        for name in dtype.names:
            _check_range(obj[name], dtype[name], f"{what}.{name}")
            out[name] = obj[name]
        return out
    rows = [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in obj]
    if not rows:
        return np.zeros(0, dtype)
    widths = sorted({len(row) for row in rows})
    if widths != [len(dtype.names)]:
        raise ValueError(f"{what} rows have {' or '.join(map(str, widths))} values, expected {len(dtype.names)}")
    grid = np.empty((len(rows), len(dtype.names)), dtype=object)  # object: ints past int64 stay exact
    grid[:] = rows
    out = np.empty(len(rows), dtype)
    for i, name in enumerate(dtype.names):
        column = _exact_array(grid[:, i].tolist())
        _check_range(column, dtype[name], f"{what}.{name}")
        out[name] = column
    return out


def _exact_array(values) -> np.ndarray:
    """``np.asarray(values)``, except that Python ints too large for int64 (which numpy would turn
    into inexact floats, e.g. ``[2**40, 2**64 - 1]``) stay exact, as an object array."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f" and not isinstance(values, np.ndarray):
        exact = np.asarray(values, dtype=object)
        if all(isinstance(v, (int, np.integer)) for v in exact.flat):
            return exact
    return arr


def _check_range(arr: np.ndarray, dtype: np.dtype, what: str) -> None:
    if arr.size == 0 or dtype.kind not in "iu":
        return
    if arr.dtype.kind not in "iub":
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{what} holds non-integer values")
    info = np.iinfo(dtype)
    lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        raise ValueError(f"{what} values {lo}..{hi} do not fit {dtype.kind}{dtype.itemsize * 8}")


class Table(Construct):
    """``count`` fixed-size entries as one numpy array (big-endian ``dtype``), parsed without a copy.

    The length is checked against the bytes left before anything is read or allocated, so a
    count of 2**32 in a 40-byte box is an error, not a 16 GB allocation.
    """

    def __init__(self, dtype, count):
        super().__init__()
        self.dtype = dtype if callable(dtype) else np.dtype(dtype)
        self.count = count

    def _dtype(self, context) -> np.dtype:
        return np.dtype(self.dtype(context)) if callable(self.dtype) else self.dtype

    def _parse(self, stream, context, path):
        dtype = self._dtype(context)
        count = evaluate(self.count, context)
        nbytes = count * dtype.itemsize
        if not dtype.itemsize:  # e.g. a trun whose samples all take tfhd's defaults: no bytes, no memory
            return np.zeros(count, dtype)
        if isinstance(stream, ViewStream):
            left = stream.remaining()
            if nbytes > left:
                raise StreamError(
                    f"{count} entries of {dtype.itemsize} bytes need {nbytes} bytes, {left} left",
                    path=path,
                )
            return np.frombuffer(stream.take(nbytes), dtype)
        return np.frombuffer(stream_read(stream, nbytes, path), dtype)

    def _build(self, obj, stream, context, path):
        dtype = self._dtype(context)
        try:
            arr = as_table(obj if obj is not None else (), dtype, path.split(" -> ")[-1])
        except ValueError as exc:
            raise StreamError(str(exc), path=path) from exc
        count = evaluate(self.count, context)
        if count != len(arr):
            raise StreamError(f"table has {len(arr)} entries, count says {count}", path=path)
        if isinstance(stream, ChunkWriter):
            stream.write(memoryview(arr).cast("B"))  # no copy: the box engine joins or writes the chunks
        else:
            stream_write(stream, arr.tobytes(), arr.nbytes, path)
        return arr

    def _sizeof(self, context, path):
        return evaluate(self.count, context) * self._dtype(context).itemsize


def full_box(*subcons) -> Fields:
    """Fields of a FullBox: ``version`` (8 bits) and ``flags`` (24 bits), then ``subcons``."""
    return Fields("version" / Default(Int8ub, 0), "flags" / Default(Int24ub, 0), *subcons)


# --- layouts derived from the schemas (for readers that skip the engine, as fontTools' sstruct) ---


def _subcon(fields: Struct, name: str) -> Construct:
    for sc in fields.subcons:
        if sc.name == name:
            return sc
    raise KeyError(f"no field {name!r} in {', '.join(sc.name or '?' for sc in fields.subcons)}")


def field_offset(fields: Struct, name: str, **context) -> int:
    """Byte offset of field ``name`` in a body laid out by ``fields``: the sizes of the fields
    before it, which must be fixed given ``context`` (such as ``version=1`` for the 64-bit times
    of a version 1 ``tkhd``)."""
    _subcon(fields, name)  # a KeyError naming the fields when there is no such field
    offset = 0
    for sc in fields.subcons:
        if sc.name == name:
            return offset
        offset += sc.sizeof(**context)
    raise KeyError(f"no field {name!r} in {', '.join(sc.name or '?' for sc in fields.subcons)}")


def field_code(fields: Struct, name: str) -> str:
    """The ``struct`` code (``"I"``, ``"i"``, ``"H"``...) of a big-endian integer field (through
    ``Default``, adapters such as the fixed-point numbers, and renaming)."""
    sc = _subcon(fields, name)
    while not isinstance(sc, FormatField):
        if not isinstance(sc, Subconstruct):
            raise TypeError(f"field {name!r} is not a fixed-size integer ({type(sc).__name__})")
        sc = sc.subcon
    if sc.fmtstr[0] != ">":
        raise TypeError(f"field {name!r} is not big-endian ({sc.fmtstr!r})")
    return sc.fmtstr[1:]


def field_struct(fields: Struct, names: tuple[str, ...] | None = None, **context) -> struct.Struct:
    """A ``struct.Struct`` reading the consecutive integer fields ``names`` (all of ``fields``
    when None) of a body laid out by ``fields``, from the first of them (``context``: as for
    :func:`field_offset`)."""
    names = tuple(sc.name for sc in fields.subcons) if names is None else names
    codes = [field_code(fields, name) for name in names]
    at = field_offset(fields, names[0], **context)
    for name, code in zip(names, codes):
        if field_offset(fields, name, **context) != at:
            raise ValueError(f"fields {', '.join(names)} are not consecutive")
        at += struct.calcsize(">" + code)
    return struct.Struct(">" + "".join(codes))


def entry_struct(fields: Struct, name: str) -> struct.Struct:
    """A ``struct.Struct`` reading one entry of the :class:`Table` field ``name`` whose entries
    are plain big-endian integers (``stco``'s ``chunk_offsets``, ``stsz``'s ``entry_sizes``)."""
    sc = _subcon(fields, name)
    while not isinstance(sc, Table):
        inner = getattr(sc, "subcon", None) or getattr(sc, "thensubcon", None)
        if inner is None:
            raise TypeError(f"field {name!r} is not a table ({type(sc).__name__})")
        sc = inner
    if callable(sc.dtype) or sc.dtype.names is not None or sc.dtype.kind not in "iu":
        raise TypeError(f"field {name!r} is not a table of plain integers")
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[sc.dtype.itemsize]
    return struct.Struct(">" + (code.upper() if sc.dtype.kind == "u" else code))
