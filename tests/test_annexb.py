"""Annex B conversion: byte for byte what FFmpeg's hevc_mp4toannexb filter writes, BoxError otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from av.bitstream import BitStreamFilterContext
from hypothesis import given
from hypothesis import strategies as st

from bzna_boxes import BoxError, Boxes, find_all, hevc
from bzna_boxes.hevc import START_CODE, nal_spans, sample_to_annexb, to_annexb
from bzna_boxes.image import CleanAperture, EncodedImage

from bzna_samples import REPO, build_dataset, fixture_photographs, frame_image, open_dataset

H265_FIXTURES = [REPO / "fixtures" / "media" / name for name in ("h265.mp4", "h265_faststart.mp4", "h265_hev1.mp4")]


def ffmpeg_annexb(source, stream_index: int | None = None) -> list[tuple[bytes, bool, bytes]]:
    """``(mp4 sample, keyframe, FFmpeg's Annex B)`` for every packet of a video stream."""
    with av.open(source) as container:
        streams = container.streams.video
        stream = streams[0] if stream_index is None else streams[stream_index]
        bsf = BitStreamFilterContext("hevc_mp4toannexb", stream)
        out = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            sample, key = bytes(packet), packet.is_keyframe
            out.append((sample, key, b"".join(bytes(p) for p in bsf.filter(packet))))
        return out


def parameter_sets(hvcc) -> bytes:
    return b"".join(START_CODE + bytes(nal) for array in hvcc["arrays"] for nal in array["nalus"])


def image_of(payload: bytes, hvcc) -> EncodedImage:
    return EncodedImage(memoryview(payload), hvcc, 96, 64, 96, 64, CleanAperture(0, 0, 96, 64))


@pytest.mark.parametrize("path", H265_FIXTURES, ids=lambda p: p.name)
def test_ffmpeg_fixture_samples_match_hevc_mp4toannexb(path: Path):
    tree = Boxes.parse(path.read_bytes())
    hvcc = find_all(tree, "hvcC")[0]
    packets = ffmpeg_annexb(str(path))
    assert len(packets) == 10 and sum(key for _, key, _ in packets) == 2
    for sample, key, expected in packets:
        ours = to_annexb(image_of(sample, hvcc))
        # FFmpeg prepends the parameter sets (and the hvcC SEI) to IRAP pictures only.
        assert bytes(ours) == (expected if key else parameter_sets(hvcc) + expected)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    items = [(encoded, index, name) for index, (name, _, encoded) in enumerate(fixture_photographs())]
    return build_dataset(tmp_path_factory.mktemp("annexb") / "photos.bzna", items)


def test_written_samples_match_hevc_mp4toannexb(written: Path):
    """Each inner sample MP4 we write, demuxed by FFmpeg and filtered, equals our conversion."""
    dataset = open_dataset(written)
    checked = 0
    for index in range(len(dataset)):
        inner = bytes(dataset[index].data)
        with av.open(io.BytesIO(inner)) as container:
            tracks = [stream.metadata.get("handler_name") for stream in container.streams.video]
        assert tracks == ["bzna_input", "bzna_thumb"]
        for stream_index, track in enumerate(tracks):
            ((_, key, expected),) = ffmpeg_annexb(io.BytesIO(inner), stream_index)
            assert key
            assert bytes(to_annexb(dataset[index].image(track))) == expected
            checked += 1
    assert checked == 2 * len(fixture_photographs())


@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_length_sizes_give_the_same_stream(length_size: int):
    tree = Boxes.parse(H265_FIXTURES[0].read_bytes())
    hvcc = dict(find_all(tree, "hvcC")[0])
    for sample, _, _ in ffmpeg_annexb(str(H265_FIXTURES[0])):
        nals = hevc.from_length_prefixed(sample, 4)
        if length_size == 1 and max(map(len, nals)) > 255:
            continue
        reframed = hevc.to_length_prefixed(nals, length_size)
        expected = to_annexb(image_of(sample, hvcc))
        assert sample_to_annexb(reframed, {**hvcc, "length_size_minus_one": length_size - 1}) == expected


def test_encoded_frames_round_trip_through_the_reference_splitter():
    _, _, encoded = fixture_photographs()[2]
    stream = bytes(to_annexb(frame_image(encoded.image)))
    nals = hevc.split_annexb(stream)
    arrays = [bytes(nal) for array in encoded.image.hvcc["arrays"] for nal in array["nalus"]]
    assert nals == arrays + hevc.from_length_prefixed(encoded.image.payload)
    assert stream.count(START_CODE) >= len(nals)


HVCC = {"length_size_minus_one": 3, "arrays": [{"nal_unit_type": 32, "nalus": [b"\x40\x01\x0c"]}]}


@pytest.mark.parametrize(
    "payload, hvcc, offset, words",
    [
        (b"\x00\x00", HVCC, 0, "truncated NAL unit length"),
        (b"\x00\x00\x00\x10" + b"\x26\x01\x00", HVCC, 0, "16 bytes runs past the end"),
        (b"\x00\x00\x00\x03\x26\x01\xaf" + b"\x00\x00\x01\x00\x26", HVCC, 7, "256 bytes runs past the end"),
        (b"\x00\x00\x00\x01\x26", HVCC, 0, "shorter than its 2-byte header"),
        (b"\x00\x00\x00\x00", HVCC, 0, "0 bytes is shorter"),
        (b"\x03\x26\x01\xaf", {**HVCC, "length_size_minus_one": 2}, None, "1, 2 or 4"),
        (b"\x00\x00\x00\x03\x26\x01\xaf", {"length_size_minus_one": 3}, None, "without NAL unit arrays"),
        (b"\x00\x00\x00\x03\x26\x01\xaf", {**HVCC, "arrays": [{"nalus": [b"\x40"]}]}, None, "fewer than its 2-byte header"),
    ],
)
def test_malformed_payloads_raise_box_error(payload: bytes, hvcc, offset, words: str):
    with pytest.raises(BoxError) as info:
        sample_to_annexb(payload, hvcc)
    assert info.value.offset == offset
    assert words in str(info.value)


@given(st.binary(max_size=64), st.sampled_from([0, 1, 2, 3]))
def test_any_payload_converts_or_raises_box_error(payload: bytes, length_size_minus_one: int):
    hvcc = {**HVCC, "length_size_minus_one": length_size_minus_one}
    try:
        stream = sample_to_annexb(payload, hvcc)
    except BoxError:
        return
    spans = nal_spans(memoryview(payload), length_size_minus_one + 1)
    assert len(stream) == len(parameter_sets(hvcc)) + sum(4 + end - start for start, end in spans)
    assert stream.startswith(parameter_sets(hvcc))
