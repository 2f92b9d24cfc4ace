"""Metadata boxes (meta.py): meta (ISO FullBox and QuickTime form), udta, iprp, ipco, ilst, ispe."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, Boxes, find
from strategies import box_values, examples, family_cases, hexbytes, round_trip

from conftest import MEDIA


@pytest.mark.parametrize("fourcc, version", family_cases("meta"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


HDLR = "00000021 68646c72 00000000 00000000 6d646972 000000000000000000000000 00"  # 'mdir', name ''


def test_meta_full_box_form():
    data = hexbytes("0000002d 6d657461 00000000" + HDLR)  # version 0, flags 0, then the hdlr
    box = Box.parse(data)
    assert (box.version, box.flags, box.get("quicktime")) == (0, 0, None)
    assert box.children[0].handler_type == "mdir"
    assert Box.build(box) == data


def test_meta_quicktime_form_has_no_version_and_flags():
    data = hexbytes("00000029 6d657461" + HDLR)  # the hdlr right after the header
    box = Box.parse(data)
    assert box.quicktime and "version" not in box and box.children[0].handler_type == "mdir"
    assert Box.build(box) == data


def test_heif_item_properties():
    tree = Boxes.parse((MEDIA / "image_odd.heic").read_bytes())
    meta = find(tree, "meta")
    assert meta.version == 0 and find(meta, "hdlr").handler_type == "pict"
    ispe = find(meta, "iprp/ipco/ispe")
    assert (ispe.image_width, ispe.image_height) == (234, 202)
    clap = find(meta, "iprp/ipco/clap")
    assert (clap.clean_aperture_width_n, clap.clean_aperture_height_n, clap.horiz_off_n, clap.vert_off_n) == (233, 201, -1, -1)


def test_ispe_fields():
    values = {"type": "ispe", "image_width": 256, "image_height": 256}
    assert Box.build(values) == hexbytes("00000014 69737065 00000000 00000100 00000100")
    round_trip(values)


def test_ilst_items_are_kept_raw():
    ilst = find(Boxes.parse((MEDIA / "h264.mp4").read_bytes()), "moov/udta/meta/ilst")
    assert ilst.children[0].type == "\xa9too" and b"Lavf" in bytes(ilst.children[0].data)
