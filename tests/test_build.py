"""bzna build: sources, image modes, bad images, worker pools, interruption, the command."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import build_faults
import numpy as np
import pytest
from guides import run_console_examples, run_python_examples
from writer_support import IMAGES, REPO, crop_to_clap, decode, gradient, hvcc_of, inner_tracks, sample_bytes, tables

from bzna_boxes import layout
from bzna_boxes.build import BuildError, Source, build, list_sources, sidecar_paths
from bzna_boxes.cli import main

PIL = pytest.importorskip("PIL", reason="building reads images with Pillow")
from PIL import Image  # noqa: E402

FAST = {"preset": "ultrafast"}


def save(path, image: Image.Image, **params) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)


@pytest.fixture
def modes_tree(tmp_path):
    """An ImageFolder tree of every awkward kind of image, with files the listing must skip."""
    root = tmp_path / "src"
    rgb = gradient(70, 50)
    save(root / "a" / "gray.png", Image.fromarray(rgb[:, :, 0]))
    save(root / "a" / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=90)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save(root / "a" / "palette.png", palette, transparency=0)
    save(root / "a" / "rgba.png", Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])))
    save(root / "a" / "deep16.png", Image.fromarray((rgb[:, :, 1].astype(np.uint16) * 257)))
    rotated = Image.fromarray(gradient(80, 30))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save(root / "a" / "nested" / "deeper" / "exif.jpg", rotated, exif=exif.tobytes())
    save(root / "a" / "bilevel.bmp", Image.fromarray(rgb[:, :, 0] > 100))
    save(root / "a" / "UPPER.JPG", Image.fromarray(rgb))
    save(root / "a" / ".hidden.jpg", Image.fromarray(rgb))
    save(root / "a" / ".cache" / "skipped.jpg", Image.fromarray(rgb))
    (root / "a" / "notes.txt").write_text("not an image")
    save(root / "b" / "plain.jpg", Image.fromarray(gradient(40, 60, seed=1)))
    save(root / ".git" / "x.jpg", Image.fromarray(rgb))
    return root


def test_image_folder_listing(modes_tree):
    listing = list_sources(modes_tree)
    assert listing.classes == ["a", "b"]
    names = [s.filename for s in listing.sources]
    assert names == [
        "a/UPPER.JPG",
        "a/bilevel.bmp",
        "a/cmyk.jpg",
        "a/deep16.png",
        "a/gray.png",
        "a/palette.png",
        "a/rgba.png",
        "a/nested/deeper/exif.jpg",
        "b/plain.jpg",
    ]
    assert [s.target for s in listing.sources] == [0] * 8 + [1]
    assert all(os.path.isfile(s.path) for s in listing.sources)


def test_list_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    listing_path = tmp_path / "imgs" / "list.csv"
    listing_path.write_text("# path,target\n\na.jpg,3\n  sub/b,c.png , -1 \n/abs/c.jpg,0\n", encoding="utf-8")
    listing = list_sources(listing_path)
    assert listing.classes is None
    assert listing.sources == [
        Source(str(tmp_path / "imgs" / "a.jpg"), 3, "a.jpg"),
        Source(str(tmp_path / "imgs" / "sub/b,c.png"), -1, "sub/b,c.png"),
        Source("/abs/c.jpg", 0, "/abs/c.jpg"),
    ]
    listing_path.write_text("a.jpg,3\nb.jpg\n")
    with pytest.raises(BuildError, match="line 2"):
        list_sources(listing_path)
    with pytest.raises(FileNotFoundError):
        list_sources(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BuildError, match="no class"):
        list_sources(empty)


def test_every_mode_pillow_opens_builds(modes_tree, tmp_path):
    out = tmp_path / "modes.bzna"
    result = build(modes_tree, out, workers=1, progress=False, **FAST)
    assert result.failures == [] and result.count == 9
    listing = list_sources(modes_tree)
    for data, source in zip(sample_bytes(out), listing.sources):
        with Image.open(source.path) as im:
            from PIL import ImageOps

            width, height = ImageOps.exif_transpose(im).size
        entry = inner_tracks(data)["bzna_input"]["entry"]
        picture = crop_to_clap(decode(inner_tracks(data)["bzna_input"]["payload"], hvcc_of(entry)), entry)
        assert picture.shape == (height, width, 3), source.filename
    exif = inner_tracks(sample_bytes(out)[7])["bzna_input"]["tkhd"]
    assert (exif.width, exif.height) == (30, 80)  # the EXIF rotation is applied
    classes, report = sidecar_paths(out)
    assert open(classes, encoding="utf-8").read() == "a\nb\n"
    assert open(report, encoding="utf-8").read() == "index\tfilename\treason\n"


@pytest.fixture
def tree_with_bad_images(tmp_path):
    root = tmp_path / "src"
    for i in range(3):
        save(root / "ok" / f"{i}.jpg", Image.fromarray(gradient(30 + i, 20, seed=i)))
    (root / "ok" / "1b_garbage.jpg").write_bytes(b"this is not a JPEG at all")
    good = root / "ok" / "0.jpg"
    (root / "ok" / "2b_truncated.jpg").write_bytes(good.read_bytes()[:200])
    return root


def test_bad_images_are_missing_samples_and_reported(tree_with_bad_images, tmp_path):
    av = pytest.importorskip("av", reason="PyAV plays the video track")
    out = tmp_path / "d.bzna"
    result = build(tree_with_bad_images, out, workers=1, progress=False, **FAST)
    names = [s.filename for s in list_sources(tree_with_bad_images).sources]
    assert names == ["ok/0.jpg", "ok/1.jpg", "ok/1b_garbage.jpg", "ok/2.jpg", "ok/2b_truncated.jpg"]
    assert [(i, n) for i, n, _ in result.failures] == [(2, "ok/1b_garbage.jpg"), (4, "ok/2b_truncated.jpg")]
    found = tables(out)
    assert (found["bzna_input"][1] == 0).tolist() == [False, False, True, False, True]
    assert [x.decode() for x in sample_bytes(out, layout.FILENAME_TRACK)] == names
    with open(sidecar_paths(out)[1], encoding="utf-8") as f:
        rows = list(csv.reader(f, dialect="excel-tab"))
    assert rows[0] == ["index", "filename", "reason"]
    assert [r[:2] for r in rows[1:]] == [["2", "ok/1b_garbage.jpg"], ["4", "ok/2b_truncated.jpg"]]
    assert all(r[2] for r in rows[1:])
    with av.open(str(out)) as container:
        assert len(list(container.decode(container.streams.video[0]))) == 5


def test_fail_fast_leaves_nothing(tree_with_bad_images, tmp_path, capsys):
    out = tmp_path / "out" / "d.bzna"
    out.parent.mkdir()
    code = main(["build", str(tree_with_bad_images), str(out), "--fail-fast", "--preset", "ultrafast", "--workers", "1", "-q"])
    assert code == 1
    assert "1b_garbage.jpg" in capsys.readouterr().err
    assert os.listdir(out.parent) == []


def test_workers_do_not_change_the_bytes(tmp_path, capsys):
    one, two = tmp_path / "one.bzna", tmp_path / "two.bzna"
    assert main(["build", str(IMAGES), str(one), "--preset", "ultrafast", "--workers", "1", "-q"]) == 0
    assert main(["build", str(IMAGES), str(two), "--preset", "ultrafast", "--workers", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "8 samples (0 missing)" in out
    assert one.read_bytes() == two.read_bytes()
    assert open(sidecar_paths(one)[0]).read() == "cat\ncoffee\nspace\n"
    # the same bytes as a DatasetWriter given the same images (x265's thread count changes nothing)
    from bzna_boxes.encode import load_rgb
    from bzna_boxes.writer import DatasetWriter

    listing = list_sources(IMAGES)
    with DatasetWriter(tmp_path / "writer.bzna", preset="ultrafast", classes=listing.classes) as writer:
        for source in listing.sources:
            writer.add(load_rgb(source.path), source.target, source.filename)
    assert (tmp_path / "writer.bzna").read_bytes() == one.read_bytes()


def test_max_short_side_zero_keeps_the_size(tmp_path):
    root = tmp_path / "src"
    save(root / "x" / "big.png", Image.fromarray(gradient(700, 600)))
    out = tmp_path / "d.bzna"
    assert main(["build", str(root), str(out), "--max-short-side", "0", "--preset", "ultrafast", "-q", "--workers", "1"]) == 0
    tkhd = inner_tracks(sample_bytes(out)[0])["bzna_input"]["tkhd"]
    assert (tkhd.width, tkhd.height) == (700, 600)
    assert main(["build", str(root), str(out), "--max-short-side", "-3"]) == 2


@contextmanager
def faulty_build(tmp_path, fault: str, images: int = 200, trigger_at: int = 100):
    """Run ``bzna build --workers 2`` of ``images`` small images in a new session, its per-image
    work replaced by ``fault`` of ``tests/build_faults.py``, which strikes at image ``trigger_at``.

    Yields (process, output folder, folder of the workers' pid files); the process group is
    killed on the way out, whatever happened.
    """
    Image.fromarray(gradient(64, 48)).save(tmp_path / "img.png")
    shutil.copy(tmp_path / "img.png", tmp_path / build_faults.TRIGGER)
    lines = [f"img.png,{i % 5}\n" for i in range(images)]
    lines[trigger_at] = f"{build_faults.TRIGGER},0\n"
    listing = tmp_path / "list.txt"
    listing.write_text("".join(lines))
    out_dir, pids = tmp_path / "out", tmp_path / "pids"
    out_dir.mkdir()
    pids.mkdir()
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "BZNA_FAULT_PIDS": str(pids)}
    options = ["--preset", "ultrafast", "--workers", "2", "-q"]
    command = [sys.executable, "-c", "import build_faults; build_faults.main()", fault, str(listing), str(out_dir / "d.bzna"), *options]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield process, out_dir, pids
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()


def finish(process) -> tuple[int, list[str]]:
    """Wait for the build and for every process that inherited its stdout and stderr (its
    workers, multiprocessing's resource tracker): the pipes close when the last of them exits.
    (exit status, stderr lines)."""
    _, err = process.communicate(timeout=120)
    return process.returncode, err.splitlines()


def assert_exited(pids) -> None:
    """Each worker that recorded its pid has exited and been reaped (the build joins its workers)."""
    recorded = [int(name) for name in os.listdir(pids)]
    assert len(recorded) == 2  # the trigger image comes after each worker's first chunk
    deadline = time.monotonic() + 30
    for pid in recorded:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"worker {pid} outlived the build"
            time.sleep(0.05)


def test_a_killed_worker_fails_the_build_without_hanging(tmp_path):
    # Many images: a pool that queues work for all of them up front (ProcessPoolExecutor.map)
    # hangs when a worker dies among thousands of queued chunks (CPython gh-107219, Python < 3.12).
    with faulty_build(tmp_path, "kill_own_worker", images=100_000) as (process, out_dir, pids):
        code, err = finish(process)
        assert code == 1, err
        assert len(err) == 1 and "encoding process died" in err[0] and "SIGKILL" in err[0], err
        assert os.listdir(out_dir) == []
        assert_exited(pids)


def test_ctrl_c_leaves_no_output(tmp_path):
    with faulty_build(tmp_path, "interrupt_build") as (process, out_dir, pids):
        code, err = finish(process)
        assert code == 130, err
        assert err == ["bzna build: interrupted"]
        assert os.listdir(out_dir) == []
        assert_exited(pids)


def test_workers_exit_when_the_build_is_killed(tmp_path):
    with faulty_build(tmp_path, "kill_build") as (process, out_dir, pids):
        # The pipes close once the workers and the resource tracker have exited too. (Their pids
        # cannot tell: orphans are reaped by init, and an init that does not reap keeps zombies.)
        code, err = finish(process)
        assert code == -signal.SIGKILL, err
        assert err == []
        assert len(os.listdir(pids)) == 2


def test_exception_mid_build_leaves_no_output(tmp_path):
    root = tmp_path / "src"
    for i in range(4):
        save(root / "c" / f"{i}.png", Image.fromarray(gradient(20, 20, seed=i)))
    (root / "c" / "2.png").write_bytes(b"broken")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(BuildError, match="2.png"):
        build(root, out_dir / "d.bzna", workers=2, fail_fast=True, progress=False, **FAST)
    assert os.listdir(out_dir) == []
    shutil.rmtree(root)


# --- docs/building.md runs as written ---------------------------------------------------------

GUIDE = REPO / "docs" / "building.md"


def test_the_building_guide_runs(tmp_path, monkeypatch):
    pytest.importorskip("av", reason="the guide encodes with libx265 through PyAV")
    (tmp_path / "fixtures").symlink_to(REPO / "fixtures")
    monkeypatch.chdir(tmp_path)
    assert run_python_examples(GUIDE) >= 15
    ran = run_console_examples(GUIDE)
    assert ran == 3
    assert (tmp_path / "photos.classes.txt").read_text() == "cat\ncoffee\nspace\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_bad_encoder_options_fail_before_any_image(tmp_path, capsys):
    out = tmp_path / "d.bzna"
    assert main(["build", str(IMAGES), str(out), "--preset", "no-such-preset", "-q"]) == 1
    assert "is not an x265 preset" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
