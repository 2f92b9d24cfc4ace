"""H.265 / HEVC bitstream helpers: NAL units and the hvcC configuration record.

Pure Python (no PyAV). Two framings of the same NAL units meet in this library:

* Annex B (ISO/IEC 23008-2 Annex B): each NAL unit preceded by a start code
  ``00 00 01`` or ``00 00 00 01``. libx265 writes this; NVDEC and FFmpeg's raw
  ``hevc`` parser read it.
* MP4 samples (ISO/IEC 14496-15): each NAL unit preceded by its length, big endian,
  on ``length_size_minus_one + 1`` bytes (4 here). The parameter sets (VPS, SPS, PPS)
  live in the ``hvcC`` box of the sample entry, not in the samples.

:func:`sample_to_annexb` turns an MP4 sample and its hvcC into the Annex B access unit
decoders read (:func:`to_annexb` for a picture). :func:`hvcc_fields` computes the field values of the HEVCDecoderConfigurationRecord
(ISO/IEC 14496-15 §8.3.3) the way FFmpeg's ``ff_isom_write_hvcc``
(libavformat/hevc.c) does, so that the record we write equals, byte for byte, the one
FFmpeg's mp4 muxer writes for the same parameter sets with the ``hvc1`` sample entry.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from .errors import BoxError

if TYPE_CHECKING:  # pragma: no cover
    from .image import EncodedImage

__all__ = [
    "VPS",
    "SPS",
    "PPS",
    "AUD",
    "PREFIX_SEI",
    "SUFFIX_SEI",
    "PARAMETER_SET_TYPES",
    "HevcError",
    "START_CODE",
    "split_annexb",
    "join_annexb",
    "to_annexb",
    "sample_to_annexb",
    "nal_unit_type",
    "to_length_prefixed",
    "from_length_prefixed",
    "nal_spans",
    "NAL_HEADER_SIZE",
    "hvcc_fields",
    "hvcc_fields_from_annexb",
    "VideoSignal",
    "video_signal",
]

# NAL unit types (ISO/IEC 23008-2 Table 7-1) that the library cares about.
VPS = 32
SPS = 33
PPS = 34
AUD = 35
PREFIX_SEI = 39
SUFFIX_SEI = 40
PARAMETER_SET_TYPES = frozenset((VPS, SPS, PPS))
START_CODE = b"\x00\x00\x00\x01"
"""The 4-byte Annex B start code this library writes."""
NAL_HEADER_SIZE = 2
"""Bytes of an H.265 NAL unit header: a shorter NAL unit is malformed."""
_NAMES = {VPS: "VPS", SPS: "SPS", PPS: "PPS", PREFIX_SEI: "prefix SEI", SUFFIX_SEI: "suffix SEI"}

_UNSPECIFIED = 2  # colour description code "unspecified" (ITU-T H.273)
_MAX_SPATIAL_SEGMENTATION = 4096  # largest value of the u(12) field
_MAX_SHORT_TERM_REF_PIC_SETS = 64


class HevcError(BoxError):
    """Malformed H.265 data: a bad Annex B stream, NAL unit or parameter set."""


# ---------------------------------------------------------------------------
# NAL unit framing


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex B byte stream into its NAL units, start codes removed.

    Both 3-byte (``00 00 01``) and 4-byte (``00 00 00 01``) start codes are accepted,
    as are leading zero bytes before the first start code. The ``trailing_zero_8bits``
    between NAL units (the extra zero of a 4-byte start code included) are dropped:
    a NAL unit never ends with a zero byte (its last byte holds the RBSP stop bit).

    Raises :class:`HevcError` when the data does not start with a start code.
    """
    data = bytes(data)
    start = data.find(b"\x00\x00\x01")
    if start < 0 or data[:start].strip(b"\x00"):
        raise HevcError("not an Annex B stream: no start code (00 00 01) at its beginning", offset=0)
    nals = []
    pos = start + 3
    while True:
        nxt = data.find(b"\x00\x00\x01", pos)
        end = len(data) if nxt < 0 else nxt
        nal = data[pos:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        if nxt < 0:
            return nals
        pos = nxt + 3


def join_annexb(nals: Iterable[bytes]) -> bytes:
    """Join NAL units into an Annex B stream with 4-byte start codes (the inverse of :func:`split_annexb`)."""
    return b"".join(START_CODE + bytes(nal) for nal in nals)


def nal_unit_type(nal: bytes) -> int:
    """The ``nal_unit_type`` of a NAL unit (the 6 bits after the forbidden zero bit)."""
    if not nal:
        raise HevcError("empty NAL unit has no type")
    return (nal[0] >> 1) & 0x3F


def to_length_prefixed(nals: Iterable[bytes], length_size: int = 4) -> bytes:
    """NAL units in MP4 sample form: each preceded by its big-endian length."""
    if length_size not in (1, 2, 4):
        raise HevcError(f"NAL length size must be 1, 2 or 4 bytes, not {length_size}")
    limit = 1 << (8 * length_size)
    out = []
    for nal in nals:
        if len(nal) >= limit:
            raise HevcError(f"NAL unit of {len(nal)} bytes does not fit a {length_size}-byte length")
        out.append(len(nal).to_bytes(length_size, "big"))
        out.append(bytes(nal))
    return b"".join(out)


def from_length_prefixed(data: bytes, length_size: int = 4) -> list[bytes]:
    """The NAL units of an MP4 sample (the inverse of :func:`to_length_prefixed`)."""
    if length_size not in (1, 2, 4):
        raise HevcError(f"NAL length size must be 1, 2 or 4 bytes, not {length_size}")
    data = memoryview(data)
    nals = []
    pos = 0
    while pos < len(data):
        if pos + length_size > len(data):
            raise HevcError(f"truncated NAL length in a {len(data)}-byte sample", offset=pos)
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if pos + size > len(data):
            raise HevcError(f"NAL unit claims {size} bytes, only {len(data) - pos} are left", offset=pos)
        nals.append(bytes(data[pos : pos + size]))
        pos += size
    return nals


def nal_spans(payload: memoryview, length_size: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` byte ranges of the NAL units of a length-prefixed MP4 sample.

    Raises :class:`BoxError` (offset within the sample) for a truncated length, a NAL unit
    running past the end of the sample or one shorter than its 2-byte header.
    """
    if length_size not in (1, 2, 4):
        raise BoxError(f"NAL unit lengths of {length_size} bytes: hvcC allows 1, 2 or 4", path="hvcC")
    size = len(payload)
    spans = []
    pos = 0
    while pos < size:
        start = pos + length_size
        if start > size:
            raise BoxError(
                f"truncated NAL unit length: {size - pos} bytes left of a {size}-byte sample, "
                f"{length_size} needed",
                offset=pos,
                path="sample",
            )
        nal_size = int.from_bytes(payload[pos:start], "big")
        end = start + nal_size
        if end > size:
            raise BoxError(
                f"NAL unit of {nal_size} bytes runs past the end of the {size}-byte sample "
                f"({size - start} bytes left)",
                offset=pos,
                path="sample",
            )
        if nal_size < NAL_HEADER_SIZE:
            raise BoxError(f"NAL unit of {nal_size} bytes is shorter than its 2-byte header", offset=pos, path="sample")
        spans.append((start, end))
        pos = end
    return spans


# ---------------------------------------------------------------------------
# MP4 samples to Annex B, as decoders read them
#
# An ``hvc1`` sample holds its NAL units each preceded by a big-endian length of 1, 2 or 4
# bytes (hvcC's ``length_size_minus_one`` + 1, ISO/IEC 14496-15 §8.3.3); its parameter sets
# live in the ``hvcC`` record. NVDEC and FFmpeg's raw ``hevc`` parser read Annex B instead:
# :func:`sample_to_annexb` writes, like FFmpeg's ``hevc_mp4toannexb`` bitstream filter on an
# IRAP picture, the NAL units of the hvcC arrays in record order (VPS, SPS, PPS, SEI), then
# those of the sample, each after :data:`START_CODE`. It walks the NAL lengths (one
# ``int.from_bytes`` per NAL unit, no loop over bytes) and copies each unit once into one
# preallocated buffer.

def _parameter_sets(hvcc: Mapping[str, Any]) -> list[bytes | memoryview]:
    """The NAL units of every hvcC array, in record order."""
    try:
        arrays = hvcc["arrays"]
        nals = [nal for array in arrays for nal in array["nalus"]]
    except (KeyError, TypeError) as exc:
        raise BoxError(f"hvcC record without NAL unit arrays ({exc!r})", path="hvcC") from exc
    for index, nal in enumerate(nals):
        if len(nal) < NAL_HEADER_SIZE:
            raise BoxError(f"hvcC NAL unit {index} has {len(nal)} bytes, fewer than its 2-byte header", path="hvcC")
    return nals


def _length_size(hvcc: Mapping[str, Any]) -> int:
    try:
        return int(hvcc["length_size_minus_one"]) + 1
    except (KeyError, TypeError, ValueError) as exc:
        raise BoxError(f"hvcC record without a usable length_size_minus_one ({exc!r})", path="hvcC") from exc


def sample_to_annexb(payload: bytes | bytearray | memoryview, hvcc: Mapping[str, Any]) -> bytearray:
    """One MP4 sample and its hvcC record as an Annex B access unit (parameter sets first).

    Returns the one buffer it fills (a ``bytearray``, usable wherever ``bytes`` are).
    """
    view = memoryview(payload)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    parameter_sets = _parameter_sets(hvcc)
    spans = nal_spans(view, _length_size(hvcc))
    return _join(parameter_sets, view, spans)


def to_annexb(image: "EncodedImage") -> bytearray:
    """The Annex B access unit of a picture (:class:`~bzna_boxes.image.EncodedImage`): hvcC NALs, then the sample's.

    What NVDEC and FFmpeg's ``hevc`` decoder read; see :func:`sample_to_annexb`.
    """
    return sample_to_annexb(image.payload, image.hvcc)


def _join(parameter_sets: Iterable[bytes | memoryview], payload: memoryview, spans: list[tuple[int, int]]) -> bytearray:
    parameter_sets = list(parameter_sets)
    total = sum(len(START_CODE) + len(nal) for nal in parameter_sets)
    total += sum(len(START_CODE) + end - start for start, end in spans)
    out = bytearray(total)
    pos = 0
    for nal in parameter_sets:
        out[pos : pos + 4] = START_CODE
        out[pos + 4 : pos + 4 + len(nal)] = nal
        pos += 4 + len(nal)
    for start, end in spans:
        out[pos : pos + 4] = START_CODE
        out[pos + 4 : pos + 4 + end - start] = payload[start:end]
        pos += 4 + end - start
    return out


# ---------------------------------------------------------------------------
# Bit reading (RBSP)


def _rbsp(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: its bytes with emulation prevention (00 00 03) removed."""
    return bytes(nal).replace(b"\x00\x00\x03", b"\x00\x00")


class _BitReader:
    """MSB-first reader over a whole RBSP held as one Python int."""

    __slots__ = ("_value", "_size", "pos", "_what")

    def __init__(self, data: bytes, what: str):
        self._value = int.from_bytes(data, "big")
        self._size = 8 * len(data)
        self.pos = 0
        self._what = what

    def u(self, n: int) -> int:
        end = self.pos + n
        if end > self._size:
            raise HevcError(f"{self._what} is truncated: read past its end at bit {self.pos}")
        self.pos = end
        return (self._value >> (self._size - end)) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        self.u(n)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 32:
                raise HevcError(f"{self._what}: invalid Exp-Golomb code at bit {self.pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# ---------------------------------------------------------------------------
# Parameter set parsing, as FFmpeg's hvcC writer does it


class _Record:
    """Mutable state while merging parameter sets (mirrors FFmpeg's hvcc_init)."""

    def __init__(self) -> None:
        self.general_profile_space = 0
        self.general_tier_flag = 0
        self.general_profile_idc = 0
        self.general_profile_compatibility_flags = 0xFFFFFFFF
        self.general_constraint_indicator_flags = 0xFFFFFFFFFFFF
        self.general_level_idc = 0
        self.min_spatial_segmentation_idc = _MAX_SPATIAL_SEGMENTATION + 1
        self.parallelism_type = 0
        self.chroma_format_idc = 0
        self.bit_depth_luma_minus8 = 0
        self.bit_depth_chroma_minus8 = 0
        self.num_temporal_layers = 0
        self.temporal_id_nested = 0
        self.video_full_range_flag = 0
        self.colour_primaries = _UNSPECIFIED
        self.transfer_characteristics = _UNSPECIFIED
        self.matrix_coeffs = _UNSPECIFIED

    def profile_tier_level(self, r: _BitReader, max_sub_layers_minus1: int) -> None:
        profile_space = r.u(2)
        tier_flag = r.u(1)
        profile_idc = r.u(5)
        compatibility_flags = r.u(32)
        constraint_flags = r.u(48)
        level_idc = r.u(8)
        # Merge rules of ISO/IEC 14496-15 as FFmpeg applies them (hvcc_update_ptl).
        self.general_profile_space = profile_space
        if self.general_tier_flag < tier_flag:
            self.general_level_idc = level_idc
        else:
            self.general_level_idc = max(self.general_level_idc, level_idc)
        self.general_tier_flag = max(self.general_tier_flag, tier_flag)
        self.general_profile_idc = max(self.general_profile_idc, profile_idc)
        self.general_profile_compatibility_flags &= compatibility_flags
        self.general_constraint_indicator_flags &= constraint_flags

        present = [(r.u(1), r.u(1)) for _ in range(max_sub_layers_minus1)]
        if max_sub_layers_minus1 > 0:
            r.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
        for profile_present, level_present in present:
            if profile_present:
                r.skip(88)  # sub_layer profile space .. reserved_zero_43bits + inbld flag
            if level_present:
                r.skip(8)  # sub_layer_level_idc

    def vps(self, r: _BitReader) -> None:
        r.skip(4 + 2 + 6)  # vps_video_parameter_set_id, reserved_three_2bits, max_layers_minus1
        max_sub_layers_minus1 = r.u(3)
        self.num_temporal_layers = max(self.num_temporal_layers, max_sub_layers_minus1 + 1)
        r.skip(1 + 16)  # vps_temporal_id_nesting_flag, vps_reserved_0xffff_16bits
        self.profile_tier_level(r, max_sub_layers_minus1)

    def sps(self, r: _BitReader) -> None:
        r.skip(4)  # sps_video_parameter_set_id
        max_sub_layers_minus1 = r.u(3)
        self.num_temporal_layers = max(self.num_temporal_layers, max_sub_layers_minus1 + 1)
        self.temporal_id_nested = r.u(1)
        self.profile_tier_level(r, max_sub_layers_minus1)
        r.ue()  # sps_seq_parameter_set_id
        self.chroma_format_idc = r.ue()
        if self.chroma_format_idc > 3:
            raise HevcError(f"SPS: chroma_format_idc {self.chroma_format_idc} is out of range 0..3")
        if self.chroma_format_idc == 3:
            r.skip(1)  # separate_colour_plane_flag
        r.ue()  # pic_width_in_luma_samples
        r.ue()  # pic_height_in_luma_samples
        if r.u(1):  # conformance_window_flag
            for _ in range(4):
                r.ue()
        self.bit_depth_luma_minus8 = r.ue()
        self.bit_depth_chroma_minus8 = r.ue()
        if self.bit_depth_luma_minus8 > 7 or self.bit_depth_chroma_minus8 > 7:
            raise HevcError("SPS: bit depth out of range 8..15")
        log2_max_poc_lsb_minus4 = r.ue()
        first = 0 if r.u(1) else max_sub_layers_minus1  # sub_layer_ordering_info_present
        for _ in range(first, max_sub_layers_minus1 + 1):
            r.ue(), r.ue(), r.ue()  # max_dec_pic_buffering, num_reorder, latency_increase
        for _ in range(6):  # coding block, transform block sizes and depths
            r.ue()
        if r.u(1) and r.u(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present
            _skip_scaling_list_data(r)
        r.skip(2)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
        if r.u(1):  # pcm_enabled_flag
            r.skip(8)
            r.ue(), r.ue()
            r.skip(1)
        num_rps = r.ue()
        if num_rps > _MAX_SHORT_TERM_REF_PIC_SETS:
            raise HevcError(f"SPS: {num_rps} short-term reference picture sets (at most 64)")
        num_delta_pocs: list[int] = []
        for idx in range(num_rps):
            num_delta_pocs.append(_skip_st_ref_pic_set(r, idx, num_delta_pocs))
        if r.u(1):  # long_term_ref_pics_present_flag
            count = r.ue()
            if count > 31:
                raise HevcError(f"SPS: {count} long-term reference pictures (at most 31)")
            for _ in range(count):
                r.skip(min(log2_max_poc_lsb_minus4 + 4, 16) + 1)
        r.skip(2)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
        if r.u(1):  # vui_parameters_present_flag
            self.vui(r, max_sub_layers_minus1)

    def vui(self, r: _BitReader, max_sub_layers_minus1: int) -> None:
        if r.u(1) and r.u(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc
            r.skip(32)  # sar_width, sar_height
        if r.u(1):  # overscan_info_present_flag
            r.skip(1)
        if r.u(1):  # video_signal_type_present_flag
            r.skip(3)  # video_format
            self.video_full_range_flag = r.u(1)
            if r.u(1):  # colour_description_present_flag
                self.colour_primaries = r.u(8)
                self.transfer_characteristics = r.u(8)
                self.matrix_coeffs = r.u(8)
        if r.u(1):  # chroma_loc_info_present_flag
            r.ue(), r.ue()
        r.skip(3)  # neutral_chroma_indication, field_seq, frame_field_info_present
        if r.u(1):  # default_display_window_flag
            for _ in range(4):
                r.ue()
        if r.u(1):  # vui_timing_info_present_flag
            r.skip(64)  # num_units_in_tick, time_scale
            if r.u(1):  # poc_proportional_to_timing_flag
                r.ue()
            if r.u(1):  # vui_hrd_parameters_present_flag
                _skip_hrd_parameters(r, max_sub_layers_minus1)
        if r.u(1):  # bitstream_restriction_flag
            r.skip(3)
            self.min_spatial_segmentation_idc = min(self.min_spatial_segmentation_idc, r.ue())
            # max_bytes_per_pic_denom .. log2_max_mv_length_vertical: not needed

    def pps(self, r: _BitReader) -> None:
        r.ue(), r.ue()  # pps_pic_parameter_set_id, pps_seq_parameter_set_id
        r.skip(7)
        r.ue(), r.ue(), r.se()  # num_ref_idx_l0/l1_default_active_minus1, init_qp_minus26
        r.skip(2)  # constrained_intra_pred_flag, transform_skip_enabled_flag
        if r.u(1):  # cu_qp_delta_enabled_flag
            r.ue()
        r.se(), r.se()  # pps_cb_qp_offset, pps_cr_qp_offset
        r.skip(4)
        tiles = r.u(1)
        wavefronts = r.u(1)
        if tiles and wavefronts:
            self.parallelism_type = 0  # mixed
        elif wavefronts:
            self.parallelism_type = 3
        elif tiles:
            self.parallelism_type = 2
        else:
            self.parallelism_type = 1  # slices


def _skip_scaling_list_data(r: _BitReader) -> None:
    for size_id in range(4):
        for _ in range(2 if size_id == 3 else 6):
            if not r.u(1):  # scaling_list_pred_mode_flag
                r.ue()
            else:
                if size_id > 1:
                    r.se()  # scaling_list_dc_coef_minus8
                for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                    r.se()


def _skip_st_ref_pic_set(r: _BitReader, idx: int, num_delta_pocs: list[int]) -> int:
    """Skip st_ref_pic_set(idx) of an SPS; return its NumDeltaPocs."""
    if idx and r.u(1):  # inter_ref_pic_set_prediction_flag
        r.skip(1)  # delta_rps_sign
        r.ue()  # abs_delta_rps_minus1
        count = 0
        for _ in range(num_delta_pocs[idx - 1] + 1):
            used = r.u(1)
            if used or r.u(1):  # used_by_curr_pic_flag, use_delta_flag
                count += 1
        return count
    negatives = r.ue()
    positives = r.ue()
    if negatives > 16 or positives > 16:
        raise HevcError("SPS: too many pictures in a short-term reference picture set")
    for _ in range(negatives + positives):
        r.ue()
        r.skip(1)
    return negatives + positives


def _skip_sub_layer_hrd(r: _BitReader, cpb_cnt_minus1: int, sub_pic: int) -> None:
    for _ in range(cpb_cnt_minus1 + 1):
        r.ue(), r.ue()
        if sub_pic:
            r.ue(), r.ue()
        r.skip(1)  # cbr_flag


def _skip_hrd_parameters(r: _BitReader, max_sub_layers_minus1: int) -> None:
    """Skip hrd_parameters(commonInfPresentFlag=1, maxNumSubLayersMinus1) of a VUI.

    Unlike FFmpeg's hvcC writer, fixed_pic_rate_within_cvs_flag is inferred to be 1
    when fixed_pic_rate_general_flag is 1 (ISO/IEC 23008-2 E.3.2); FFmpeg reads a
    low_delay_hrd_flag there instead. The two only differ for streams with HRD
    parameters (x265 writes them only with ``--hrd``).
    """
    nal_hrd = r.u(1)
    vcl_hrd = r.u(1)
    sub_pic = 0
    if nal_hrd or vcl_hrd:
        sub_pic = r.u(1)
        if sub_pic:
            r.skip(19)
        r.skip(8)  # bit_rate_scale, cpb_size_scale
        if sub_pic:
            r.skip(4)  # cpb_size_du_scale
        r.skip(15)
    for _ in range(max_sub_layers_minus1 + 1):
        within_cvs = 1 if r.u(1) else r.u(1)  # fixed_pic_rate_general / _within_cvs
        low_delay = 0
        cpb_cnt_minus1 = 0
        if within_cvs:
            r.ue()  # elemental_duration_in_tc_minus1
        else:
            low_delay = r.u(1)
        if not low_delay:
            cpb_cnt_minus1 = r.ue()
            if cpb_cnt_minus1 > 31:
                raise HevcError("SPS: cpb_cnt_minus1 out of range in the HRD parameters")
        for present in (nal_hrd, vcl_hrd):
            if present:
                _skip_sub_layer_hrd(r, cpb_cnt_minus1, sub_pic)


# ---------------------------------------------------------------------------
# The hvcC record


def hvcc_fields(
    vps: Sequence[bytes],
    sps: Sequence[bytes],
    pps: Sequence[bytes],
    sei: Sequence[bytes] = (),
    length_size_minus_one: int = 3,
    *,
    array_completeness: int = 1,
) -> dict:
    """Field values of the HEVCDecoderConfigurationRecord of these parameter sets.

    ``vps``, ``sps``, ``pps`` and ``sei`` are NAL units without start codes or
    lengths. The values are those FFmpeg's ``ff_isom_write_hvcc`` computes:
    profile, tier, level and the flags merged over the profile_tier_level of every
    VPS and SPS; chroma format, bit depths and ``temporal_id_nested`` from the SPS;
    ``num_temporal_layers`` the largest ``max_sub_layers_minus1 + 1``;
    ``min_spatial_segmentation_idc`` the smallest found in the SPS VUIs (0 when none
    says); ``parallelism_type`` from the PPS tiles/wavefront flags, 0 when
    ``min_spatial_segmentation_idc`` is 0; ``avg_frame_rate`` and
    ``constant_frame_rate`` 0 (unspecified).

    ``arrays`` lists VPS, SPS, PPS, then prefix SEI and suffix SEI arrays when there
    are SEI units, in FFmpeg's order. ``array_completeness`` (1 for ``hvc1`` sample
    entries, where all parameter sets are in the record; 0 suits ``hev1``) applies
    to the parameter set arrays; the SEI arrays always carry 0, as FFmpeg writes.

    Reserved bits are not keys. Raises :class:`HevcError` for a missing or
    malformed parameter set.
    """
    if not 0 <= length_size_minus_one <= 3 or length_size_minus_one == 2:
        raise HevcError(f"length_size_minus_one must be 0, 1 or 3, not {length_size_minus_one}")
    for nal in sei:
        if nal_unit_type(nal) not in (PREFIX_SEI, SUFFIX_SEI):
            raise HevcError(f"SEI list holds a NAL unit of type {nal_unit_type(nal)}, not 39 or 40")
    groups = [(VPS, list(vps)), (SPS, list(sps)), (PPS, list(pps))]
    for t in (PREFIX_SEI, SUFFIX_SEI):
        units = [bytes(n) for n in sei if nal_unit_type(n) == t]
        if units:
            groups.append((t, units))

    record = _Record()
    parsers = {VPS: record.vps, SPS: record.sps, PPS: record.pps}
    for t, units in groups:
        name = _NAMES[t]
        if t in parsers and not units:
            raise HevcError(f"an hvcC record needs at least one {name}")
        for nal in units:
            if len(nal) < 3:
                raise HevcError(f"{name} NAL unit of {len(nal)} bytes is too short")
            if nal_unit_type(nal) != t:
                raise HevcError(f"{name} list holds a NAL unit of type {nal_unit_type(nal)}, not {t}")
            if len(nal) > 0xFFFF:
                raise HevcError(f"{name} NAL unit of {len(nal)} bytes exceeds hvcC's 16-bit length")
            if t in parsers:
                parsers[t](_BitReader(_rbsp(nal)[2:], name))

    if record.min_spatial_segmentation_idc > _MAX_SPATIAL_SEGMENTATION:
        record.min_spatial_segmentation_idc = 0
    if not record.min_spatial_segmentation_idc:
        record.parallelism_type = 0
    # 4096 keeps its parallelism type but, as in FFmpeg's writer, only its low 12 bits (0) are stored
    record.min_spatial_segmentation_idc &= 0xFFF

    return {
        "configuration_version": 1,
        "general_profile_space": record.general_profile_space,
        "general_tier_flag": record.general_tier_flag,
        "general_profile_idc": record.general_profile_idc,
        "general_profile_compatibility_flags": record.general_profile_compatibility_flags,
        "general_constraint_indicator_flags": record.general_constraint_indicator_flags,
        "general_level_idc": record.general_level_idc,
        "min_spatial_segmentation_idc": record.min_spatial_segmentation_idc,
        "parallelism_type": record.parallelism_type,
        "chroma_format_idc": record.chroma_format_idc,
        "bit_depth_luma_minus8": record.bit_depth_luma_minus8,
        "bit_depth_chroma_minus8": record.bit_depth_chroma_minus8,
        "avg_frame_rate": 0,
        "constant_frame_rate": 0,
        "num_temporal_layers": record.num_temporal_layers,
        "temporal_id_nested": record.temporal_id_nested,
        "length_size_minus_one": length_size_minus_one,
        "arrays": [
            {
                "array_completeness": array_completeness if t in PARAMETER_SET_TYPES else 0,
                "nal_unit_type": t,
                "nalus": [bytes(n) for n in units],
            }
            for t, units in groups
        ],
    }


def hvcc_fields_from_annexb(data: bytes, **kwargs) -> dict:
    """:func:`hvcc_fields` of the parameter sets and SEI in an Annex B stream.

    Meant for an encoder's extradata (libx265 with the global-header flag); other NAL
    units are ignored, as FFmpeg's hvcC writer ignores them. ``kwargs`` go to
    :func:`hvcc_fields`.
    """
    by_type: dict[int, list[bytes]] = {}
    for nal in split_annexb(data):
        by_type.setdefault(nal_unit_type(nal), []).append(nal)
    return hvcc_fields(
        by_type.get(VPS, []),
        by_type.get(SPS, []),
        by_type.get(PPS, []),
        by_type.get(PREFIX_SEI, []) + by_type.get(SUFFIX_SEI, []),
        **kwargs,
    )


# ---------------------------------------------------------------------------
# The video signal an SPS describes


class VideoSignal(NamedTuple):
    """How to read an SPS's samples: its VUI's signal type (ITU-T H.273 codes), chroma and bit depth.

    Codes a VUI leaves out are 2, "unspecified"; ``full_range`` is False (16-235 luma) unless
    the VUI sets ``video_full_range_flag``.
    """

    matrix_coefficients: int = _UNSPECIFIED
    full_range: bool = False
    colour_primaries: int = _UNSPECIFIED
    transfer_characteristics: int = _UNSPECIFIED
    chroma_format_idc: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8


@functools.lru_cache(maxsize=256)
def video_signal(sps: bytes) -> VideoSignal:
    """The :class:`VideoSignal` of one SPS NAL unit (no start code); :class:`HevcError` if malformed."""
    if len(sps) < 3 or nal_unit_type(sps) != SPS:
        raise HevcError("not an SPS NAL unit")
    record = _Record()
    record.sps(_BitReader(_rbsp(sps)[2:], "SPS"))
    return VideoSignal(
        matrix_coefficients=record.matrix_coeffs,
        full_range=bool(record.video_full_range_flag),
        colour_primaries=record.colour_primaries,
        transfer_characteristics=record.transfer_characteristics,
        chroma_format_idc=record.chroma_format_idc,
        bit_depth_luma=record.bit_depth_luma_minus8 + 8,
        bit_depth_chroma=record.bit_depth_chroma_minus8 + 8,
    )
