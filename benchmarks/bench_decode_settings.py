"""Decoding time against quality of the encoder's settings: what a setting costs the CPU reader.

    python benchmarks/bench_decode_settings.py --n 64 --repeats 5 \\
        --config DEFAULT --config ultrafast/16/psy-rd=0:signhide=1:ctu=64:rd=1:no-deblock=1

Images: ``--n`` distinct 500x375 crops of the fixture photographs (:func:`photos.photo_crops`,
ImageNet's most common size), each encoded once per ``--config`` (the syntax of
``bench_encode_front.py``: ``PRESET/CRF[/x265-params]`` or ``DEFAULT``) as a build encodes it
(:func:`bzna_boxes.encode.encode_image`, one x265 thread). Decoding: the image frame's access
unit through one reused FFmpeg ``hevc`` context on one thread, as
:class:`bzna_boxes.decode.CpuDecoder` does (``decode_frame``: decode only, column "decode ms"),
and ``decode`` (decode plus the colour conversion and crop, column "+RGB ms"); the
configurations take turns image by image, ``--repeats`` passes, median of the per-pass mean.
Times are the decoding thread's CPU time (``time.thread_time``: FFmpeg and swscale run on it),
which other programs on a shared machine disturb far less than the wall time. Quality as in
``bench_encode_front.py``: luma PSNR (mean, minimum), RGB PSNR and luma SSIM of the decoded
picture against the source.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_encode_front import config_name, encode_options, hvcc_box_size, parse_config, quality  # noqa: E402
from photos import photo_crops  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="images")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", action="append", default=None, help="PRESET/CRF[/x265-params] or DEFAULT (repeatable)")
    args = parser.parse_args()

    from bzna_boxes.decode import CpuDecoder
    from bzna_boxes.encode import encode_image
    from bzna_boxes.image import EncodedImage, CleanAperture

    configs = [parse_config(text) for text in (args.config or ["DEFAULT"])]
    crops = photo_crops((500, 375), args.n)
    print(f"{args.n} crops of 500x375, {args.repeats} passes; load average {os.getloadavg()}")
    encoded = [[encode_image(rgb, **encode_options(c)).image for rgb in crops] for c in configs]
    images = [
        [
            EncodedImage(memoryview(f.payload), f.hvcc, f.frame_width, f.frame_height, f.width, f.height,
                         CleanAperture(0, 0, f.width, f.height))
            for f in frames
        ]
        for frames in encoded
    ]
    decoder = CpuDecoder()
    k = len(configs)
    decode_ms = [[0.0] * args.repeats for _ in configs]
    rgb_ms = [[0.0] * args.repeats for _ in configs]
    for repeat in range(args.repeats):
        for i in range(args.n):
            for j in [(i + repeat + m) % k for m in range(k)]:
                start = time.thread_time()
                decoder.decode_frame(images[j][i])
                middle = time.thread_time()
                decoder.decode(images[j][i])
                rgb_ms[j][repeat] += time.thread_time() - middle
                decode_ms[j][repeat] += middle - start
    print(f"{'configuration':62s} {'bytes':>7s} {'decode ms':>9s} {'+RGB ms':>8s} {'luma dB':>7s} {'min':>6s}"
          f" {'RGB dB':>7s} {'SSIM':>7s}")
    anchor = None
    for j, config in enumerate(configs):
        frames = encoded[j]
        measured = [quality(f, ref) for f, ref in zip(frames, crops)]
        lumas = [m[0] for m in measured]
        size = statistics.mean(len(f.payload) + hvcc_box_size(f) for f in frames)
        decode = 1000 * statistics.median(decode_ms[j]) / args.n
        rgb = 1000 * statistics.median(rgb_ms[j]) / args.n
        anchor = anchor or decode
        print(f"{config_name(config):62s} {size:7.0f} {decode:9.2f} {rgb:8.2f} {statistics.mean(lumas):7.2f}"
              f" {min(lumas):6.2f} {statistics.mean(m[1] for m in measured):7.2f}"
              f" {statistics.mean(m[2] for m in measured):7.4f}  ({decode / anchor:.2f}x)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
