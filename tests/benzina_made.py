"""Datasets as the original Benzina tools wrote them, to check that we read files we did not write.

The seed's ImageNet container was made by two published tools, whose behaviour this module
reproduces with FFmpeg (PyAV) and our box engine:

* ``image2mp4`` (one inner sample per image): FFmpeg muxes the padded image and, when it does not
  fit 512x512, its thumbnail as two ``libx265`` streams tagged ``hvc1`` in **full-range**
  ``yuvj420p`` (JPEG range); then the ``free`` box, ``udta`` and ``edts`` are dropped, ``mvhd``
  gets timescale 20, the handlers are named ``bzna_input\\0`` / ``bzna_thumb\\0``, a ``clap`` is
  put before the last child of each ``hvc1`` entry and ``tkhd`` gets the clean-aperture size. The
  target (8 bytes) and the filename **followed by a NUL** are appended to the mdat, with two
  ``meta`` tracks (``mett``) for them; the tracks end up in the order input, fname, target,
  thumb (the test split has no target track). Without a thumbnail, the thumb track is a copy
  of the input track.
* ``index_metadata`` (the outer container): ftyp, an mdat with a **64-bit size** holding the
  inner samples then the targets then the filenames, and a moov of version-1 boxes whose
  ``bzna_target`` track **stops at the last sample that has a target**, a ``bzna_fname`` track
  copying the inner filenames (NUL included) and a ``bzna_thumb`` video track pointing into the
  inner samples, with the first sample's ``hvc1`` entry (its ``clap`` removed).
"""

from __future__ import annotations

import io
import struct

import numpy as np

from bzna_boxes import Box, Boxes, find, find_all
from bzna_boxes.encode import pad_to_multiple

TILE = 512
_STTS = [("sample_count", ">u4"), ("sample_delta", ">u4")]
_STSC = [("first_chunk", ">u4"), ("samples_per_chunk", ">u4"), ("sample_description_index", ">u4")]


def _ffmpeg_mp4(frames: list[np.ndarray], crf: int = 10) -> bytes:
    """One libx265 stream (one picture) per frame, tagged hvc1, in full-range yuvj420p."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        streams = []
        for rgb in frames:
            stream = out.add_stream("libx265", rate=1)
            stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuvj420p"
            stream.codec_context.codec_tag = "hvc1"
            stream.options = {"crf": str(crf), "preset": "ultrafast", "x265-params": "log-level=error:pools=1:frame-threads=1"}
            streams.append(stream)
        for stream, rgb in zip(streams, frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj420p")
            frame.pts = 0
            packets = [*stream.encode(frame), *stream.encode(None)]
            for packet in packets:  # one picture: the muxer wants pts = dts = 0, however the encoder timed it
                packet.pts = packet.dts = 0
            out.mux(packets)
    return buffer.getvalue()


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """image2mp4's thumbnail: scaled to fit 512x512, sizes truncated; the same size when it fits."""
    factor = min(TILE / width if width > TILE else 1, TILE / height if height > TILE else 1)
    return int(width * factor), int(height * factor)


def _trak(track_id: int, name: str, entry: dict, sizes: list[int], offsets: list[int], *, handler: str = "meta", flags: int = 0, size: float = 0.0) -> dict:
    """pybenzinaparse's track: version-1 headers, one sample per chunk."""
    count = len(sizes)
    media_header = {"type": "vmhd", "flags": 1} if handler == "vide" else {"type": "nmhd"}
    return {
        "type": "trak",
        "children": [
            {"type": "tkhd", "version": 1, "flags": flags, "track_id": track_id, "duration": 20 * count, "volume": 0.0, "width": size, "height": size},
            {"type": "mdia", "children": [
                {"type": "mdhd", "version": 1, "timescale": 20, "duration": 20 * count, "language": "und"},
                {"type": "hdlr", "handler_type": handler, "name": name + "\0"},
                {"type": "minf", "children": [
                    media_header,
                    {"type": "dinf", "children": [{"type": "dref", "children": [{"type": "url ", "flags": 1}]}]},
                    {"type": "stbl", "children": [
                        {"type": "stsd", "children": [entry]},
                        {"type": "stts", "entries": np.array([(count, 20)], _STTS)},
                        {"type": "stsz", "sample_size": 0, "entry_sizes": np.array(sizes, ">u4")},
                        {"type": "stsc", "entries": np.array([(1, 1, 1)], _STSC)},
                        {"type": "stco", "chunk_offsets": np.array(offsets, ">u4")},
                    ]},
                ]},
            ]},
        ],
    }  # fmt: skip


def _mett(mime: str) -> dict:
    return {"type": "mett", "content_encoding": "", "mime_format": mime, "children": []}


def inner_sample(rgb: np.ndarray, target: int | None, filename: str) -> bytes:
    """The MP4 image2mp4 makes of one image (``target`` None: a test image, no target track)."""
    height, width = rgb.shape[:2]
    thumb_width, thumb_height = thumbnail_size(width, height)
    frames = [pad_to_multiple(rgb, TILE)]
    if (thumb_width, thumb_height) != (width, height):
        from PIL import Image

        thumbnail = np.asarray(Image.fromarray(rgb).resize((thumb_width, thumb_height), Image.Resampling.BICUBIC))
        frames.append(pad_to_multiple(thumbnail, TILE))
    ftyp_old, free, mdat, moov = Boxes.parse(_ffmpeg_mp4(frames))
    assert (ftyp_old.type, free.type, mdat.type) == ("ftyp", "free", "mdat")

    ftyp = Box.build({"type": "ftyp", "major_brand": "isom", "minor_version": 0, "compatible_brands": ["isom"]})
    shift = len(ftyp) - mdat._offset  # the free box is gone
    moov.children = [box for box in moov.children if box.type != "udta"]
    mvhd = find(moov, "mvhd")
    mvhd.timescale, mvhd.duration = 20, 20
    video = [box for box in moov.children if box.type == "trak"]
    for index, trak in enumerate(video):
        trak.children = [box for box in trak.children if box.type != "edts"]
        tkhd = find(trak, "tkhd")
        tkhd.flags = 0 if index == 0 else 3
        find(trak, "mdia/hdlr").name = "bzna_input\0" if index == 0 else "bzna_thumb\0"
        stco = find(trak, "mdia/minf/stbl/stco")
        stco.chunk_offsets = (stco.chunk_offsets.astype(np.int64) + shift).astype(">u4")
        entry = find(trak, "mdia/minf/stbl/stsd").children[0]
        clap_width, clap_height = (width, height) if index == 0 else (thumb_width, thumb_height)
        clap = {
            "type": "clap",
            "clean_aperture_width_n": clap_width, "clean_aperture_width_d": 1,
            "clean_aperture_height_n": clap_height, "clean_aperture_height_d": 1,
            "horiz_off_n": clap_width - entry.width, "horiz_off_d": 2,
            "vert_off_n": clap_height - entry.height, "vert_off_d": 2,
        }  # fmt: skip
        entry.children = [*entry.children[:-1], clap, entry.children[-1]]
        tkhd.width, tkhd.height = float(clap_width), float(clap_height)
    if len(video) == 1:  # no thumbnail: a copy of the input track
        thumb = Boxes.parse(Box.build(video[0]))[0]
        find(thumb, "tkhd").flags = 3
        find(thumb, "mdia/hdlr").name = "bzna_thumb\0"
        video.append(thumb)

    payload = bytes(mdat.data)
    at = len(ftyp) + 8 + len(payload)
    meta = {}  # name -> (mime, bytes, offset), in the order image2mp4 appends them
    if target is not None:
        meta["bzna_target"] = ("application/octet-stream", struct.pack("<q", target), at)
        at += 8
    name = filename.encode("utf-8") + b"\0"
    meta["bzna_fname"] = ("text/plain", name, at)
    tracks = [video[0]]
    for track in ("bzna_fname", "bzna_target"):
        if track in meta:
            mime, data, offset = meta[track]
            tracks.append(_trak(0, track, _mett(mime), [len(data)], [offset], flags=3 if track == "bzna_fname" else 0))
    tracks.append(video[1])
    for track_id, trak in enumerate(tracks, start=1):
        if isinstance(trak, dict):
            trak["children"][0]["track_id"] = track_id
        else:
            find(trak, "tkhd").track_id = track_id
    mvhd.next_track_id = len(tracks) + 1
    moov.children = [mvhd, *tracks]
    appended = b"".join(data for _, data, _ in meta.values())
    return ftyp + struct.pack(">I4s", 8 + len(payload) + len(appended), b"mdat") + payload + appended + Box.build(moov)


def container(samples: list[bytes]) -> bytes:
    """The outer file index_metadata makes of inner samples (targets and filenames read from them)."""
    ftyp = Box.build({"type": "ftyp", "major_brand": "isom", "minor_version": 0, "compatible_brands": ["bzna", "isom"]})
    data_at = len(ftyp) + 16  # a 64-bit mdat header
    offsets = list(np.cumsum([0] + [len(s) for s in samples[:-1]]) + data_at)
    targets, names, thumbs, thumb_entry = [], [], [], None
    for sample, offset in zip(samples, offsets):
        inner = Boxes.parse(sample)
        by_name = {find(t, "mdia/hdlr").name: t for t in find_all(find(inner, "moov"), "trak")}

        def sample_bytes(name: str) -> bytes | None:
            trak = by_name.get(name + "\0")
            if trak is None:
                return None
            at = int(find(trak, "mdia/minf/stbl/stco").chunk_offsets[0])
            stsz = find(trak, "mdia/minf/stbl/stsz")
            size = stsz.sample_size or int(stsz.entry_sizes[0])
            return sample[at : at + size]

        target = sample_bytes("bzna_target")
        if target is not None and len(targets) == len(names):  # the target track stops at the first sample without one
            targets.append(target)
        names.append(sample_bytes("bzna_fname"))
        thumb = by_name["bzna_thumb\0"]
        stsz = find(thumb, "mdia/minf/stbl/stsz")
        thumbs.append((offset + int(find(thumb, "mdia/minf/stbl/stco").chunk_offsets[0]), stsz.sample_size))
        if thumb_entry is None:
            entry = Boxes.parse(Box.build(find(thumb, "mdia/minf/stbl/stsd").children[0]))[0]
            entry.children = [box for box in entry.children if box.type != "clap"]
            thumb_entry = entry

    inputs_end = data_at + sum(len(s) for s in samples)
    target_offsets = list(inputs_end + 8 * np.arange(len(targets)))
    names_at = inputs_end + 8 * len(targets)
    name_offsets = list(np.cumsum([0] + [len(n) for n in names[:-1]]) + names_at)
    count = len(samples)
    moov = {
        "type": "moov",
        "children": [
            {"type": "mvhd", "version": 1, "timescale": 20, "duration": 20 * count, "volume": 0.0, "next_track_id": 5},
            _trak(1, "bzna_input", _mett("video/mp4"), [len(s) for s in samples], offsets),
            _trak(2, "bzna_target", _mett("application/octet-stream"), [8] * len(targets), target_offsets),
            _trak(3, "bzna_fname", _mett("text/plain"), [len(n) for n in names], name_offsets),
            _trak(4, "bzna_thumb", thumb_entry, [size for _, size in thumbs], [offset for offset, _ in thumbs], handler="vide", flags=3, size=512.0),
        ],
    }
    mdat_payload = b"".join(samples) + b"".join(targets) + b"".join(names)
    return ftyp + struct.pack(">I4sQ", 1, b"mdat", 16 + len(mdat_payload)) + mdat_payload + Box.build(moov)
