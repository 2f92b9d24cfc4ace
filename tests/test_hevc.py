"""bzna_boxes.hevc against real libx265 output and FFmpeg's own hvcC writer (through PyAV)."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bzna_boxes import Box, BoxError, hevc
from bzna_boxes.hevc import sample_to_annexb

av = pytest.importorskip("av")


# ---------------------------------------------------------------------------
# helpers


def escape(payload: bytes) -> bytes:
    """Insert emulation prevention bytes (00 00 0x, x <= 3 -> 00 00 03 0x)."""
    out = bytearray()
    zeros = 0
    for byte in payload:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def bare_encode(rgb: np.ndarray, crf: float = 28, preset: str = "ultrafast", params: str = "log-level=error"):
    """libx265 through PyAV with the global-header flag: (extradata, packet), both Annex B."""
    from av.codec.context import Flags

    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height = rgb.shape[1], rgb.shape[0]
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 20)
    ctx.flags |= Flags.global_header
    ctx.options = {"crf": str(crf), "preset": preset, "x265-params": params}
    ctx.open()
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    packets = [bytes(p) for p in ctx.encode(frame)] + [bytes(p) for p in ctx.encode(None)]
    assert len(packets) == 1
    return bytes(ctx.extradata), packets[0]


_TEMPLATE = {}


def template_packet() -> bytes:
    """A real 64x64 IDR picture (Annex B), encoded once."""
    if "packet" not in _TEMPLATE:
        _TEMPLATE["extradata"], _TEMPLATE["packet"] = bare_encode(np.zeros((64, 64, 3), np.uint8))
    return _TEMPLATE["packet"]


def ffmpeg_mp4(extradata: bytes, packet: bytes) -> bytes:
    """Mux one picture with FFmpeg's mp4 muxer (sample entry hvc1), from this extradata.

    The output stream is made from a template (any real HEVC input stream) so that no
    encoder is opened; its extradata is then replaced by the one under test, which the
    muxer turns into the hvcC record with its own parser (ff_isom_write_hvcc).
    """
    if "stream" not in _TEMPLATE:
        template_packet()
        _TEMPLATE["input"] = av.open(io.BytesIO(_TEMPLATE["extradata"] + _TEMPLATE["packet"]), format="hevc")
        _TEMPLATE["stream"] = _TEMPLATE["input"].streams.video[0]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream_from_template(_TEMPLATE["stream"])
        stream.codec_context.extradata = extradata
        stream.codec_tag = "hvc1"
        p = av.Packet(packet)
        p.stream = stream
        p.pts = p.dts = 0
        p.is_keyframe = True
        out.mux(p)
    return buf.getvalue()


def box_payload(mp4: bytes, fourcc: bytes) -> bytes:
    at = mp4.index(fourcc)
    return mp4[at + 4 : at - 4 + int.from_bytes(mp4[at - 4 : at], "big")]


def record_bytes(fields: dict) -> bytes:
    return Box.build(dict(type="hvcC", **fields))[8:]


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def gradient(height: int, width: int) -> np.ndarray:
    """Smooth content: quick to encode at any size."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


# ---------------------------------------------------------------------------
# framing

nal_payloads = st.lists(
    st.binary(min_size=1, max_size=40).map(lambda b: escape(b) + b"\x80"), min_size=1, max_size=8
)


@settings(max_examples=50)
@given(nals=nal_payloads, data=st.data())
def test_split_annexb_round_trip(nals, data):
    stream = b"\x00" * data.draw(st.integers(0, 3))  # leading_zero_8bits
    for nal in nals:
        stream += data.draw(st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01"])) + nal
        stream += b"\x00" * data.draw(st.integers(0, 2))  # trailing_zero_8bits
    assert hevc.split_annexb(stream) == nals
    assert hevc.split_annexb(hevc.join_annexb(nals)) == nals


@given(nals=st.lists(st.binary(max_size=300), max_size=8), length_size=st.sampled_from([2, 4]))
def test_length_prefixed_round_trip(nals, length_size):
    sample = hevc.to_length_prefixed(nals, length_size)
    assert len(sample) == sum(map(len, nals)) + length_size * len(nals)
    assert hevc.from_length_prefixed(sample, length_size) == nals


def test_framing_errors():
    with pytest.raises(BoxError, match="start code"):
        hevc.split_annexb(b"\x01\x02\x00\x00\x01\x40")
    with pytest.raises(ValueError, match="claims 16 bytes"):
        hevc.from_length_prefixed(b"\x00\x00\x00\x10abc")
    with pytest.raises(ValueError, match="truncated"):
        hevc.from_length_prefixed(b"\x00\x00")
    with pytest.raises(ValueError, match="does not fit"):
        hevc.to_length_prefixed([bytes(256)], 1)
    with pytest.raises(ValueError):
        hevc.nal_unit_type(b"")


def test_nal_types_of_a_real_encode():
    extradata, packet = bare_encode(noise(64, 96), params="log-level=error:info=0")
    assert [hevc.nal_unit_type(n) for n in hevc.split_annexb(extradata)] == [hevc.VPS, hevc.SPS, hevc.PPS]
    assert [hevc.nal_unit_type(n) for n in hevc.split_annexb(packet)] == [20]  # IDR_N_LP
    # with in-band parameter sets, an access unit delimiter and a picture hash SEI
    _, packet = bare_encode(noise(64, 96), params="log-level=error:info=0:repeat-headers=1:aud=1:hash=1")
    assert [hevc.nal_unit_type(n) for n in hevc.split_annexb(packet)] == [35, 32, 33, 34, 20, hevc.SUFFIX_SEI]


# ---------------------------------------------------------------------------
# hvcC against FFmpeg


@pytest.mark.parametrize(
    "size, crf, params",
    [
        ((64, 96), 28, "log-level=error"),  # x265's 2.3 KB "info" SEI in a prefix SEI array
        ((512, 512), 18, "log-level=error:info=0"),
        # the parameters bzna_boxes.encode gives x265 (colour description in the VUI)
        ((512, 512), 18, "log-level=error:info=0:repeat-headers=0:colorprim=bt709:transfer=iec61966-2-1"
                         ":colormatrix=smpte170m:range=limited:chromaloc=1"),
        ((512, 1024), 35, "log-level=error:info=0:wpp=0"),
        ((1024, 512), 18, "log-level=error:info=0:hrd=1:vbv-bufsize=1000:vbv-maxrate=1000"),
        ((96, 64), 23, "log-level=error:info=0:colorprim=bt709:transfer=bt709:colormatrix=smpte170m:range=limited"),
        ((64, 64), 23, "log-level=error:info=0:temporal-layers=2:sar=2"),
        ((64, 64), 23, "log-level=error:info=0:high-tier=1:level-idc=5.1:repeat-headers=1:hash=1"),
        ((64, 64), 23, "log-level=error:info=0:scaling-list=default:display-window=0,0,8,8:overscan=show"),
    ],
)
def test_hvcc_equals_ffmpeg(size, crf, params):
    extradata, packet = bare_encode(gradient(*size), crf=crf, params=params)
    mp4 = ffmpeg_mp4(extradata, packet)
    fields = hevc.hvcc_fields_from_annexb(extradata)
    assert record_bytes(fields) == box_payload(mp4, b"hvcC")
    # the sample FFmpeg stores for hvc1: the access unit without parameter sets
    payload = hevc.to_length_prefixed(
        n for n in hevc.split_annexb(packet) if hevc.nal_unit_type(n) not in hevc.PARAMETER_SET_TYPES
    )
    assert box_payload(mp4, b"mdat") == payload
    # and FFmpeg decodes it back
    with av.open(io.BytesIO(mp4)) as container:
        assert container.streams.video[0].codec_context.extradata == record_bytes(fields)
        (frame,) = container.decode(video=0)
        assert (frame.height, frame.width) == size


def test_hvcc_fields_of_a_real_encode():
    extradata, _ = bare_encode(noise(64, 64), params="log-level=error:info=0")
    fields = hevc.hvcc_fields_from_annexb(extradata)
    assert {k: v for k, v in fields.items() if k != "arrays"} == {
        "configuration_version": 1,
        "general_profile_space": 0,
        "general_tier_flag": 0,
        "general_profile_idc": 1,  # Main
        "general_profile_compatibility_flags": 0x60000000,  # Main and Main 10
        "general_constraint_indicator_flags": 0x900000000000,  # progressive, frame only
        "general_level_idc": 30,  # level 1
        "min_spatial_segmentation_idc": 0,
        "parallelism_type": 0,
        "chroma_format_idc": 1,
        "bit_depth_luma_minus8": 0,
        "bit_depth_chroma_minus8": 0,
        "avg_frame_rate": 0,
        "constant_frame_rate": 0,
        "num_temporal_layers": 1,
        "temporal_id_nested": 1,
        "length_size_minus_one": 3,
    }
    assert [(a["array_completeness"], a["nal_unit_type"], len(a["nalus"])) for a in fields["arrays"]] == [
        (1, 32, 1),
        (1, 33, 1),
        (1, 34, 1),
    ]
    assert [n for a in fields["arrays"] for n in a["nalus"]] == hevc.split_annexb(extradata)
    assert [a["array_completeness"] for a in hevc.hvcc_fields(*[[n] for n in hevc.split_annexb(extradata)],
                                                               array_completeness=0)["arrays"]] == [0, 0, 0]


# ---------------------------------------------------------------------------
# hand-written parameter sets: every branch of the SPS/VUI/HRD syntax, against FFmpeg


class BitWriter:
    def __init__(self):
        self.bits = []

    def u(self, n, value):
        self.bits.append(format(value, f"0{n}b") if n else "")
        assert len(self.bits[-1]) == n

    def ue(self, value):
        code = format(value + 1, "b")
        self.bits.append("0" * (len(code) - 1) + code)

    def se(self, value):
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self, nal_type):
        bits = "".join(self.bits) + "1"
        bits += "0" * (-len(bits) % 8)
        return bytes([nal_type << 1, 1]) + escape(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def write_ptl(w, ptl, max_sub_layers_minus1):
    w.u(2, ptl["space"]), w.u(1, ptl["tier"]), w.u(5, ptl["idc"])
    w.u(32, ptl["compat"]), w.u(48, ptl["constraints"]), w.u(8, ptl["level"])
    sub = ptl["sub_layers"][:max_sub_layers_minus1]
    for profile_present, level_present in sub:
        w.u(1, profile_present), w.u(1, level_present)
    if max_sub_layers_minus1:
        for _ in range(max_sub_layers_minus1, 8):
            w.u(2, 0)
    for profile_present, level_present in sub:
        if profile_present:
            w.u(88, (1 << 87) | 0x5A5A5A)
        if level_present:
            w.u(8, 93)


def write_vps(p):
    w = BitWriter()
    w.u(4, 0), w.u(2, 3), w.u(6, 0), w.u(3, p["max_sub_layers_minus1"]), w.u(1, 1), w.u(16, 0xFFFF)
    write_ptl(w, p["ptl"], p["max_sub_layers_minus1"])
    return w.nal(hevc.VPS)


def write_hrd(w, h, max_sub_layers_minus1):
    w.u(1, h["nal"]), w.u(1, h["vcl"])
    if h["nal"] or h["vcl"]:
        w.u(1, h["sub_pic"])
        if h["sub_pic"]:
            w.u(19, 0x2A2A2)
        w.u(8, 0x34)
        if h["sub_pic"]:
            w.u(4, 5)
        w.u(15, 0x1234)
    for i in range(max_sub_layers_minus1 + 1):
        general, within, low_delay, cpb_cnt = h["layers"][i]
        w.u(1, general)
        if not general:
            w.u(1, within)
        if general or within:
            w.ue(3)
            low_delay = 0  # inferred when absent
        else:
            w.u(1, low_delay)
        if low_delay:
            cpb_cnt = 0  # inferred when absent
        else:
            w.ue(cpb_cnt)
        for present in (h["nal"], h["vcl"]):
            if present:
                for _ in range(cpb_cnt + 1):
                    w.ue(1000), w.ue(2000)
                    if h["sub_pic"]:
                        w.ue(30), w.ue(40)
                    w.u(1, 1)


def write_vui(w, v, max_sub_layers_minus1):
    w.u(1, v["aspect"] is not None)
    if v["aspect"] is not None:
        w.u(8, v["aspect"])
        if v["aspect"] == 255:
            w.u(16, 4), w.u(16, 3)
    w.u(1, 1), w.u(1, 0)  # overscan
    w.u(1, v["signal"])
    if v["signal"]:
        w.u(3, 5), w.u(1, 0), w.u(1, v["colour"])
        if v["colour"]:
            w.u(24, 0x010D06)
    w.u(1, v["chroma_loc"])
    if v["chroma_loc"]:
        w.ue(2), w.ue(2)
    w.u(3, 0)
    w.u(1, v["window"])
    if v["window"]:
        for value in (0, 8, 0, 4):
            w.ue(value)
    w.u(1, v["timing"])
    if v["timing"]:
        w.u(32, 1), w.u(32, 25), w.u(1, 1), w.ue(0)
        w.u(1, v["hrd"] is not None)
        if v["hrd"] is not None:
            write_hrd(w, v["hrd"], max_sub_layers_minus1)
    w.u(1, v["restriction"] is not None)
    if v["restriction"] is not None:
        w.u(3, 0b010), w.ue(v["restriction"]), w.ue(2), w.ue(1), w.ue(15), w.ue(15)


def write_sps(p):
    m = p["max_sub_layers_minus1"]
    w = BitWriter()
    w.u(4, 0), w.u(3, m), w.u(1, p["nested"])
    write_ptl(w, p["sps_ptl"], m)
    w.ue(0), w.ue(p["chroma"])
    if p["chroma"] == 3:
        w.u(1, 0)
    w.ue(1920), w.ue(1080)
    w.u(1, p["conformance"])
    if p["conformance"]:
        for value in (0, 0, 0, 4):
            w.ue(value)
    w.ue(p["depth_luma"]), w.ue(p["depth_chroma"]), w.ue(p["log2_poc_minus4"])
    w.u(1, p["ordering_all"])
    for _ in range(0 if p["ordering_all"] else m, m + 1):
        w.ue(4), w.ue(2), w.ue(0)
    for value in (0, 3, 0, 3, 1, 1):
        w.ue(value)
    w.u(1, p["scaling"] is not None)
    if p["scaling"] is not None:
        w.u(1, p["scaling"])
        if p["scaling"]:
            for size_id in range(4):
                for matrix_id in range(2 if size_id == 3 else 6):
                    explicit = (size_id + matrix_id) % 2
                    w.u(1, explicit)
                    if not explicit:
                        w.ue(0)
                    else:
                        if size_id > 1:
                            w.se(-3)
                        for k in range(min(64, 1 << (4 + 2 * size_id))):
                            w.se((k % 5) - 2)
    w.u(1, 1), w.u(1, 1)  # amp, sao
    w.u(1, p["pcm"])
    if p["pcm"]:
        w.u(4, 7), w.u(4, 7), w.ue(0), w.ue(1), w.u(1, 1)
    w.ue(len(p["rps"]))
    counts = []
    for idx, rps in enumerate(p["rps"]):
        if idx:
            w.u(1, rps is None)
        if rps is None:  # predicted from the previous set: keep every picture
            w.u(1, 0), w.ue(0)
            for _ in range(counts[-1] + 1):
                w.u(1, 1)
            counts.append(counts[-1] + 1)
        else:
            negatives, positives = rps
            w.ue(negatives), w.ue(positives)
            for _ in range(negatives + positives):
                w.ue(0), w.u(1, 1)
            counts.append(negatives + positives)
    w.u(1, p["long_term"] is not None)
    if p["long_term"] is not None:
        w.ue(p["long_term"])
        for _ in range(p["long_term"]):
            w.u(min(p["log2_poc_minus4"] + 4, 16), 1), w.u(1, 1)
    w.u(1, 1), w.u(1, 1)
    w.u(1, p["vui"] is not None)
    if p["vui"] is not None:
        write_vui(w, p["vui"], m)
    w.u(1, 0)  # sps_extension_present_flag
    return w.nal(hevc.SPS)


def write_pps(tiles, wavefronts):
    w = BitWriter()
    w.ue(0), w.ue(0), w.u(7, 0b0100010), w.ue(0), w.ue(0), w.se(-4), w.u(2, 0)
    w.u(1, 1), w.ue(1), w.se(-2), w.se(3), w.u(4, 0), w.u(1, tiles), w.u(1, wavefronts)
    if tiles:
        w.ue(1), w.ue(0), w.u(1, 1), w.u(1, 1)
    w.u(1, 1), w.u(1, 0), w.u(1, 0), w.u(1, 0), w.ue(0), w.u(1, 0), w.u(1, 0)
    return w.nal(hevc.PPS)


ptls = st.fixed_dictionaries(
    {
        "space": st.just(0),
        "tier": st.integers(0, 1),
        "idc": st.integers(0, 31),
        "compat": st.integers(0, 2**32 - 1),
        "constraints": st.integers(0, 2**48 - 1),
        "level": st.integers(0, 255),
        "sub_layers": st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=6, max_size=6),
    }
)
hrds = st.fixed_dictionaries(
    {
        "nal": st.integers(0, 1),
        "vcl": st.integers(0, 1),
        "sub_pic": st.integers(0, 1),
        # fixed_pic_rate_general_flag 0 only: FFmpeg misreads the 1 case (see hevc.py)
        "layers": st.lists(
            st.tuples(st.just(0), st.integers(0, 1), st.integers(0, 1), st.integers(0, 3)), min_size=7, max_size=7
        ),
    }
)
vuis = st.fixed_dictionaries(
    {
        "aspect": st.none() | st.sampled_from([1, 255]),
        "signal": st.integers(0, 1),
        "colour": st.integers(0, 1),
        "chroma_loc": st.integers(0, 1),
        "window": st.integers(0, 1),
        "timing": st.integers(0, 1),
        "hrd": st.none() | hrds,
        "restriction": st.none() | st.integers(0, 5000),
    }
)
parameter_sets = st.fixed_dictionaries(
    {
        "max_sub_layers_minus1": st.integers(0, 6),
        "nested": st.integers(0, 1),
        "ptl": ptls,
        "sps_ptl": ptls,
        "chroma": st.integers(0, 3),
        "conformance": st.integers(0, 1),
        "depth_luma": st.integers(0, 4),
        "depth_chroma": st.integers(0, 4),
        "log2_poc_minus4": st.integers(0, 12),
        "ordering_all": st.integers(0, 1),
        "scaling": st.none() | st.integers(0, 1),
        "pcm": st.integers(0, 1),
        "rps": st.lists(st.none() | st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=4).map(
            lambda sets: [sets[0] or (1, 0)] + sets[1:] if sets else []
        ),
        "long_term": st.none() | st.integers(0, 3),
        "vui": st.none() | vuis,
        "pps": st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=2),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=parameter_sets, second_sps=st.none() | vuis)
def test_hvcc_of_written_parameter_sets_equals_ffmpeg(p, second_sps):
    vps = [write_vps(p)]
    sps = [write_sps(p)]
    if second_sps is not None:  # a second SPS: profile/level merged, min_spatial_segmentation the smaller
        sps.append(write_sps(dict(p, vui=second_sps)))
    pps = [write_pps(*flags) for flags in p["pps"]]
    fields = hevc.hvcc_fields(vps, sps, pps)
    mp4 = ffmpeg_mp4(hevc.join_annexb(vps + sps + pps), template_packet())
    assert record_bytes(fields) == box_payload(mp4, b"hvcC")


def test_min_spatial_segmentation_and_parallelism():
    base = {
        "max_sub_layers_minus1": 0, "nested": 1, "chroma": 1, "conformance": 0, "depth_luma": 2,
        "depth_chroma": 2, "log2_poc_minus4": 4, "ordering_all": 1, "scaling": None, "pcm": 0,
        "rps": [], "long_term": None,
    }
    ptl = {"space": 0, "tier": 0, "idc": 2, "compat": 0x20000000, "constraints": 0x900000000000,
           "level": 93, "sub_layers": [(0, 0)] * 6}
    vui = {"aspect": None, "signal": 0, "colour": 0, "chroma_loc": 0, "window": 0, "timing": 0, "hrd": None}
    vps = [write_vps(dict(base, ptl=ptl))]

    def fields(restriction, tiles, wavefronts):
        sps = [write_sps(dict(base, sps_ptl=ptl, vui=dict(vui, restriction=restriction)))]
        return hevc.hvcc_fields(vps, sps, [write_pps(tiles, wavefronts)])

    assert fields(200, 0, 1)["min_spatial_segmentation_idc"] == 200
    f = fields(200, 0, 1)
    assert (f["parallelism_type"], f["bit_depth_luma_minus8"], f["general_profile_idc"]) == (3, 2, 2)
    assert fields(200, 1, 0)["parallelism_type"] == 2
    assert fields(200, 1, 1)["parallelism_type"] == 0
    assert fields(200, 0, 0)["parallelism_type"] == 1
    assert fields(0, 0, 1)["parallelism_type"] == 0  # unknown without a segmentation bound
    assert fields(None, 0, 1)["min_spatial_segmentation_idc"] == 0
    edge = fields(4096, 0, 1)  # one past the u(12) field: FFmpeg stores its low bits, keeps the type
    assert (edge["min_spatial_segmentation_idc"], edge["parallelism_type"]) == (0, 3)


def test_hrd_fixed_pic_rate_general_flag_follows_the_spec():
    """fixed_pic_rate_general_flag = 1 implies fixed_pic_rate_within_cvs_flag = 1 (E.3.2)."""
    hrd = {"nal": 1, "vcl": 0, "sub_pic": 0, "layers": [(1, 1, 0, 0)] * 7}
    p = {
        "max_sub_layers_minus1": 0, "nested": 1, "chroma": 1, "conformance": 0, "depth_luma": 0,
        "depth_chroma": 0, "log2_poc_minus4": 4, "ordering_all": 1, "scaling": None, "pcm": 0,
        "rps": [], "long_term": None,
        "sps_ptl": {"space": 0, "tier": 0, "idc": 1, "compat": 0x60000000, "constraints": 0,
                    "level": 93, "sub_layers": [(0, 0)] * 6},
        "vui": {"aspect": None, "signal": 0, "colour": 0, "chroma_loc": 0, "window": 0, "timing": 1,
                "hrd": hrd, "restriction": 77},
    }
    fields = hevc.hvcc_fields([write_vps(dict(p, ptl=p["sps_ptl"]))], [write_sps(p)], [write_pps(0, 1)])
    assert (fields["min_spatial_segmentation_idc"], fields["parallelism_type"]) == (77, 3)


def test_hvcc_fields_errors():
    extradata, _ = bare_encode(noise(64, 64), params="log-level=error:info=0")
    vps, sps, pps = hevc.split_annexb(extradata)
    with pytest.raises(BoxError, match="at least one VPS"):
        hevc.hvcc_fields([], [sps], [pps])
    with pytest.raises(BoxError, match="at least one PPS"):
        hevc.hvcc_fields([vps], [sps], [])
    with pytest.raises(BoxError, match="type 33, not 32"):
        hevc.hvcc_fields([sps], [sps], [pps])
    with pytest.raises(BoxError, match="not 39 or 40"):
        hevc.hvcc_fields([vps], [sps], [pps], [pps])
    with pytest.raises(BoxError, match="SPS is truncated"):
        hevc.hvcc_fields([vps], [sps[:12]], [pps])
    with pytest.raises(ValueError, match="16-bit length"):
        hevc.hvcc_fields([vps], [sps], [pps], [bytes([hevc.PREFIX_SEI << 1, 1]) + bytes(70000)])


def test_sample_to_annexb_decodes():
    extradata, packet = bare_encode(noise(64, 96))
    fields = hevc.hvcc_fields_from_annexb(extradata)
    sample = hevc.to_length_prefixed(hevc.split_annexb(packet))
    annexb = bytes(sample_to_annexb(sample, fields))
    assert hevc.split_annexb(annexb) == hevc.split_annexb(extradata + packet)
    # the hvcC box as the library parses it works the same way
    parsed = Box.parse(Box.build(dict(type="hvcC", **fields)))
    assert sample_to_annexb(sample, parsed) == annexb
    ctx = av.CodecContext.create("hevc", "r")
    (frame,) = [*ctx.decode(av.Packet(annexb)), *ctx.decode(None)]
    assert (frame.width, frame.height) == (96, 64)
