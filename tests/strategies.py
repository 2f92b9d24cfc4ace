"""Hypothesis strategies for boxes: one per registered box type, whole trees, and mutations.

``box_values(fourcc)`` draws the plain values of one box (a dict with ``type`` first) that
``Box.build`` accepts; counts such as ``entry_count`` are left out (the builder computes them),
optional fields with a default are sometimes left out too. ``box_trees()`` draws lists of nested
boxes with unknown fourccs, ``uuid`` boxes, raw payloads and both unusual size encodings.
``assert_same_values(expected, parsed)`` compares a parsed box on the keys that were supplied.

``BZNA_HYPOTHESIS_PROFILE=long`` (see ``tests/conftest.py``) runs ``examples(n)`` times 20.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
from hypothesis import strategies as st

from bzna_boxes.boxes import registered_types
from bzna_boxes.boxes.containers import CONTAINERS
from bzna_boxes.boxes.fragment import trun_dtype
from bzna_boxes.boxes.integrity import checksum_dtype
from bzna_boxes.boxes.movie import ELST_V0, ELST_V1
from bzna_boxes.boxes.sample_table import CTTS_V0, CTTS_V1, STSC, STTS
from bzna_boxes.boxes.fragment import SIDX_REFERENCE

__all__ = [
    "FAMILIES",
    "VERSIONED",
    "BOX_STRATEGIES",
    "box_values",
    "box_trees",
    "unknown_fourccs",
    "assert_same_values",
    "examples",
]

_SCALE = 20 if os.environ.get("BZNA_HYPOTHESIS_PROFILE") == "long" else 1


def examples(n: int) -> int:
    """``n`` examples in CI, 20 times more under the ``long`` profile."""
    return n * _SCALE


FAMILIES: dict[str, tuple[str, ...]] = {
    "file": ("ftyp", "styp", "mdat", "free", "skip", "wide"),
    "movie": ("moov", "trak", "edts", "tref", "mvhd", "tkhd", "elst"),
    "media": ("mdia", "minf", "dinf", "dref", "mdhd", "hdlr", "vmhd", "smhd", "nmhd", "url "),
    "sample_table": ("stbl", "stsd", "stts", "ctts", "stss", "stsz", "stz2", "stsc", "stco", "co64"),
    "sample_entry": ("avc1", "avc3", "hvc1", "hev1", "mett", "metx", "avcC", "hvcC", "clap", "pasp", "colr", "btrt", "sinf", "schi"),
    "fragment": ("mvex", "moof", "traf", "mfra", "mfhd", "mehd", "tfhd", "tfdt", "trun", "trex", "sidx"),
    "meta": ("meta", "udta", "iprp", "ipco", "ilst", "ispe"),
    "integrity": ("bzsc",),
    "labels": ("bzcl",),
}
"""Which test module covers each registered type (tests/boxes/test_<family>.py)."""

VERSIONED = ("mvhd", "tkhd", "mdhd", "elst", "ctts", "mehd", "tfdt", "trun", "sidx")
"""Box types whose layout differs between version 0 and version 1."""

# ---------------------------------------------------------------------------------------------
# Field strategies

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
i16 = st.integers(-(2**15), 2**15 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)


def raw_bytes(n: int) -> st.SearchStrategy[bytes]:
    """Exactly ``n`` random bytes (reserved fields are random, not zero)."""
    return st.binary(min_size=n, max_size=n)


fourccs = raw_bytes(4).map(lambda b: b.decode("latin-1"))
"""Any four bytes, as the latin-1 str the schemas use."""


def unknown_fourccs() -> st.SearchStrategy[str]:
    """Four-byte types that no schema is registered for (and not ``uuid``)."""
    known = set(registered_types()) | {"uuid"}
    printable = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ", min_size=4, max_size=4)
    return st.one_of(printable.filter(lambda t: t not in known), fourccs.filter(lambda t: t not in known))


def fixed(raw: st.SearchStrategy[int], fraction_bits: int) -> st.SearchStrategy[float]:
    """Fixed-point numbers that the field represents exactly."""
    return raw.map(lambda r: r / (1 << fraction_bits))


fixed16_16 = fixed(u32, 16)
signed_fixed16_16 = fixed(i32, 16)
signed_fixed8_8 = fixed(i16, 8)

languages = st.builds(
    lambda pad, letters: ("!" if pad else "") + letters,
    st.booleans(),
    st.text(alphabet=[chr(c) for c in range(0x60, 0x80)], min_size=3, max_size=3),
)

escaped_text = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
"""Any bytes as str (undecodable bytes as surrogate escapes), as Utf8Rest and NulString keep them."""

exact_strings = st.one_of(
    st.text(max_size=30),
    st.text(max_size=30).map(lambda s: s + "\x00"),
    st.text(alphabet=st.sampled_from("ab\x00é"), max_size=8),
    escaped_text,
)
"""Strings kept exactly to the end of the box: with and without NUL, anywhere."""

nul_strings = st.one_of(st.text(max_size=30), escaped_text).filter(lambda s: "\x00" not in s)
"""Strings stored NUL-terminated (so without NUL inside)."""

compressor_names = st.one_of(
    st.text(max_size=31).filter(lambda s: len(s.encode("utf-8")) <= 31),
    # Non-canonical 32-byte fields (length byte above 31) stay bytes, so they round-trip too.
    st.tuples(st.integers(32, 255), raw_bytes(31)).map(lambda t: bytes([t[0]]) + t[1]),
)

nal_units = st.binary(min_size=1, max_size=24)


def tables(dtype, max_len: int = 12) -> st.SearchStrategy[np.ndarray]:
    """numpy tables of ``dtype`` (structured or not) with a random number of rows of random bytes."""
    dtype = np.dtype(dtype)
    if not dtype.itemsize:
        return st.integers(0, max_len).map(lambda n: np.zeros(n, dtype))
    rows = st.integers(0, max_len).flatmap(lambda n: raw_bytes(n * dtype.itemsize))
    return rows.map(lambda raw: np.frombuffer(raw, dtype).copy())


def _versions(version: int | None, choices=(0, 1)) -> st.SearchStrategy[int]:
    return st.just(version) if version is not None else st.sampled_from(choices)


def _box(fourcc: str, required: Mapping[str, Any], optional: Mapping[str, Any] | None = None):
    """Fixed dictionaries with ``type`` first; ``optional`` keys (fields with a default) may be left out."""
    return st.fixed_dictionaries({"type": st.just(fourcc), **required}, optional=dict(optional or {}))


def _full(fourcc: str, version, required=None, optional=None, flags=u24):
    """A FullBox: version and flags (random unless given), then the fields."""
    return _box(fourcc, {"version": version if isinstance(version, st.SearchStrategy) else st.just(version), "flags": flags, **(required or {})}, optional)


def _by_version(version: int) -> st.SearchStrategy[int]:
    return u64 if version == 1 else u32


# ---------------------------------------------------------------------------------------------
# Leaves for the children of typed containers

def _raw_box(fourcc_strategy) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"type": fourcc_strategy, "data": st.binary(max_size=24)})


unknown_boxes = _raw_box(unknown_fourccs())
uuid_boxes = st.fixed_dictionaries({"type": st.just("uuid"), "extended_type": raw_bytes(16), "data": st.binary(max_size=24)})


def _children(*fourcc: str, max_size: int = 3) -> st.SearchStrategy[list]:
    """Child lists drawn from unknown/uuid boxes and the typed leaves named."""
    choices = [unknown_boxes, uuid_boxes] + [st.deferred(lambda f=f: box_values(f)) for f in fourcc]
    return st.lists(st.one_of(choices), max_size=max_size)


# ---------------------------------------------------------------------------------------------
# One strategy per registered type: fourcc -> function(version or None) -> values

def _ftyp(fourcc):
    return lambda version=None: _box(fourcc, {"major_brand": fourccs, "minor_version": u32, "compatible_brands": st.lists(fourccs, max_size=5)})


def _raw(fourcc):
    return lambda version=None: _box(fourcc, {"data": st.binary(max_size=64)})


def _container(fourcc, *leaves):
    return lambda version=None: _box(fourcc, {"children": _children(*leaves)})


def _mvhd(version=None):
    def make(v):
        return _full(
            "mvhd",
            v,
            {"creation_time": _by_version(v), "modification_time": _by_version(v), "duration": _by_version(v), "next_track_id": u32},
            {
                "timescale": u32,
                "rate": signed_fixed16_16,
                "volume": signed_fixed8_8,
                "reserved": raw_bytes(10),
                "matrix": st.lists(i32, min_size=9, max_size=9),
                "pre_defined": raw_bytes(24),
            },
        )

    return _versions(version).flatmap(make)


def _tkhd(version=None):
    def make(v):
        return _full(
            "tkhd",
            v,
            {"creation_time": _by_version(v), "modification_time": _by_version(v), "track_id": u32, "duration": _by_version(v)},
            {
                "reserved": raw_bytes(4),
                "reserved_2": raw_bytes(8),
                "layer": i16,
                "alternate_group": i16,
                "volume": signed_fixed8_8,
                "reserved_3": raw_bytes(2),
                "matrix": st.lists(i32, min_size=9, max_size=9),
                "width": fixed16_16,
                "height": fixed16_16,
            },
        )

    return _versions(version).flatmap(make)


def _elst(version=None):
    return _versions(version).flatmap(lambda v: _full("elst", v, {"entries": tables(ELST_V1 if v == 1 else ELST_V0)}))


def _mdhd(version=None):
    def make(v):
        return _full(
            "mdhd",
            v,
            {"creation_time": _by_version(v), "modification_time": _by_version(v), "duration": _by_version(v)},
            {"timescale": u32, "language": languages, "pre_defined": u16},
        )

    return _versions(version).flatmap(make)


def _hdlr(version=None):
    return _full("hdlr", u8, {"handler_type": fourccs}, {"pre_defined": u32, "reserved": raw_bytes(12), "name": exact_strings})


def _counted(fourcc, *entries):
    return lambda version=None: _full(fourcc, u8, {"children": _children(*entries)})


def _table_box(fourcc, key, dtype):
    return lambda version=None: _full(fourcc, u8, {key: tables(dtype)})


def _ctts(version=None):
    return _versions(version).flatmap(lambda v: _full("ctts", v, {"entries": tables(CTTS_V1 if v == 1 else CTTS_V0)}))


def _stsz(version=None):
    table_form = _full("stsz", u8, {"entry_sizes": tables(">u4")}, {"sample_size": st.just(0)})
    constant_form = _full("stsz", u8, {"sample_size": st.integers(1, 0xFFFFFFFF), "sample_count": u32})
    return st.one_of(table_form, constant_form)


def _stz2(version=None):
    def make(bits):
        sizes = tables(np.uint16 if bits == 16 else np.uint8).map(lambda a: a & 0x0F if bits == 4 else a)
        return _full("stz2", u8, {"field_size": st.just(bits), "entry_sizes": sizes}, {"reserved": raw_bytes(3)})

    return st.sampled_from((4, 8, 16)).flatmap(make)


_VISUAL_OPTIONAL = {
    "reserved": raw_bytes(6),
    "data_reference_index": u16,
    "pre_defined": u16,
    "reserved_2": u16,
    "pre_defined_2": raw_bytes(12),
    "horizresolution": fixed16_16,
    "vertresolution": fixed16_16,
    "reserved_3": u32,
    "frame_count": u16,
    "compressorname": compressor_names,
    "depth": u16,
    "pre_defined_3": i16,
}


def _visual(fourcc, config):
    return lambda version=None: _box(
        fourcc,
        {"width": u16, "height": u16, "children": _children(config, "clap", "pasp", "colr", "btrt")},
        _VISUAL_OPTIONAL,
    )


def _mett(version=None):
    return _box(
        "mett",
        {"mime_format": nul_strings, "children": _children("btrt")},
        {"reserved": raw_bytes(6), "data_reference_index": u16, "content_encoding": nul_strings},
    )


def _metx(version=None):
    return _box(
        "metx",
        {"namespace": nul_strings, "children": _children("btrt")},
        {"reserved": raw_bytes(6), "data_reference_index": u16, "content_encoding": nul_strings, "schema_location": nul_strings},
    )


_HIGH_PROFILES = (100, 110, 122, 144)


def _avcc(version=None):
    high_profile_ext = st.fixed_dictionaries(
        {
            "reserved": st.integers(0, 0x3F),
            "chroma_format": st.integers(0, 3),
            "reserved_2": st.integers(0, 0x1F),
            "bit_depth_luma_minus8": st.integers(0, 7),
            "reserved_3": st.integers(0, 0x1F),
            "bit_depth_chroma_minus8": st.integers(0, 7),
            "sequence_parameter_set_exts": st.lists(nal_units, max_size=2),
        }
    )

    def make(profile):
        required = {
            "avc_profile_indication": st.just(profile),
            "profile_compatibility": u8,
            "avc_level_indication": u8,
            "reserved": st.integers(0, 0x3F),
            "length_size_minus_one": st.integers(0, 3),
            "reserved_2": st.integers(0, 7),
            "sequence_parameter_sets": st.lists(nal_units, max_size=3),
            "picture_parameter_sets": st.lists(nal_units, max_size=3),
        }
        if profile in _HIGH_PROFILES:
            required["high_profile"] = st.one_of(st.none(), high_profile_ext)
        return _box("avcC", required, {"configuration_version": u8})

    return st.one_of(st.sampled_from(_HIGH_PROFILES), u8).flatmap(make)


def _hvcc(version=None):
    nal_array = st.fixed_dictionaries(
        {"array_completeness": st.integers(0, 1), "reserved": st.integers(0, 1), "nal_unit_type": st.integers(0, 63), "nalus": st.lists(nal_units, max_size=3)}
    )
    return _box(
        "hvcC",
        {
            "general_profile_space": st.integers(0, 3),
            "general_tier_flag": st.integers(0, 1),
            "general_profile_idc": st.integers(0, 31),
            "general_profile_compatibility_flags": u32,
            "general_constraint_indicator_flags": st.integers(0, 2**48 - 1),
            "general_level_idc": u8,
            "reserved": st.integers(0, 15),
            "min_spatial_segmentation_idc": st.integers(0, 4095),
            "reserved_2": st.integers(0, 63),
            "parallelism_type": st.integers(0, 3),
            "reserved_3": st.integers(0, 63),
            "chroma_format_idc": st.integers(0, 3),
            "reserved_4": st.integers(0, 31),
            "bit_depth_luma_minus8": st.integers(0, 7),
            "reserved_5": st.integers(0, 31),
            "bit_depth_chroma_minus8": st.integers(0, 7),
            "constant_frame_rate": st.integers(0, 3),
            "num_temporal_layers": st.integers(0, 7),
            "temporal_id_nested": st.integers(0, 1),
            "length_size_minus_one": st.integers(0, 3),
            "arrays": st.lists(nal_array, max_size=4),
        },
        {"configuration_version": u8, "avg_frame_rate": u16},
    )


def _clap(version=None):
    return _box(
        "clap",
        {"clean_aperture_width_n": u32, "clean_aperture_height_n": u32},
        {"clean_aperture_width_d": u32, "clean_aperture_height_d": u32, "horiz_off_n": i32, "horiz_off_d": u32, "vert_off_n": i32, "vert_off_d": u32},
    )


def _colr(version=None):
    nclc = {"colour_primaries": u16, "transfer_characteristics": u16, "matrix_coefficients": u16}
    return st.one_of(
        _box("colr", {"colour_type": st.just("nclx"), **nclc, "full_range_flag": st.integers(0, 1), "reserved": st.integers(0, 127)}),
        _box("colr", {"colour_type": st.just("nclc"), **nclc}),
        _box("colr", {"colour_type": st.sampled_from(("rICC", "prof")), "icc_profile": st.binary(max_size=40)}),
        _box("colr", {"colour_type": fourccs.filter(lambda t: t not in ("nclx", "nclc", "rICC", "prof"))}),
    )


def _fixed_fields(fourcc, required=None, optional=None):
    return lambda version=None: _box(fourcc, required or {}, optional)


def _full_fields(fourcc, required=None, optional=None):
    return lambda version=None: _full(fourcc, u8, required, optional)


def _by_version_box(fourcc, field):
    return lambda version=None: _versions(version).flatmap(lambda v: _full(fourcc, v, {field: _by_version(v)}))


_TFHD_FIELDS = (
    (0x000001, "base_data_offset", u64),
    (0x000002, "sample_description_index", u32),
    (0x000008, "default_sample_duration", u32),
    (0x000010, "default_sample_size", u32),
    (0x000020, "default_sample_flags", u32),
)


def _tfhd(version=None):
    def make(flags):
        present = {name: s for bit, name, s in _TFHD_FIELDS if flags & bit}
        return _full("tfhd", u8, {"track_id": u32, **present}, flags=st.just(flags))

    return u24.flatmap(make)


def _trun(version=None):
    def make(v, flags):
        fields = {"samples": tables(trun_dtype(flags, v))}
        if flags & 0x000001:
            fields["data_offset"] = i32
        if flags & 0x000004:
            fields["first_sample_flags"] = u32
        return _full("trun", v, fields, flags=st.just(flags))

    return st.tuples(_versions(version), u24).flatmap(lambda t: make(*t))


def _sidx(version=None):
    def make(v):
        wide = u32 if v == 0 else u64
        return _full(
            "sidx",
            v,
            {"reference_id": u32, "timescale": u32, "references": tables(SIDX_REFERENCE)},
            {"earliest_presentation_time": wide, "first_offset": wide, "reserved": raw_bytes(2)},
        )

    return _versions(version).flatmap(make)


def _bzsc(version=None):
    def make(size):
        entry = st.fixed_dictionaries({"track_id": u32, "checksums": tables(checksum_dtype(size))})
        return _full("bzsc", u8, {"algorithm": fourccs, "checksum_size": st.just(size), "entries": st.lists(entry, max_size=4)})

    return st.sampled_from((1, 2, 4, 8, 16)).flatmap(make)


def _bzcl(version=None):
    # any bytes but NUL, as a file system name may be: parsed with surrogate escapes, built back exactly
    name = st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"").decode("utf-8", "surrogateescape"))
    return _full("bzcl", u8, {"class_names": st.lists(name, max_size=6)})


def _meta(version=None):
    full_form = _full("meta", u8, {"children": _children("hdlr", "ispe")})
    quicktime_form = st.builds(
        lambda hdlr, rest: {"type": "meta", "quicktime": True, "children": [hdlr, *rest]},
        st.deferred(lambda: box_values("hdlr")),
        _children("ilst"),
    )
    return st.one_of(full_form, quicktime_form)


BOX_STRATEGIES: dict[str, Callable[..., st.SearchStrategy[dict]]] = {
    # file.py
    "ftyp": _ftyp("ftyp"),
    "styp": _ftyp("styp"),
    "mdat": _raw("mdat"),
    "free": _raw("free"),
    "skip": _raw("skip"),
    "wide": _raw("wide"),
    # movie.py and its containers
    "moov": _container("moov", "mvhd", "trak"),
    "trak": _container("trak", "tkhd", "edts", "tref", "mdia"),
    "edts": _container("edts", "elst"),
    "tref": _container("tref"),
    "mvhd": _mvhd,
    "tkhd": _tkhd,
    "elst": _elst,
    # media.py and its containers
    "mdia": _container("mdia", "mdhd", "hdlr", "minf"),
    "minf": _container("minf", "vmhd", "smhd", "nmhd", "dinf", "stbl"),
    "dinf": _container("dinf", "dref"),
    "dref": _counted("dref", "url "),
    "mdhd": _mdhd,
    "hdlr": _hdlr,
    "vmhd": _full_fields("vmhd", optional={"graphicsmode": u16, "opcolor": st.lists(u16, min_size=3, max_size=3)}),
    "smhd": _full_fields("smhd", optional={"balance": signed_fixed8_8, "reserved": raw_bytes(2)}),
    "nmhd": _full_fields("nmhd"),
    "url ": _full_fields("url ", optional={"location": exact_strings}),
    # sample_table.py and its containers
    "stbl": _container("stbl", "stsd", "stts", "stsz", "stsc", "stco"),
    "stsd": _counted("stsd", "hvc1", "avc1", "mett"),
    "stts": _table_box("stts", "entries", STTS),
    "ctts": _ctts,
    "stss": _table_box("stss", "sample_numbers", ">u4"),
    "stsz": _stsz,
    "stz2": _stz2,
    "stsc": _table_box("stsc", "entries", STSC),
    "stco": _table_box("stco", "chunk_offsets", ">u4"),
    "co64": _table_box("co64", "chunk_offsets", ">u8"),
    # sample_entry.py
    "avc1": _visual("avc1", "avcC"),
    "avc3": _visual("avc3", "avcC"),
    "hvc1": _visual("hvc1", "hvcC"),
    "hev1": _visual("hev1", "hvcC"),
    "mett": _mett,
    "metx": _metx,
    "avcC": _avcc,
    "hvcC": _hvcc,
    "clap": _clap,
    "pasp": _fixed_fields("pasp", optional={"h_spacing": u32, "v_spacing": u32}),
    "colr": _colr,
    "btrt": _fixed_fields("btrt", optional={"buffer_size_db": u32, "max_bitrate": u32, "avg_bitrate": u32}),
    "sinf": _container("sinf", "schi"),
    "schi": _container("schi"),
    # fragment.py and its containers
    "mvex": _container("mvex", "mehd", "trex"),
    "moof": _container("moof", "mfhd", "traf"),
    "traf": _container("traf", "tfhd", "tfdt", "trun"),
    "mfra": _container("mfra"),
    "mfhd": _full_fields("mfhd", optional={"sequence_number": u32}),
    "mehd": _by_version_box("mehd", "fragment_duration"),
    "tfhd": _tfhd,
    "tfdt": _by_version_box("tfdt", "base_media_decode_time"),
    "trun": _trun,
    "trex": _full_fields(
        "trex",
        {"track_id": u32},
        {"default_sample_description_index": u32, "default_sample_duration": u32, "default_sample_size": u32, "default_sample_flags": u32},
    ),
    "sidx": _sidx,
    # meta.py and its containers
    "meta": _meta,
    "udta": _container("udta", "meta", "bzsc", "bzcl"),
    "iprp": _container("iprp", "ipco"),
    "ipco": _container("ipco", "hvcC", "ispe", "colr", "clap"),
    "ilst": _container("ilst"),
    "ispe": _full_fields("ispe", {"image_width": u32, "image_height": u32}),
    # integrity.py
    "bzsc": _bzsc,
    # labels.py
    "bzcl": _bzcl,
}


def box_values(fourcc: str, version: int | None = None) -> st.SearchStrategy[dict]:
    """The values of one ``fourcc`` box (``version`` 0 or 1 for the types in :data:`VERSIONED`)."""
    try:
        make = BOX_STRATEGIES[fourcc]
    except KeyError:
        raise KeyError(f"no strategy for box type {fourcc!r}: add one to tests/strategies.py") from None
    return make(version)


# ---------------------------------------------------------------------------------------------
# Whole trees

_LEAF_TYPES = tuple(
    f for f in BOX_STRATEGIES if f not in CONTAINERS and f not in ("stsd", "dref", "meta", "avc1", "avc3", "hvc1", "hev1", "mett", "metx")
)
_TREE_CONTAINERS = tuple(CONTAINERS)


@st.composite
def _node(draw, depth: int, max_depth: int) -> dict:
    kind = draw(st.sampled_from(("unknown", "uuid", "typed", "container", "container")) if depth < max_depth else st.sampled_from(("unknown", "uuid", "typed")))
    if kind == "unknown":
        return draw(_raw_box(unknown_fourccs()))
    if kind == "uuid":
        return draw(uuid_boxes)
    if kind == "typed":
        return draw(box_values(draw(st.sampled_from(_LEAF_TYPES))))
    box = {"type": draw(st.sampled_from(_TREE_CONTAINERS))}
    box["children"] = draw(box_lists(depth + 1, max_depth))
    last_to_end = box["children"] and box["children"][-1].get("size_to_end")
    if not last_to_end and draw(st.integers(0, 4)) == 0:
        box["trailing"] = draw(st.binary(min_size=1, max_size=7))
    return box


@st.composite
def box_lists(draw, depth: int = 0, max_depth: int = 4) -> list:
    """A list of sibling boxes, some with a 64-bit size that would fit 32 bits, the last maybe size 0."""
    boxes = draw(st.lists(_node(depth, max_depth), min_size=0 if depth else 1, max_size=4))
    boxes = [dict(box) for box in boxes]
    for box in boxes:
        if draw(st.integers(0, 3)) == 0:
            box["large_size"] = True
    if boxes and draw(st.integers(0, 3)) == 0:
        boxes[-1].pop("large_size", None)
        boxes[-1]["size_to_end"] = True
    return boxes


def box_trees(max_depth: int = 4) -> st.SearchStrategy[list]:
    """Top-level lists of boxes: nested containers, unknown and ``uuid`` boxes, typed leaves."""
    return box_lists(0, max_depth)


# ---------------------------------------------------------------------------------------------
# Comparison


def assert_same_values(expected: Any, actual: Any, where: str = "box") -> None:
    """Assert that ``actual`` (parsed) holds ``expected`` (supplied) on every key ``expected`` has."""
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping), f"{where}: expected a mapping, got {type(actual).__name__}"
        for key, value in expected.items():
            if key.startswith("_"):  # _offset, _size: where the box was, not what it holds
                continue
            assert key in actual, f"{where}: key {key!r} missing after parse"
            assert_same_values(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        actual_arr = np.asarray(actual)
        expected_arr = expected if isinstance(expected, np.ndarray) else np.array([tuple(r) if isinstance(r, (list, tuple)) else r for r in expected], actual_arr.dtype)
        assert len(expected_arr) == len(actual_arr), f"{where}: {len(expected_arr)} rows expected, {len(actual_arr)} parsed"
        if expected_arr.dtype.names is not None:
            assert actual_arr.dtype.names == expected_arr.dtype.names, f"{where}: columns {actual_arr.dtype.names}"
            for name in expected_arr.dtype.names:
                assert np.array_equal(expected_arr[name], actual_arr[name]), f"{where}.{name} differs"
        else:
            assert np.array_equal(expected_arr, actual_arr), f"{where} differs"
    elif isinstance(expected, (list, tuple)) and not isinstance(expected, (str, bytes)):
        assert len(expected) == len(actual), f"{where}: {len(expected)} items expected, {len(actual)} parsed"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same_values(e, a, f"{where}[{i}]")
    elif isinstance(expected, (bytes, bytearray, memoryview)):
        assert isinstance(actual, (bytes, bytearray, memoryview)), f"{where}: expected bytes, got {actual!r}"
        assert bytes(expected) == bytes(actual), f"{where}: {bytes(expected)!r} != {bytes(actual)!r}"
    else:
        assert type(expected) is type(actual) or {type(expected), type(actual)} <= {int, float, bool}, f"{where}: {expected!r} != {actual!r}"
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


# ---------------------------------------------------------------------------------------------
# Mutations of valid files, for the fuzz tests

_INTERESTING_32 = (0, 1, 2, 7, 8, 9, 15, 16, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
_INTERESTING_64 = (0, 1, 8, 15, 16, 17, 2**32, 2**63, 2**64 - 1)


def box_offsets(data: bytes) -> list[tuple[int, bool]]:
    """``(offset, has_64_bit_size)`` of every box in ``data`` (which must parse)."""
    from bzna_boxes import Boxes, walk

    return [(box._offset, bool(box.get("large_size"))) for _, box in walk(Boxes.parse(data))]


def _put(data: bytearray, pos: int, raw: bytes) -> None:
    data[pos : pos + len(raw)] = raw[: max(0, len(data) - pos)]


@st.composite
def mutated(draw, data: bytes, offsets: list[tuple[int, bool]] | None = None) -> bytes:
    """``data`` after one to three random edits: bit flips, truncation, size fields overwritten
    with 0/1/huge/small values, 32-bit words set to huge counts, inserted, deleted and duplicated bytes."""
    offsets = box_offsets(data) if offsets is None else offsets
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        n = len(out)
        op = draw(st.sampled_from(("flip", "truncate", "size", "size", "largesize", "word", "insert", "delete", "duplicate")))
        pos = draw(st.integers(0, max(0, n - 1)))
        if op == "flip" and n:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del out[pos:]
        elif op == "size" and offsets:
            at = draw(st.sampled_from(offsets))[0]
            old = int.from_bytes(data[at : at + 4], "big")
            value = draw(st.one_of(st.sampled_from(_INTERESTING_32), st.integers(max(0, old - 16), min(0xFFFFFFFF, old + 16)), u32))
            _put(out, at, value.to_bytes(4, "big"))
        elif op == "largesize" and offsets:
            wide = [at for at, is_wide in offsets if is_wide] or [at for at, _ in offsets]
            at = draw(st.sampled_from(wide))
            value = draw(st.one_of(st.sampled_from(_INTERESTING_64), u64))
            _put(out, at, (1).to_bytes(4, "big"))
            _put(out, at + 8, value.to_bytes(8, "big"))
        elif op == "word":
            value = draw(st.sampled_from(_INTERESTING_32))
            _put(out, pos, value.to_bytes(4, "big"))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 32))]
        elif op == "duplicate" and n:
            length = draw(st.integers(1, 64))
            chunk = bytes(out[pos : pos + length])
            at = draw(st.integers(0, n))
            out[at:at] = chunk
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Checks that go with the strategies


def round_trip(values: Mapping, construct=None):
    """values -> build -> parse: the parsed box holds ``values``, and parse -> build gives the same bytes.

    Returns the parsed box. ``construct`` is :data:`bzna_boxes.Box` (default) or ``Boxes`` for lists.
    """
    from bzna_boxes import Box

    construct = Box if construct is None else construct
    data = construct.build(values)
    parsed = construct.parse(data)
    assert_same_values(values, parsed)
    assert construct.build(parsed) == data
    return parsed


def family_cases(family: str) -> list[tuple[str, int | None]]:
    """``(fourcc, version)`` for every type of ``family``: versions 0 and 1 for :data:`VERSIONED`."""
    return [(f, v) for f in FAMILIES[family] for v in ((0, 1) if f in VERSIONED else (None,))]


def hexbytes(text: str) -> bytes:
    """Bytes from commented hex: everything after ``#`` on a line is ignored, as are spaces."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))
