"""Sample entries and their configuration boxes (sample_entry.py): avc1/avc3/hvc1/hev1, mett/metx,
avcC, hvcC, clap, pasp, colr, btrt (and sinf/schi, the protection containers inside entries)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError, Boxes, find
from strategies import box_values, examples, family_cases, hexbytes, round_trip

from conftest import MEDIA


@pytest.mark.parametrize("fourcc, version", family_cases("sample_entry"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


CLAP = """
    00000028 636c6170  # size 40, 'clap'
    000001c9 00000001  # clean_aperture_width 457/1
    0000012c 00000001  # clean_aperture_height 300/1
    fffffe37 00000002  # horiz_off -457/2 (signed)
    fffffd44 00000002  # vert_off -700/2
"""


def test_clap_offsets_are_signed():
    box = Box.parse(hexbytes(CLAP))
    assert (box.clean_aperture_width_n, box.clean_aperture_height_n) == (457, 300)
    assert (box.horiz_off_n, box.horiz_off_d, box.vert_off_n, box.vert_off_d) == (-457, 2, -700, 2)
    values = {"type": "clap", "clean_aperture_width_n": 457, "clean_aperture_height_n": 300, "horiz_off_n": -457, "horiz_off_d": 2, "vert_off_n": -700, "vert_off_d": 2}
    assert Box.build(values) == hexbytes(CLAP)


METT = """
    0000002a 6d657474  # size 42, 'mett'
    000000000000 0001  # reserved, data_reference_index 1
    00                 # content_encoding '' (NUL-terminated)
    6170706c69636174696f6e2f6f637465742d73747265616d 00  # mime_format 'application/octet-stream'
"""


def test_mett_mime_format():
    box = Box.parse(hexbytes(METT))
    assert (box.content_encoding, box.mime_format, box.children) == ("", "application/octet-stream", [])
    assert Box.build({"type": "mett", "mime_format": "application/octet-stream", "children": []}) == hexbytes(METT)


def test_mett_without_the_terminating_nul_is_an_error():
    data = hexbytes(METT)[:-1]
    data = (len(data)).to_bytes(4, "big") + data[4:]
    with pytest.raises(BoxError, match="no terminating NUL") as caught:
        Box.parse(data)
    assert caught.value.path == "mett"


def test_mett_string_with_a_nul_cannot_be_built():
    with pytest.raises(BoxError, match="contains a NUL"):
        Box.build({"type": "mett", "mime_format": "text/\x00plain", "children": []})


def test_visual_sample_entry_fields_from_a_real_file():
    entry = find(Boxes.parse((MEDIA / "h265.mp4").read_bytes()), "moov/trak/mdia/minf/stbl/stsd/hvc1")
    assert (entry.width, entry.height, entry.horizresolution, entry.vertresolution) == (96, 64, 72.0, 72.0)
    assert (entry.frame_count, entry.depth, entry.pre_defined_3, entry.compressorname) == (1, 24, -1, "")
    assert [child.type for child in entry.children] == ["hvcC", "btrt"]


def test_hvcc_from_a_real_file():
    hvcc = find(Boxes.parse((MEDIA / "h265.mp4").read_bytes()), "moov/trak/mdia/minf/stbl/stsd/hvc1/hvcC")
    assert [a.nal_unit_type for a in hvcc.arrays] == [32, 33, 34, 39]  # VPS, SPS, PPS, prefix SEI
    assert (hvcc.general_profile_idc, hvcc.chroma_format_idc, hvcc.length_size_minus_one) == (1, 1, 3)
    assert hvcc.arrays[0].nalus[0][:2] == b"\x40\x01"  # VPS NAL header
    assert Box.build(hvcc) == Box.build(round_trip(dict(hvcc)))


def test_hvcc_array_count_past_the_box_is_an_error():
    body = bytes([1, 1]) + bytes(20) + b"\x05"  # 5 NAL arrays announced, none present
    data = (8 + len(body)).to_bytes(4, "big") + b"hvcC" + body
    with pytest.raises(BoxError) as caught:
        Box.parse(data)
    assert caught.value.path == "hvcC" and caught.value.offset == 8 + len(body) and "arrays" in caught.value.reason


def test_avcc_from_a_real_file_and_its_parameter_set_counts():
    avcc = find(Boxes.parse((MEDIA / "h264.mp4").read_bytes()), "moov/trak/mdia/minf/stbl/stsd/avc1/avcC")
    assert avcc.num_of_sequence_parameter_sets == 1 and avcc.num_of_picture_parameter_sets == 1
    assert avcc.sequence_parameter_sets[0][0] & 0x1F == 7 and avcc.picture_parameter_sets[0][0] & 0x1F == 8
    built = round_trip({k: v for k, v in avcc.items() if not k.startswith("num_")})
    assert built.num_of_sequence_parameter_sets == 1


def test_avcc_more_than_31_sps_cannot_be_built():
    values = {"type": "avcC", "avc_profile_indication": 66, "profile_compatibility": 0, "avc_level_indication": 30,
              "sequence_parameter_sets": [b"\x67"] * 32, "picture_parameter_sets": []}
    with pytest.raises(BoxError, match="num_of_sequence_parameter_sets=32 does not fit 5 bits"):
        Box.build(values)


@pytest.mark.parametrize("values, size", [
    ({"type": "colr", "colour_type": "nclx", "colour_primaries": 1, "transfer_characteristics": 13, "matrix_coefficients": 6, "full_range_flag": 1}, 19),
    ({"type": "colr", "colour_type": "nclc", "colour_primaries": 1, "transfer_characteristics": 1, "matrix_coefficients": 1}, 18),
    ({"type": "colr", "colour_type": "prof", "icc_profile": b"ICC..."}, 18),
])
def test_colr_forms(values, size):
    assert len(Box.build(values)) == size
    round_trip(values)


def test_compressorname_is_a_pascal_string_in_32_bytes():
    entry = round_trip({"type": "avc1", "width": 2, "height": 2, "compressorname": "Lavc libx264", "children": []})
    raw = Box.build(entry)
    assert raw[8 + 42 : 8 + 42 + 13] == b"\x0cLavc libx264"
    with pytest.raises(BoxError, match="longer than 31 bytes"):
        Box.build({"type": "avc1", "width": 2, "height": 2, "compressorname": "x" * 32, "children": []})
