"""Movie fragments (fragment.py): mvex, moof, traf, mfra, mfhd, mehd, tfhd, tfdt, trun, trex, sidx."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bzna_boxes import Box, BoxError, Boxes, find_all
from bzna_boxes.boxes.fragment import (
    DATA_OFFSET_PRESENT,
    DEFAULT_SAMPLE_DURATION_PRESENT,
    SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT,
    SAMPLE_SIZE_PRESENT,
    trun_dtype,
)
from strategies import box_values, examples, family_cases, hexbytes, round_trip

from conftest import MEDIA


@pytest.mark.parametrize("fourcc, version", family_cases("fragment"))
@settings(max_examples=examples(25))
@given(data=st.data())
def test_values_round_trip(fourcc, version, data):
    round_trip(data.draw(box_values(fourcc, version), label=fourcc))


TRUN = """
    00000024 7472756e  # size 36, 'trun'
    01 000a01          # version 1, flags: data_offset, sample_size, composition offsets
    00000002           # sample_count 2
    00000070           # data_offset 112
    00000100 fffffc00  # sample 0: size 256, composition offset -1024 (signed in version 1)
    00000080 00000400  # sample 1: size 128, composition offset 1024
"""


def test_trun_columns_follow_its_flags():
    box = Box.parse(hexbytes(TRUN))
    assert box.samples.dtype.names == ("sample_size", "sample_composition_time_offset")
    assert box.samples["sample_composition_time_offset"].tolist() == [-1024, 1024]
    assert (box.sample_count, box.data_offset, box.first_sample_flags) == (2, 112, None)
    flags = DATA_OFFSET_PRESENT | SAMPLE_SIZE_PRESENT | SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT
    samples = np.array([(256, -1024), (128, 1024)], trun_dtype(flags, 1))
    assert Box.build({"type": "trun", "version": 1, "flags": flags, "data_offset": 112, "samples": samples}) == hexbytes(TRUN)


def test_trun_without_per_sample_fields_takes_no_bytes_per_sample():
    data = hexbytes("00000014 7472756e 00000001 ffffffff 00000000")  # 2**32 - 1 samples, all defaults
    box = Box.parse(data)
    assert box.sample_count == 2**32 - 1 and box.samples.nbytes == 0
    assert Box.build(box) == data


def test_trun_count_past_the_box_is_an_error():
    data = hexbytes("00000018 7472756e 00000100 ffffffff 00000000 00000000")  # durations for 2**32 - 1 samples
    with pytest.raises(BoxError, match="4294967295 entries of 4 bytes") as caught:
        Box.parse(data)
    assert caught.value.path == "trun" and caught.value.offset == 16


def test_tfhd_optional_fields_follow_its_flags():
    box = round_trip({"type": "tfhd", "flags": DEFAULT_SAMPLE_DURATION_PRESENT | 0x020000, "track_id": 1, "default_sample_duration": 512})
    assert (box.base_data_offset, box.default_sample_duration) == (None, 512)
    assert Box.build(box) == hexbytes("00000014 74666864 00020008 00000001 00000200")


def test_fragmented_file_fragments():
    tree = Boxes.parse((MEDIA / "fragmented.mp4").read_bytes())
    assert [box.sample_count for box in find_all(tree, "trun")] == [1, 3, 3, 3]
    assert [box.sequence_number for box in find_all(tree, "mfhd")] == [1, 2, 3, 4]
    assert all(box.flags & 0x020000 for box in find_all(tree, "tfhd"))  # default-base-is-moof
    assert [box.version for box in find_all(tree, "tfdt")] == [1, 1, 1, 1]


def test_sidx_references():
    refs = np.array([(1000, 512, 0x90000000)], dtype=[("reference", ">u4"), ("subsegment_duration", ">u4"), ("sap", ">u4")])
    box = round_trip({"type": "sidx", "version": 1, "reference_id": 1, "timescale": 10240, "earliest_presentation_time": 2**40, "references": refs})
    assert box.reference_count == 1 and box.references["sap"][0] >> 31 == 1
