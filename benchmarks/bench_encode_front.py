"""Rate-distortion-speed front of libx265 for the one intra picture of a ``.bzna`` image.

    python benchmarks/bench_encode_front.py --grid presets --n 50          # presets x CRFs
    python benchmarks/bench_encode_front.py --grid params --n 50           # x265 parameters
    python benchmarks/bench_encode_front.py --n 220 --repeats 3 \\
        --config medium/18 --config DEFAULT                                 # named configurations

Images: :func:`photos.varied_photos`, ``--n`` different crops, rescales and mirrors of the
fixture photographs and of scikit-image's photographs (found when scikit-image is installed,
or give its ``skimage/data`` folder with ``--images``), long side 500 six times in ten, else
400-800, aspect ratios 1:1 to 2:1 both ways. They are encoded as a build encodes them:
:func:`bzna_boxes.encode.encode_image` with ``max_short_side`` 512 (so an image larger than
512x512 gets its thumbnail too), x265 held to one thread (``pools=1:frame-threads=1``), as in
each ``bzna build`` worker.

Speed is **CPU time** (``time.process_time``, all threads of this process) around each
``encode_image``, summed over the images; the figure is the median over ``--repeats`` passes,
as images/s per core (one thread, one core), and its ratio to the first row (the former
default, ``TODAY``). The configurations are interleaved image by image (in an order rotated
at each image), so that changes of the machine's load hit them alike. CPU time is far less disturbed than wall time by
other programs on a shared machine; the load average is printed with the wall time.

Quality of the image frame (not the thumbnail) inside its clean aperture, decoded by FFmpeg's
hevc decoder and converted to RGB by PyAV, against the source: luma PSNR (BT.601 Y' computed
from RGB, as ``tests/test_encode.py`` measures it), mean and minimum over the images; RGB PSNR
(mean); SSIM of that luma (mean; 7x7 uniform window, when SciPy is installed). Bytes: the
image's and thumbnail's payloads plus their ``hvcC`` boxes, mean per image.

``--config`` is ``PRESET/CRF`` or ``PRESET/CRF/x265-params``; ``DEFAULT`` is the library's
default (``encode_image`` without options); ``TODAY`` the former default, preset medium at
CRF 18 without extra parameters. ``--jsonl FILE`` appends one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bzna_boxes import Box, hevc  # noqa: E402
from bzna_boxes.encode import encode_image  # noqa: E402
from photos import photo_sources, varied_photos  # noqa: E402

ONE_THREAD = "pools=1:frame-threads=1"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
CRFS = (14, 16, 18, 20, 22, 24)
TODAY = ("medium", 18.0, "")

# x265 parameters for one intra picture, each tried on top of a preset (see --grid params)
PARAM_VARIANTS = (
    "",
    "keyint=1",
    "keyint=1:open-gop=0",
    "bframes=0:rc-lookahead=0",
    "psy-rd=0",
    "psy-rd=0:psy-rdoq=0",
    "aq-mode=0",
    "aq-mode=2",
    "psy-rd=0:aq-mode=0",
    "sao=0",
    "sao=1",
    "deblock=1",
    "deblock=0",
    "signhide=1",
    "rd=1",
    "rd=2",
    "rd=3",
    "rdoq-level=0",
    "rdoq-level=1",
    "rdoq-level=2",
    "ctu=32",
    "ctu=64",
    "min-cu-size=8",
    "min-cu-size=16",
    "tu-intra-depth=2",
    "b-intra=0",
    "limit-tu=4",
    "rskip=0",
    "rskip=2",
    "rect=1:amp=1",
    "fast-intra=0",
    "fast-intra=1",
    "early-skip=0",
)


def parse_config(text: str) -> tuple[str, float, str] | None:
    """``PRESET/CRF[/PARAMS]`` as a tuple; ``None`` for ``DEFAULT`` (the library's defaults)."""
    if text == "DEFAULT":
        return None
    if text == "TODAY":
        return TODAY
    preset, crf, *params = text.split("/", 2)
    return preset, float(crf), params[0] if params else ""


def config_name(config: tuple[str, float, str] | None) -> str:
    if config is None:
        return "DEFAULT"
    preset, crf, params = config
    return f"{preset}/{crf:g}" + (f"/{params}" if params else "")


def encode_options(config: tuple[str, float, str] | None) -> dict:
    """What a build worker passes to ``encode_image`` for this configuration (one x265 thread)."""
    if config is None:
        return {"x265_params": ONE_THREAD}
    preset, crf, params = config
    return {"preset": preset, "crf": crf, "x265_params": ONE_THREAD + (f":{params}" if params else "")}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two float planes (7x7 uniform window, as scikit-image's default); NaN without SciPy."""
    try:
        from scipy.ndimage import uniform_filter
    except ImportError:
        return float("nan")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mean = lambda x: uniform_filter(x, 7)  # noqa: E731
    ma, mb = mean(a), mean(b)
    va, vb, cov = mean(a * a) - ma * ma, mean(b * b) - mb * mb, mean(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s[3:-3, 3:-3].mean())


def quality(frame, ref_rgb: np.ndarray) -> tuple[float, float, float]:
    """(luma PSNR, RGB PSNR, luma SSIM) of the decoded frame against the source picture."""
    import av

    ctx = av.CodecContext.create("hevc", "r")
    (decoded,) = [*ctx.decode(av.Packet(hevc.to_annexb(frame))), *ctx.decode(None)]
    rgb = decoded.to_ndarray(format="rgb24")[: frame.height, : frame.width]
    ya, yb = luma(ref_rgb), luma(rgb)
    return psnr(ya, yb), psnr(ref_rgb.astype(np.float64), rgb.astype(np.float64)), ssim(ya, yb)


def hvcc_box_size(frame) -> int:
    return len(Box.build(dict(type="hvcC", **frame.hvcc)))


def measure(configs: list, images: list[np.ndarray], refs: list[np.ndarray], repeats: int) -> list[dict]:
    """Time every configuration on every image, interleaved (image by image, the configurations
    in an order rotated at each image) so that drifts of the machine's load hit all alike."""
    options = [encode_options(c) for c in configs]
    k = len(configs)
    cpu_totals = [[0.0] * repeats for _ in configs]
    wall_totals = [[0.0] * repeats for _ in configs]
    samples: list[list] = [[None] * len(images) for _ in configs]
    loads = [os.getloadavg()[0]]
    for repeat in range(repeats):
        for i, rgb in enumerate(images):
            for j in [(i + repeat + m) % k for m in range(k)]:
                w0, c0 = time.perf_counter(), time.process_time()
                sample = encode_image(rgb, **options[j])
                cpu_totals[j][repeat] += time.process_time() - c0
                wall_totals[j][repeat] += time.perf_counter() - w0
                samples[j][i] = sample
        loads.append(os.getloadavg()[0])
    n = len(images)
    results = []
    for j, config in enumerate(configs):
        sizes = [sum(len(f.payload) + hvcc_box_size(f) for f in (s.image, s.thumbnail) if f) for s in samples[j]]
        measured = [quality(s.image, ref) for s, ref in zip(samples[j], refs)]
        lumas = [m[0] for m in measured]
        cpu = statistics.median(cpu_totals[j]) / n
        results.append({
            "config": config_name(config),
            "n": n,
            "repeats": repeats,
            "cpu_ms": 1000 * cpu,
            "per_core": 1 / cpu,
            "wall_ms": 1000 * statistics.median(wall_totals[j]) / n,
            "load": round(statistics.mean(loads), 2),
            "bytes": statistics.mean(sizes),
            "luma_mean": statistics.mean(lumas),
            "luma_min": min(lumas),
            "rgb_mean": statistics.mean(m[1] for m in measured),
            "ssim_mean": statistics.mean(m[2] for m in measured),
            "below_38": sum(x < 38 for x in lumas),
            "luma": [round(x, 3) for x in lumas],
        })
    return results


HEADER = (
    f"{'configuration':58s} {'img/s/core':>10s} {'CPU ms':>7s} {'wall ms':>7s} {'load':>5s} {'bytes':>7s}"
    f" {'luma dB':>7s} {'min':>6s} {'<38':>4s} {'RGB dB':>7s} {'SSIM':>7s}"
)


def row(r: dict, anchor: dict | None) -> str:
    speed = f" ({r['per_core'] / anchor['per_core']:.2f}x)" if anchor else ""
    return (
        f"{r['config']:58s} {r['per_core']:10.2f} {r['cpu_ms']:7.1f} {r['wall_ms']:7.1f} {r['load']:5.2f}"
        f" {r['bytes']:7.0f} {r['luma_mean']:7.2f} {r['luma_min']:6.2f} {r['below_38']:4d} {r['rgb_mean']:7.2f}"
        f" {r['ssim_mean']:7.4f}{speed}"
    )


def grid(name: str, base: list[str], crf: float) -> list:
    if name == "presets":
        return [(p, float(c), "") for p in PRESETS for c in CRFS]
    if name == "params":
        return [(p, crf, v) for p in base or ["ultrafast"] for v in PARAM_VARIANTS]
    raise SystemExit(f"unknown grid {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="images")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the images (median of CPU time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=Path, action="append", default=[], help="more photographs (file or folder)")
    parser.add_argument("--grid", choices=("presets", "params"), help="a built-in sweep")
    parser.add_argument("--base", action="append", default=[], help="presets of --grid params (ultrafast)")
    parser.add_argument("--grid-crf", type=float, default=16.0, help="CRF of --grid params")
    parser.add_argument("--config", action="append", default=[], help="PRESET/CRF[/PARAMS], DEFAULT or TODAY")
    parser.add_argument("--jsonl", type=Path, help="append each result here as a JSON line")
    args = parser.parse_args()

    configs = [TODAY] + (grid(args.grid, args.base, args.grid_crf) if args.grid else []) + [parse_config(c) for c in args.config]
    configs = list(dict.fromkeys(configs))
    sources = photo_sources(args.images)
    images = varied_photos(args.n, sources, seed=args.seed)
    # the picture encoded: resized to a short side of at most 512, as encode_image does
    from bzna_boxes.encode import _resize, resized_size

    refs = [_resize(im, resized_size(im.shape[1], im.shape[0], 512)) for im in images]
    import av

    print(f"{args.n} images from {len(sources)} photographs (seed {args.seed}), median of {args.repeats} "
          f"pass(es); speed from CPU time of encode_image with x265 on one thread ({ONE_THREAD}); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; PyAV {av.__version__}")
    print(HEADER)
    results = measure(configs, images, refs, args.repeats)
    for result in results:
        print(row(result, results[0]), flush=True)
    if args.jsonl:
        with args.jsonl.open("a") as f:
            for result in results:
                f.write(json.dumps({**result, "seed": args.seed}) + "\n")


if __name__ == "__main__":
    main()
