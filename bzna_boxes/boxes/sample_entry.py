"""Sample entries and their configuration boxes (ISO/IEC 14496-12 §8.5, §12.1; 14496-15).

avc1/avc3/hvc1/hev1 (VisualSampleEntry), mett/metx (MetaDataSampleEntry), avcC, hvcC, clap,
pasp, colr, btrt.
"""

from __future__ import annotations

from construct import (
    Array,
    BytesInteger,
    Bytes,
    Default,
    GreedyBytes,
    If,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Optional,
    PrefixedArray,
    Prefixed,
    Rebuild,
    len_,
    this,
)

from .core import BoxType, register
from .fields import Fields, Fixed16_16, FourCC, NulString, Packed, PascalName32

_nal_unit = Prefixed(Int16ub, GreedyBytes)
"""A parameter set: 16-bit length, then the NAL unit."""

_sample_entry_head = (
    "reserved" / Default(Bytes(6), bytes(6)),
    "data_reference_index" / Default(Int16ub, 1),
)

VISUAL_SAMPLE_ENTRY = Fields(
    *_sample_entry_head,
    "pre_defined" / Default(Int16ub, 0),
    "reserved_2" / Default(Int16ub, 0),
    "pre_defined_2" / Default(Bytes(12), bytes(12)),
    "width" / Int16ub,
    "height" / Int16ub,
    "horizresolution" / Default(Fixed16_16, 72.0),
    "vertresolution" / Default(Fixed16_16, 72.0),
    "reserved_3" / Default(Int32ub, 0),
    "frame_count" / Default(Int16ub, 1),
    "compressorname" / Default(PascalName32, ""),
    "depth" / Default(Int16ub, 0x18),
    "pre_defined_3" / Default(Int16sb, -1),
)
"""The fields every VisualSampleEntry starts with; child boxes (avcC, hvcC, clap, ...) follow."""

for _fourcc, _name in (
    ("avc1", "AVCSampleEntry"),
    ("avc3", "AVCSampleEntry"),
    ("hvc1", "HEVCSampleEntry"),
    ("hev1", "HEVCSampleEntry"),
):
    register(BoxType(_fourcc, _name, VISUAL_SAMPLE_ENTRY, children=True))

register(
    BoxType(
        "mett",
        "TextMetaDataSampleEntry",
        Fields(*_sample_entry_head, "content_encoding" / Default(NulString, ""), "mime_format" / NulString),
        children=True,
    )
)
register(
    BoxType(
        "metx",
        "XMLMetaDataSampleEntry",
        Fields(
            *_sample_entry_head,
            "content_encoding" / Default(NulString, ""),
            "namespace" / NulString,
            "schema_location" / Default(NulString, ""),
        ),
        children=True,
    )
)

_HIGH_PROFILES = (100, 110, 122, 144)

register(
    BoxType(
        "avcC",
        "AVCConfigurationBox",
        Fields(
            "configuration_version" / Default(Int8ub, 1),
            "avc_profile_indication" / Int8ub,
            "profile_compatibility" / Int8ub,
            "avc_level_indication" / Int8ub,
            Packed(Int8ub, ("reserved", 6, 0x3F), ("length_size_minus_one", 2, 3)),
            Packed(Int8ub, ("reserved_2", 3, 0x7), ("num_of_sequence_parameter_sets", 5, lambda ctx: len(ctx.sequence_parameter_sets))),
            "sequence_parameter_sets" / Array(this.num_of_sequence_parameter_sets, _nal_unit),
            "num_of_picture_parameter_sets" / Rebuild(Int8ub, len_(this.picture_parameter_sets)),
            "picture_parameter_sets" / Array(this.num_of_picture_parameter_sets, _nal_unit),
            # High profiles may carry chroma format, bit depths and SPS extensions after the PPS.
            "high_profile"
            / If(
                lambda ctx: ctx.avc_profile_indication in _HIGH_PROFILES,
                Optional(
                    Fields(
                        Packed(Int8ub, ("reserved", 6, 0x3F), ("chroma_format", 2)),
                        Packed(Int8ub, ("reserved_2", 5, 0x1F), ("bit_depth_luma_minus8", 3)),
                        Packed(Int8ub, ("reserved_3", 5, 0x1F), ("bit_depth_chroma_minus8", 3)),
                        "sequence_parameter_set_exts" / PrefixedArray(Int8ub, _nal_unit),
                    )
                ),
            ),
        ),
    )
)

HVCC_ARRAY = Fields(
    Packed(Int8ub, ("array_completeness", 1, 1), ("reserved", 1, 0), ("nal_unit_type", 6)),
    "num_nalus" / Rebuild(Int16ub, len_(this.nalus)),
    "nalus" / Array(this.num_nalus, _nal_unit),
)

register(
    BoxType(
        "hvcC",
        "HEVCConfigurationBox",
        Fields(
            "configuration_version" / Default(Int8ub, 1),
            Packed(Int8ub, ("general_profile_space", 2, 0), ("general_tier_flag", 1, 0), ("general_profile_idc", 5)),
            "general_profile_compatibility_flags" / Int32ub,
            "general_constraint_indicator_flags" / BytesInteger(6),
            "general_level_idc" / Int8ub,
            Packed(Int16ub, ("reserved", 4, 0xF), ("min_spatial_segmentation_idc", 12, 0)),
            Packed(Int8ub, ("reserved_2", 6, 0x3F), ("parallelism_type", 2, 0)),
            Packed(Int8ub, ("reserved_3", 6, 0x3F), ("chroma_format_idc", 2, 1)),
            Packed(Int8ub, ("reserved_4", 5, 0x1F), ("bit_depth_luma_minus8", 3, 0)),
            Packed(Int8ub, ("reserved_5", 5, 0x1F), ("bit_depth_chroma_minus8", 3, 0)),
            "avg_frame_rate" / Default(Int16ub, 0),
            Packed(
                Int8ub,
                ("constant_frame_rate", 2, 0),
                ("num_temporal_layers", 3, 1),
                ("temporal_id_nested", 1, 1),
                ("length_size_minus_one", 2, 3),
            ),
            "num_of_arrays" / Rebuild(Int8ub, len_(this.arrays)),
            "arrays" / Array(this.num_of_arrays, HVCC_ARRAY),
        ),
    )
)

register(
    BoxType(
        "clap",
        "CleanApertureBox",
        Fields(
            "clean_aperture_width_n" / Int32ub,
            "clean_aperture_width_d" / Default(Int32ub, 1),
            "clean_aperture_height_n" / Int32ub,
            "clean_aperture_height_d" / Default(Int32ub, 1),
            "horiz_off_n" / Default(Int32sb, 0),
            "horiz_off_d" / Default(Int32ub, 1),
            "vert_off_n" / Default(Int32sb, 0),
            "vert_off_d" / Default(Int32ub, 1),
        ),
    )
)

register(BoxType("pasp", "PixelAspectRatioBox", Fields("h_spacing" / Default(Int32ub, 1), "v_spacing" / Default(Int32ub, 1))))

_NCLX = ("nclx", "nclc")
register(
    BoxType(
        "colr",
        "ColourInformationBox",
        Fields(
            "colour_type" / FourCC,
            "colour_primaries" / If(lambda ctx: ctx.colour_type in _NCLX, Int16ub),
            "transfer_characteristics" / If(lambda ctx: ctx.colour_type in _NCLX, Int16ub),
            "matrix_coefficients" / If(lambda ctx: ctx.colour_type in _NCLX, Int16ub),
            Packed(Int8ub, ("full_range_flag", 1, 0), ("reserved", 7, 0), when=lambda ctx: ctx.colour_type == "nclx"),
            "icc_profile" / If(lambda ctx: ctx.colour_type in ("rICC", "prof"), GreedyBytes),
        ),
    )
)

register(
    BoxType(
        "btrt",
        "BitRateBox",
        Fields("buffer_size_db" / Default(Int32ub, 0), "max_bitrate" / Default(Int32ub, 0), "avg_bitrate" / Default(Int32ub, 0)),
    )
)
