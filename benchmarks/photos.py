"""Benchmark inputs: distinct crops of the fixture photographs, as arrays or as a JPEG ImageFolder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def photo_crops(size: tuple[int, int], n: int, zoom_step: float = 0.05, mirror_odd: bool = False) -> list[np.ndarray]:
    """``n`` centre crops of ``size`` (width, height) of the fixture photographs, each round zoomed
    in by ``zoom_step`` so that no two are alike (every odd one mirrored when ``mirror_odd``)."""
    from PIL import Image

    from bzna_boxes.encode import load_rgb

    photos = sorted((ROOT / "fixtures" / "images").glob("*/*.jpg"))
    width, height = size
    out = []
    for i in range(n):
        src = Image.fromarray(load_rgb(photos[i % len(photos)]))
        scale = (1 + zoom_step * (i // len(photos))) * max(width / src.width, height / src.height)
        big = src.resize((max(width, round(src.width * scale)), max(height, round(src.height * scale))), Image.Resampling.LANCZOS)
        left, top = (big.width - width) // 2, (big.height - height) // 2
        crop = np.asarray(big.crop((left, top, left + width, top + height)))
        out.append(np.ascontiguousarray(crop[:, ::-1]) if mirror_odd and i % 2 else crop)
    return out


def photo_folder(folder: Path, size: tuple[int, int], n: int, classes: int = 3) -> list[Path]:
    """Save :func:`photo_crops` as JPEG q90 files in ``classes`` class folders; return their paths."""
    from PIL import Image

    paths = []
    for i, crop in enumerate(photo_crops(size, n)):
        path = folder / f"class{i % classes:02d}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


# Photographs among scikit-image's bundled data (``skimage/data``): the rest are drawings,
# text, microscopy or synthetic patterns. Gray ones are read as three equal channels.
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
    "retina.jpg", "rocket.jpg",
)

ASPECTS = (4 / 3, 3 / 2, 1.0, 5 / 4, 16 / 9, 2.0)
"""Long side over short side of the varied set (ImageNet's are mostly 4:3 and 3:2)."""


def photo_sources(extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    """The fixture photographs, scikit-image's photographs (when scikit-image is installed, or
    its ``data`` folder is given in ``extra``) and any other image files or folders in ``extra``."""
    import importlib.util

    paths = sorted((ROOT / "fixtures" / "images").glob("*/*.jpg"))
    folders = [Path(p) for p in extra]
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "data")
    for folder in folders:
        if folder.is_file():
            paths.append(folder)
        elif folder.name == "data" and (folder / "astronaut.png").exists():
            paths += [folder / name for name in SKIMAGE_PHOTOS if (folder / name).exists()]
        else:
            paths += sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return list(dict.fromkeys(paths))


def varied_photos(n: int, sources: list[Path], seed: int = 0) -> list[np.ndarray]:
    """``n`` different photographs of ImageNet-like sizes, the same for the same arguments.

    Image ``i`` comes from ``sources[i % len(sources)]``: a crop at a random place of a random
    aspect ratio (:data:`ASPECTS`, landscape or portrait as the source, one in four turned the
    other way) covering 55 to 100 % of what fits, resized (Pillow LANCZOS) to a long side of 500
    (six times in ten, as ImageNet's most common 500x375 and 500x333) or drawn from 400 to 800,
    mirrored left-right one time in two. Small sources are upscaled.
    """
    from PIL import Image

    from bzna_boxes.encode import load_rgb

    images = [Image.fromarray(load_rgb(p)) for p in sources]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        src = images[i % len(images)]
        aspect = ASPECTS[rng.integers(len(ASPECTS))]
        portrait = (src.height > src.width) != (rng.random() < 0.25)
        # the largest crop of that aspect that fits, then 55-100 % of it
        w_over_h = 1 / aspect if portrait else aspect
        crop_w = min(src.width, src.height * w_over_h)
        crop_h = crop_w / w_over_h
        fraction = rng.uniform(0.55, 1.0)
        crop_w, crop_h = max(8, round(crop_w * fraction)), max(8, round(crop_h * fraction))
        left = int(rng.integers(src.width - crop_w + 1))
        top = int(rng.integers(src.height - crop_h + 1))
        long = 500 if rng.random() < 0.6 else int(rng.integers(400, 801))
        size = (round(long / aspect), long) if portrait else (long, round(long / aspect))
        picture = src.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h))
        array = np.asarray(picture)
        out.append(np.ascontiguousarray(array[:, ::-1]) if rng.random() < 0.5 else array)
    return out
