"""Helpers shared by the writer, build and concat tests: small images, decoding, inner-sample parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bzna_boxes import Boxes, find, layout
from bzna_boxes.hevc import sample_to_annexb

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "fixtures" / "images"
FAST = {"preset": "ultrafast"}


def gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth H x W x 3 uint8 picture that encodes quickly and differs per seed."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1), (x + y + 40 * seed) % 256], axis=-1)
    return rgb.astype(np.uint8)


def decode(payload, hvcc: dict) -> np.ndarray:
    """Decode one length-prefixed H.265 sample with FFmpeg (PyAV) to an RGB frame (padding included)."""
    import av

    codec = av.CodecContext.create("hevc", "r")
    frames = [*codec.decode(av.Packet(bytes(sample_to_annexb(payload, hvcc)))), *codec.decode(None)]
    assert len(frames) == 1
    return frames[0].to_ndarray(format="rgb24")


def inner_tracks(data) -> dict[str, dict]:
    """The four tracks of an inner sample: name -> tkhd, hdlr, sample entry, payload bytes."""
    boxes = Boxes.parse(bytes(data))
    assert [b.type for b in boxes] == ["ftyp", "mdat", "moov"]
    buffer = bytes(data)
    tracks = {}
    for trak in find(boxes, "moov").children:
        if trak.type != "trak":
            continue
        stbl = find(trak, "mdia/minf/stbl")
        offset = int(find(stbl, "stco").chunk_offsets[0])
        size = int(find(stbl, "stsz").entry_sizes[0])
        name = find(trak, "mdia/hdlr").name.rstrip("\x00")
        tracks[name] = {
            "tkhd": find(trak, "tkhd"),
            "hdlr": find(trak, "mdia/hdlr"),
            "entry": find(stbl, "stsd").children[0],
            "payload": buffer[offset : offset + size],
            "trak": trak,
        }
    return tracks


def hvcc_of(entry) -> dict:
    """The hvcC fields of a parsed hvc1 sample entry."""
    box = find(entry, "hvcC")
    return {k: v for k, v in box.items() if k != "type" and not k.startswith("_")}


def crop_to_clap(rgb: np.ndarray, entry) -> np.ndarray:
    """The clean aperture of a decoded frame (seed clap: picture at the top left, padding right/bottom)."""
    clap = find(entry, "clap")
    width = clap.clean_aperture_width_n // clap.clean_aperture_width_d
    height = clap.clean_aperture_height_n // clap.clean_aperture_height_d
    assert -clap.horiz_off_n == entry.width - width and clap.horiz_off_d == 2
    assert -clap.vert_off_n == entry.height - height and clap.vert_off_d == 2
    return rgb[:height, :width]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y' of RGB."""
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def tables(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every track's (offsets, sizes) through the reader, by hdlr name."""
    import bzna_boxes.index as index

    with index.open(path) as f:
        return {t.name: (t.offsets.copy(), t.sizes.copy()) for t in f.tracks}


def sample_bytes(path, track: str = layout.INPUT_TRACK) -> list[bytes]:
    """The bytes of every sample of ``track``, through the reader."""
    import bzna_boxes.index as index

    with index.open(path) as f:
        return [bytes(view) for view in f.track(track)]
