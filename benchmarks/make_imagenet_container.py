"""Write an ImageNet-scale ``.bzna``-shaped container, sparse: every box is real, no payload byte is.

    python benchmarks/make_imagenet_container.py /tmp/imagenet.bzna [--samples 1431167] [--seed 0]

The layout is the seed's (``shared/seed/imagenet-2012-bzna.rst``): ``ftyp`` (isom, 0,
[bzna, isom]); one ``mdat`` with a 64-bit largesize header whose payload (input samples, then
targets, then filenames) is a hole made with ``seek`` and never written; then ``moov`` with the
four tracks ``bzna_input``, ``bzna_target``, ``bzna_fname`` and the video track, N samples each
(``stts``, ``stsz`` with one size per sample, ``stsc`` (1, 1, 1), ``co64``). The video track
declares ``hvc1`` (the seed's ``avc1`` is wrong: the payloads are H.265). Sizes are random but
realistic (60-150 KB per input sample, 8 bytes per target, about 30 bytes per filename, 20-40 KB
per thumbnail inside its input sample), so the file has the real one's apparent size (about 136
GB at the full 1,431,167 samples) and its moov (about 69 MB) while taking only the moov on disk.
The moov is built with the library's own :data:`bzna_boxes.Box` from plain values.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bzna_boxes import Box  # noqa: E402
from bzna_boxes import layout  # noqa: E402

FTYP = {
    "type": "ftyp",
    "major_brand": layout.MAJOR_BRAND,
    "minor_version": layout.MINOR_VERSION,
    "compatible_brands": list(layout.COMPATIBLE_BRANDS),
}
MDAT_HEADER = 16
"""size=1, 'mdat', 64-bit largesize."""
INNER_TAIL = 1_600
"""Bytes after the thumbnail inside an input sample: target, filename and the inner moov (about)."""

# Parameter sets of a 512x512 frame from libx265 4.2 (PyAV 18.1, yuv420p, Main profile, level 3).
VPS = bytes.fromhex("40010c01ffff01600000030090000003000003005a959809")
SPS = bytes.fromhex("42010101600000030090000003000003005aa004020080596566924cae6808000003000800000300a040")
PPS = bytes.fromhex("4401c172b46240")
HVCC = {
    "type": "hvcC",
    "general_profile_idc": 1,
    "general_profile_compatibility_flags": 0x60000000,
    "general_constraint_indicator_flags": 0x900000000000,
    "general_level_idc": 90,
    "arrays": [
        {"nal_unit_type": 32, "nalus": [VPS]},
        {"nal_unit_type": 33, "nalus": [SPS]},
        {"nal_unit_type": 34, "nalus": [PPS]},
    ],
}


def sample_sizes(samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random, realistic sizes: input samples, targets, filenames, thumbnails (inside inputs)."""
    rng = np.random.default_rng(seed)
    return {
        "input": rng.triangular(60_000, 75_000, 150_000, samples).astype(np.uint32),
        "target": np.full(samples, layout.TARGET_DTYPE.itemsize, np.uint32),
        "fname": rng.integers(24, 37, samples, dtype=np.uint32),
        "thumb": rng.integers(20_000, 40_001, samples, dtype=np.uint32),
    }


def _offsets(start: int, sizes: np.ndarray) -> np.ndarray:
    """Offsets of back-to-back samples of ``sizes`` starting at ``start``."""
    out = np.empty(len(sizes), np.uint64)
    if len(sizes):
        out[0] = start
        np.cumsum(sizes[:-1], dtype=np.uint64, out=out[1:])
        out[1:] += np.uint64(start)
    return out


def _track(track_id: int, name: str, handler: str, flags: int, size: tuple[float, float], delta: int, entry: dict, sizes, offsets) -> dict:
    """One ``trak`` of the outer moov, as plain values."""
    samples = len(sizes)
    duration = samples * delta
    media_header = {"type": "vmhd", "flags": 1} if handler == "vide" else {"type": "nmhd"}
    stbl = [
        {"type": "stsd", "children": [entry]},
        {"type": "stts", "entries": [(samples, delta)] if samples else []},
        {"type": "stsz", "entry_sizes": sizes},
        {"type": "stsc", "entries": [(1, 1, 1)] if samples else []},
        {"type": "co64", "chunk_offsets": offsets},
    ]
    minf = [
        media_header,
        {"type": "dinf", "children": [{"type": "dref", "children": [{"type": "url ", "flags": 1}]}]},
        {"type": "stbl", "children": stbl},
    ]
    mdia = [
        {"type": "mdhd", "timescale": layout.TIMESCALE, "duration": duration},
        {"type": "hdlr", "handler_type": handler, "name": name + "\x00"},
        {"type": "minf", "children": minf},
    ]
    tkhd = {"type": "tkhd", "flags": flags, "track_id": track_id, "duration": duration, "width": size[0], "height": size[1]}
    return {"type": "trak", "children": [tkhd, {"type": "mdia", "children": mdia}]}


def _mett(mime: str) -> dict:
    return {"type": "mett", "mime_format": mime, "children": []}


def imagenet_moov(sizes: dict[str, np.ndarray], payload_start: int) -> tuple[dict, int]:
    """The outer moov for these sample sizes, and the mdat payload size it implies."""
    samples = len(sizes["input"])
    inputs = _offsets(payload_start, sizes["input"])
    targets_start = payload_start + int(sizes["input"].sum(dtype=np.uint64))
    targets = _offsets(targets_start, sizes["target"])
    fnames_start = targets_start + int(sizes["target"].sum(dtype=np.uint64))
    fnames = _offsets(fnames_start, sizes["fname"])
    payload_end = fnames_start + int(sizes["fname"].sum(dtype=np.uint64))
    thumbs = inputs + sizes["input"] - sizes["thumb"] - INNER_TAIL
    hvc1 = {"type": "hvc1", "width": layout.THUMBNAIL_SIZE, "height": layout.THUMBNAIL_SIZE, "children": [HVCC]}
    side = float(layout.THUMBNAIL_SIZE)
    meta = "meta"
    traks = [
        _track(1, layout.INPUT_TRACK, meta, 0, (0.0, 0.0), layout.SAMPLE_DELTA, _mett(layout.TARGET_MIME), sizes["input"], inputs),
        _track(2, layout.TARGET_TRACK, meta, 0, (0.0, 0.0), layout.SAMPLE_DELTA, _mett(layout.TARGET_MIME), sizes["target"], targets),
        _track(3, layout.FILENAME_TRACK, meta, 3, (0.0, 0.0), layout.SAMPLE_DELTA, _mett(layout.FILENAME_MIME), sizes["fname"], fnames),
        _track(4, layout.VIDEO_TRACK, "vide", 3, (side, side), 1, hvc1, sizes["thumb"], thumbs),
    ]
    mvhd = {"type": "mvhd", "timescale": layout.TIMESCALE, "duration": samples * layout.SAMPLE_DELTA, "next_track_id": 5}
    return {"type": "moov", "children": [mvhd, *traks]}, payload_end - payload_start


def write_container(path: str | os.PathLike, samples: int = layout.IMAGENET_LENGTH, seed: int = 0) -> dict:
    """Write the sparse container at ``path`` (atomically); return a summary of what was written."""
    head = Box.build(FTYP)
    payload_start = len(head) + MDAT_HEADER
    moov, payload = imagenet_moov(sample_sizes(samples, seed), payload_start)
    moov_bytes = Box.build(moov)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(head + struct.pack(">I4sQ", 1, b"mdat", MDAT_HEADER + payload))
            f.seek(payload, os.SEEK_CUR)  # the hole: the payload is never written
            f.write(moov_bytes)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {
        "samples": samples,
        "file_size": payload_start + payload + len(moov_bytes),
        "mdat_payload": payload,
        "moov_offset": payload_start + payload,
        "moov_size": len(moov_bytes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--samples", type=int, default=layout.IMAGENET_LENGTH, help="samples per track (default 1,431,167)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sizes")
    args = parser.parse_args(argv)
    if args.samples < 0:
        parser.error("--samples must be >= 0")
    start = time.perf_counter()
    try:
        info = write_container(args.path, args.samples, args.seed)
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")
    on_disk = os.stat(args.path).st_blocks * 512
    print(
        f"{args.path}: {info['samples']:,} samples per track, {info['file_size'] / 1e9:.1f} GB apparent, "
        f"{on_disk / 1e6:.1f} MB on disk, moov {info['moov_size'] / 1e6:.1f} MB at offset {info['moov_offset']:,} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
