"""Unusual but legitimate images, and broken ones, through load_rgb, bzna build and the CPU decoder.

Every input is made with Pillow at test time, small, in a temporary folder.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from writer_support import gradient, luma, psnr

import bzna_boxes
from bzna_boxes.build import build, list_sources, sidecar_paths
from bzna_boxes.cli import main
from bzna_boxes.encode import load_rgb, resized_size, thumbnail_size

pytest.importorskip("av", reason="encoding and decoding need PyAV")
Image = pytest.importorskip("PIL.Image")

FAST = {"preset": "ultrafast"}
UNDECODABLE = os.fsdecode(b"latin1_caf\xe9.png")  # a Linux filename that is not UTF-8


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail, instead of hanging, when the block takes longer than ``seconds`` (main thread, Unix)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims ``width`` x ``height`` pixels and holds none (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------
# load_rgb


@pytest.mark.parametrize("mode", ["RGB", "L", "I;16"])
def test_load_rgb_transparent_colour_is_white(tmp_path, mode):
    """A PNG's transparent colour (tRNS) is transparency too, as in palette images."""
    rgb = gradient(6, 4)
    if mode == "RGB":
        im, key, expected = Image.fromarray(rgb), tuple(int(v) for v in rgb[1, 2]), rgb.copy()
    elif mode == "L":
        im, key, expected = Image.fromarray(rgb[:, :, 0]), int(rgb[1, 2, 0]), np.repeat(rgb[:, :, :1], 3, 2)
    else:
        im, key, expected = Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257), int(rgb[1, 2, 0]) * 257, np.repeat(rgb[:, :, :1], 3, 2)
    path = tmp_path / "keyed.png"
    im.save(path, transparency=key)
    with Image.open(path) as read:
        assert read.mode == mode and read.info["transparency"] == key
    out = load_rgb(path)
    transparent = (np.asarray(im) == key).reshape(4, 6, -1).all(-1)
    assert transparent.sum() >= 1
    expected[transparent] = 255
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_rgb_every_exif_orientation(tmp_path, orientation):
    """The picture as displayed: stored transposed, tagged with the orientation that undoes it."""
    shown = gradient(6, 4, seed=orientation)
    undo = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}
    stored = Image.fromarray(shown)
    if orientation in undo:
        stored = stored.transpose(getattr(Image.Transpose, undo[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    stored.save(path, exif=exif)
    assert np.array_equal(load_rgb(path), shown)


def test_load_rgb_does_not_block_on_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with deadline(10), pytest.raises(ValueError, match="not a regular file"):
        load_rgb(fifo)


# ---------------------------------------------------------------------------
# a build of everything


def unusual_tree(root) -> tuple[set[str], dict[str, str]]:
    """An ImageFolder tree: (the images that must be stored, {image that must fail: a word of its reason})."""
    good: set[str] = set()
    bad: dict[str, str] = {}

    def put(name: str, image, **params) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **params)
        good.add(name)

    rgb = gradient(40, 24)
    photo = Image.fromarray(rgb)
    frames = [Image.fromarray(gradient(20, 12, seed=s)) for s in range(3)]
    # modes and formats
    put("modes/cmyk.jpg", photo.convert("CMYK"), quality=95)
    put("modes/ycbcr.tif", photo.convert("YCbCr"))
    put("modes/lab.tif", photo.convert("LAB"))
    put("modes/la.png", Image.fromarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]]), "LA"))
    put("modes/i16.png", Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257))
    put("modes/float.tif", Image.fromarray(rgb[:, :, 0].astype(np.float32)))
    put("modes/keyed.png", photo, transparency=tuple(int(v) for v in rgb[0, 0]))
    put("modes/palette_trns.gif", photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=32), transparency=3)
    put("modes/progressive.JPEG", photo, quality=95, progressive=True)
    put("modes/lossless.webp", photo, lossless=True)
    put("modes/animated.gif", frames[0], save_all=True, append_images=frames[1:])
    put("modes/pages.tif", frames[0], save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    put("modes/rotated.jpg", photo, quality=95, exif=exif)
    put("modes/png_named.jpg", photo, format="PNG")
    # sizes
    for width, height in [(1, 1), (2, 2), (3, 5), (1, 700), (700, 1), (513, 511)]:
        put(f"sizes/{width}x{height}.png", Image.fromarray(gradient(width, height, seed=width)))
    # names (the class folder's too)
    for name in ["é.png", "中文 文件.png", "emoji 😀.png", " spaces  .png", "x" * 220 + ".png", UNDECODABLE]:
        put(f"classé 猫/{name}", photo)
    # broken
    broken = root / "broken"
    broken.mkdir()
    (broken / "empty.jpg").write_bytes(b"")
    bad["broken/empty.jpg"] = "cannot identify"
    jpeg = (root / "modes" / "progressive.JPEG").read_bytes()
    (broken / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    bad["broken/truncated.jpg"] = "truncated"
    (broken / "text.jpg").write_text("just some text\n")
    bad["broken/text.jpg"] = "cannot identify"
    png_header_only(broken / "bomb.png", 20000, 20000)
    bad["broken/bomb.png"] = "decompression bomb"
    os.mkfifo(broken / "fifo.png")
    bad["broken/fifo.png"] = "not a regular file"
    os.symlink(root / "absent.png", broken / "dangling.png")
    bad["broken/dangling.png"] = "No such file"
    if os.geteuid() != 0:  # root reads anything
        (broken / "unreadable.png").write_bytes((root / "sizes" / "2x2.png").read_bytes())
        os.chmod(broken / "unreadable.png", 0)
        bad["broken/unreadable.png"] = "Permission denied"
    os.symlink("..", broken / "up")  # cycles: not followed
    os.symlink(".", broken / "here")
    return good, bad


def test_unusual_images_build_decode_and_keep_their_names(tmp_path, capsys):
    root = tmp_path / "src"
    good, bad = unusual_tree(root)
    with deadline(10):
        listing = list_sources(root)
    filenames = [s.filename for s in listing.sources]
    assert sorted(filenames) == sorted([*good, *bad])  # no cycle followed
    assert listing.classes == ["broken", "classé 猫", "modes", "sizes"]

    out = tmp_path / "unusual.bzna"
    with deadline(60):
        assert main(["build", str(root), str(out), "--preset", "ultrafast", "--workers", "1", "-q"]) == 0
    assert f"{len(filenames)} samples ({len(bad)} missing)" in capsys.readouterr().out
    with open(sidecar_paths(out)[1], encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, dialect="excel-tab"))[1:]
    assert sorted(name for _, name, _ in rows) == sorted(bad)
    for index, name, reason in rows:
        assert filenames[int(index)] == name and bad[name] in reason, (name, reason)
    classes = Path(sidecar_paths(out)[0]).read_text(encoding="utf-8")
    assert classes == "broken\nclassé 猫\nmodes\nsizes\n"

    decoder = bzna_boxes.decode.CpuDecoder()
    with bzna_boxes.Dataset(out) as ds:
        assert [sample.filename for sample in ds] == filenames  # exactly, undecodable bytes included
        assert [filenames[i] for i in ds.missing] == [name for name in filenames if name in bad]
        for i, name in enumerate(filenames):
            if name in bad:
                continue
            source = load_rgb(listing.sources[i].path)
            size = resized_size(source.shape[1], source.shape[0], 512)
            picture = decoder.decode(ds[i].image("bzna_input"))
            thumbnail = decoder.decode(ds[i].image("bzna_thumb"))
            assert picture.shape == (size[1], size[0], 3), name
            assert thumbnail.shape == (*thumbnail_size(*size)[::-1], 3), name
            if size == source.shape[1::-1]:
                assert psnr(luma(picture), luma(source)) >= 35, name
        assert ds[filenames.index("modes/rotated.jpg")].image().height == 40  # 40x24, EXIF 6: shown 24x40


def test_first_frame_of_animations(tmp_path):
    """Animated GIF, WebP and PNG and multi-page TIFF: the first frame is the image."""
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    for name in ("a.gif", "a.webp", "a.png", "a.tif"):
        path = tmp_path / name
        frames[0].save(path, save_all=True, append_images=frames[1:], **({"lossless": True} if name.endswith("webp") else {}))
        with Image.open(path) as im:
            assert getattr(im, "n_frames", 1) == 3, name
        assert np.abs(load_rgb(path).astype(int) - (200, 30, 30)).max() <= 3, name


def test_build_reports_undecodable_names_it_cannot_read(tmp_path, capsys):
    """A failing image whose name is not UTF-8: reported in the summary and the report, not a crash."""
    root = tmp_path / "src"
    (root / "c").mkdir(parents=True)
    (root / "c" / UNDECODABLE).write_bytes(b"not a png")
    out = tmp_path / "d.bzna"
    result = build(root, out, workers=1, progress=False, **FAST)
    assert [(i, n) for i, n, _ in result.failures] == [(0, f"c/{UNDECODABLE}")]
    assert main(["build", str(root), str(out), "--preset", "ultrafast", "--workers", "1", "-q"]) == 0
    assert "latin1_caf\\udce9.png" in capsys.readouterr().out
    assert os.fsencode(UNDECODABLE) in Path(sidecar_paths(out)[1]).read_bytes()
    with bzna_boxes.Dataset(out) as ds:
        assert ds[0].missing and ds[0].filename == f"c/{UNDECODABLE}"


def test_decode_command_on_an_unusual_image(tmp_path, capsys):
    root = tmp_path / "src"
    (root / "c").mkdir(parents=True)
    Image.fromarray(gradient(700, 1)).save(root / "c" / "thin.png")
    out = tmp_path / "d.bzna"
    assert main(["build", str(root), str(out), "--preset", "ultrafast", "--workers", "1", "-q"]) == 0
    for track, size in (("bzna_input", (700, 1)), ("bzna_thumb", (512, 1))):
        png = tmp_path / f"décodé {track}.png"
        assert main(["decode", str(out), "0", "--track", track, "--device", "cpu", "-o", str(png)]) == 0
        with Image.open(png) as im:
            assert im.size == size
    assert "700x1 RGB" in capsys.readouterr().out


def test_list_file_that_is_not_utf8(tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"caf\xe9.jpg,0\n")
    assert main(["build", str(listing), str(tmp_path / "d.bzna"), "-q"]) == 1
    assert "UTF-8" in capsys.readouterr().err


def test_heic_photographs_are_images_with_pillow_heif(tmp_path):
    """Phones write HEIC: with pillow-heif installed, the listing takes it and the build stores it."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC is read through pillow-heif")
    root = tmp_path / "src"
    (root / "phone").mkdir(parents=True)
    source = gradient(300, 200)
    pillow_heif.from_bytes(mode="RGB", size=(300, 200), data=source.tobytes()).save(root / "phone" / "IMG_0001.HEIC", quality=95)
    listing = list_sources(root)
    assert [s.filename for s in listing.sources] == ["phone/IMG_0001.HEIC"]
    out = tmp_path / "heic.bzna"
    result = build(root, out, preset="ultrafast", workers=1, progress=False)
    assert not result.failures
    with bzna_boxes.Dataset(out) as ds:
        picture = bzna_boxes.decode.CpuDecoder().decode(ds[0].image())
    assert picture.shape == (200, 300, 3)
    assert psnr(luma(picture), luma(load_rgb(root / "phone" / "IMG_0001.HEIC"))) >= 35
    assert psnr(luma(picture), luma(source)) >= 30
