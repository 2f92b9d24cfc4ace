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
