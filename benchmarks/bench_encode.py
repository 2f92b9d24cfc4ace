"""Speed (and quality) of bzna_boxes.encode against a bare PyAV libx265 encode.

    python benchmarks/bench_encode.py --n 20          # speed, 500x375 photographs
    python benchmarks/bench_encode.py --psnr          # quality table over CRFs

Speed: the photographs of fixtures/images (or --images DIR) are cropped and resized
to 500x375 (ImageNet's most common size) and saved as JPEG quality 90 in memory, which
is the "source" size. Each repeat times, image by image, ``encode_image`` at its
defaults and the floor: a bare PyAV libx265 encode (same options: CRF, preset and x265
parameters) of the same frame already padded to 512x512, one fresh encoder per frame as
independent intra pictures need. The figures are the medians over the repeats.

Quality: every image at its own size, encoded at each CRF, decoded by FFmpeg's hevc
decoder, converted to RGB by PyAV and cropped to the clean aperture; PSNR of BT.601
luma and of RGB against the (resized) source.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bzna_boxes import Box, hevc  # noqa: E402
from bzna_boxes.encode import (  # noqa: E402
    encode_image,
    load_rgb,
    pad_to_multiple,
    x265_options,
)

SIZE = (500, 375)


def source_paths(folder: Path) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)
    if not paths:
        sys.exit(f"no images under {folder}")
    return paths


def make_inputs(paths: list[Path], n: int) -> list[tuple[np.ndarray, int]]:
    """n distinct 500x375 crops (RGB array, bytes of its JPEG q90)."""
    from PIL import Image

    out = []
    for i in range(n):
        src = Image.fromarray(load_rgb(paths[i % len(paths)]))
        zoom = 1 + 0.1 * (i // len(paths))  # later rounds take tighter crops
        scale = zoom * max(SIZE[0] / src.width, SIZE[1] / src.height)
        big = src.resize((max(SIZE[0], round(src.width * scale)), max(SIZE[1], round(src.height * scale))),
                         Image.Resampling.LANCZOS)
        left = (big.width - SIZE[0]) // 2
        top = (big.height - SIZE[1]) // 2
        crop = big.crop((left, top, left + SIZE[0], top + SIZE[1]))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        out.append((np.asarray(crop), buf.tell()))
    return out


def bare_encode(frame_rgb: np.ndarray, options: dict) -> int:
    """The floor: libx265 through PyAV (same RGB -> yuv420p conversion), nothing else."""
    import av
    from av.codec.context import Flags

    ctx = av.CodecContext.create("libx265", "w")
    ctx.width = frame_rgb.shape[1]
    ctx.height = frame_rgb.shape[0]
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 20)
    ctx.flags |= Flags.global_header
    ctx.options = options
    ctx.open()
    frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24").reformat(format="yuv420p", interpolation="AREA")
    frame.pts = 0
    return sum(len(bytes(p)) for p in [*ctx.encode(frame), *ctx.encode(None)])


def bench_speed(args) -> None:
    inputs = make_inputs(source_paths(args.images), args.n)
    padded = [np.ascontiguousarray(pad_to_multiple(rgb)) for rgb, _ in inputs]
    options = x265_options(args.crf, args.preset, args.x265_params)
    chosen = dict(crf=args.crf, preset=args.preset, x265_params=args.x265_params)
    ours, floor, ours_cpu, floor_cpu = [], [], [], []
    for _ in range(args.repeats):
        # image by image, alternating which goes first, so that drifts of the machine and
        # the wind-down of the previous encoder's threads hit both alike
        wall = {"ours": 0.0, "floor": 0.0}
        cpu = {"ours": 0.0, "floor": 0.0}
        samples = []
        for i, ((rgb, _), frame) in enumerate(zip(inputs, padded)):
            runs = [
                ("ours", lambda: samples.append(encode_image(rgb, **chosen))),
                ("floor", lambda: bare_encode(frame, options)),
            ]
            for name, run in runs[:: 1 if i % 2 == 0 else -1]:
                w0, c0 = time.perf_counter(), time.process_time()
                run()
                wall[name] += time.perf_counter() - w0
                cpu[name] += time.process_time() - c0
        ours.append(wall["ours"] / args.n)
        floor.append(wall["floor"] / args.n)
        ours_cpu.append(cpu["ours"] / args.n)
        floor_cpu.append(cpu["floor"] / args.n)
    sizes = [
        sum(len(f.payload) + len(Box.build(dict(type="hvcC", **f.hvcc))) for f in (s.image, s.thumbnail) if f)
        for s in samples
    ]
    t_ours, t_floor = statistics.median(ours), statistics.median(floor)
    c_ours, c_floor = statistics.median(ours_cpu), statistics.median(floor_cpu)
    jpeg = statistics.mean(b for _, b in inputs)
    hevc_bytes = statistics.mean(sizes)
    print(f"{args.n} images {SIZE[0]}x{SIZE[1]}, codec options {options}, "
          f"median of {args.repeats} repeats (CPU time: all threads of the process)")
    print(f"  encode_image        {1 / t_ours:7.2f} images/s  ({1000 * t_ours:6.1f} ms/image, {1000 * c_ours:6.1f} ms CPU)")
    print(f"  bare PyAV libx265   {1 / t_floor:7.2f} images/s  ({1000 * t_floor:6.1f} ms/image, {1000 * c_floor:6.1f} ms CPU)")
    print(f"  ratio (ours/floor)  {t_ours / t_floor:7.3f}x time, {c_ours / c_floor:.3f}x CPU time")
    print(f"  bytes/image         {hevc_bytes:9.0f} H.265 (payload + hvcC box) vs {jpeg:9.0f} JPEG q90 "
          f"({hevc_bytes / jpeg:.2f}x)")


def bench_psnr(args) -> None:
    import av
    from PIL import Image

    def psnr(a, b):
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        return 10 * np.log10(255.0**2 / mse) if mse else float("inf")

    def luma(rgb):
        return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    print(f"{'image':24s} {'size':>9s} {'crf':>4s} {'bytes':>7s} {'thumb':>6s} {'luma dB':>8s} {'RGB dB':>7s}")
    for path in source_paths(args.images):
        src = load_rgb(path)
        for crf in args.crfs:
            sample = encode_image(src, crf=crf, preset=args.preset, x265_params=args.x265_params)
            frame = sample.image
            thumb = len(sample.thumbnail.payload) if sample.thumbnail else 0
            ref = src
            if (frame.width, frame.height) != (src.shape[1], src.shape[0]):
                ref = np.asarray(Image.fromarray(src).resize((frame.width, frame.height),
                                                             Image.Resampling.LANCZOS))
            ctx = av.CodecContext.create("hevc", "r")
            (decoded,) = [*ctx.decode(av.Packet(hevc.to_annexb(frame))), *ctx.decode(None)]
            rgb = decoded.to_ndarray(format="rgb24")[: frame.height, : frame.width]
            print(f"{path.name:24s} {frame.width:4d}x{frame.height:<4d} {crf:4g} {len(frame.payload):7d} {thumb:6d} "
                  f"{psnr(luma(ref), luma(rgb)):8.2f} {psnr(ref, rgb):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="number of images (speed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crf", type=float, default=None, help="default: the library's")
    parser.add_argument("--preset", default=None, help="default: the library's (its preset and x265 parameters)")
    parser.add_argument("--x265-params", default=None)
    parser.add_argument("--images", type=Path, default=ROOT / "fixtures" / "images")
    parser.add_argument("--psnr", action="store_true", help="print the quality table instead")
    parser.add_argument("--crfs", type=lambda s: [float(c) for c in s.split(",")], default=[14, 16, 18, 20])
    args = parser.parse_args()
    if args.psnr:
        bench_psnr(args)
    else:
        bench_speed(args)


if __name__ == "__main__":
    main()
