"""What every writing command guarantees about its output: it never replaces an input, the
dataset and its side files are replaced together, one writer per output (a lock), stale
temporary files are cleaned, and a failure is one line on stderr with nothing left behind."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from bzna_samples import build_dataset
from writer_support import FAST, REPO, gradient, hvcc_of

from bzna_boxes import Box, BoxError, layout
from bzna_boxes.atomic import OutputLock, lock_path
from bzna_boxes.boxes.fragment import trun_dtype
from bzna_boxes.build import BuildError, MAX_LINE, list_sources, sidecar_paths
from bzna_boxes.encode import encode_image
from bzna_boxes.index import BznaFile
from bzna_boxes.writer import DatasetWriter, concat

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}


# --- helpers ----------------------------------------------------------------------------------


def bzna(*args, preexec_fn=None, env=None, timeout: float = 120, command: list[str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m bzna_boxes ARGS`` (or ``command``) in its own process group; (status, stdout, stderr)."""
    command = command or [sys.executable, "-m", "bzna_boxes", *map(str, args)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, **(env or {})},
        start_new_session=True, preexec_fn=preexec_fn,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, out, err


def assert_one_line(status: int, err: str, *words: str) -> str:
    """A failure reported as one line on stderr (no traceback) that names ``words``."""
    assert status != 0, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def encoded():
    return [encode_image(gradient(40 + 8 * i, 30 + 4 * i, seed=i), **FAST) for i in range(6)]


def write(path, encoded, missing=()) -> None:
    build_dataset(path, [(None if i in missing else s, i % 3, f"c{i % 3}/img{i}.jpg") for i, s in enumerate(encoded)])


@pytest.fixture
def dataset(tmp_path, encoded) -> Path:
    path = tmp_path / "d.bzna"
    write(path, encoded)
    return path


def image_tree(root: Path, classes=("a", "b"), per_class: int = 2) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(gradient(24, 20, seed=3 * c + i)).save(root / name / f"{i}.png")
    return root


# --- no command replaces one of its inputs ----------------------------------------------------


def test_extract_and_decode_refuse_their_input_as_output(dataset):
    before = dataset.read_bytes()
    os.link(dataset, dataset.parent / "same.bzna")
    for verb, output in (("extract", dataset), ("decode", dataset), ("extract", dataset.parent / "same.bzna")):
        status, _, err = bzna(verb, dataset, 0, "-o", output)
        assert_one_line(status, err, f"bzna {verb}", "is also an input")
        assert dataset.read_bytes() == before
    assert listing(dataset.parent) == ["d.bzna", "same.bzna"]


def test_concat_refuses_its_input_as_output(dataset):
    before = dataset.read_bytes()
    status, _, err = bzna("concat", dataset, dataset, "-o", dataset)
    assert_one_line(status, err, "bzna concat", "is also an input")
    assert dataset.read_bytes() == before and listing(dataset.parent) == ["d.bzna"]


def test_a_file_url_is_the_file_it_names_when_inputs_and_output_are_compared(dataset):
    before = dataset.read_bytes()
    url = f"file://{dataset}"
    for inputs, output in (((url, dataset), dataset), ((dataset,), url)):
        status, _, err = bzna("concat", *inputs, "-o", output)
        assert_one_line(status, err, "bzna concat", "is also an input")
        assert dataset.read_bytes() == before and listing(dataset.parent) == ["d.bzna"]
    status, _, err = bzna("extract", url, 0, "-o", dataset)
    assert_one_line(status, err, "bzna extract", "is also an input")
    assert dataset.read_bytes() == before


def test_build_refuses_to_write_over_its_list_or_its_images(tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(gradient(20, 20)).save(image)
    image_bytes = image.read_bytes()
    names = tmp_path / "list.csv"
    names.write_text("x.png,1\n")
    for output, words in ((names, "is also an input"), (image, "listed images")):
        status, _, err = bzna("build", names, output, "--preset", "ultrafast", "--workers", "1", "-q")
        assert_one_line(status, err, "bzna build", words)
    # x.classes.txt would be the class list of x.bzna: also refused when x.classes.txt is the list
    classes_named = tmp_path / "x.classes.txt"
    shutil.copy(names, classes_named)
    status, _, err = bzna("build", classes_named, tmp_path / "x.bzna", "--preset", "ultrafast", "--workers", "1", "-q")
    assert_one_line(status, err, "x.classes.txt")
    assert names.read_text() == "x.png,1\n" and image.read_bytes() == image_bytes
    assert listing(tmp_path) == ["list.csv", "x.classes.txt", "x.png"]


def test_build_refuses_an_output_inside_its_image_folder(tmp_path):
    root = image_tree(tmp_path / "src")
    inside = root / "a" / "0.png"
    before = inside.read_bytes()
    for output in (inside, root / "out.bzna", root / "b" / "new.bzna"):
        status, _, err = bzna("build", root, output, "--preset", "ultrafast", "--workers", "1", "-q")
        assert_one_line(status, err, "bzna build", "inside the input folder")
    assert inside.read_bytes() == before
    assert listing(root / "a") == ["0.png", "1.png"] and listing(root) == ["a", "b"]


def test_distributed_build_refuses_its_list_as_output(tmp_path):
    pytest.importorskip("distributed")
    Image.fromarray(gradient(20, 20)).save(tmp_path / "x.png")
    names = tmp_path / "list.csv"
    names.write_text("x.png,1\n")
    status, _, err = bzna("build", names, names, "--cluster", "local", "--workers", "1", "--preset", "ultrafast", "-q")
    assert_one_line(status, err, "is also an input")
    assert names.read_text() == "x.png,1\n" and listing(tmp_path) == ["list.csv", "x.png"]


# --- the dataset and its side files are replaced together -------------------------------------


def test_a_failing_side_file_leaves_the_old_dataset_and_class_list(tmp_path):
    first = image_tree(tmp_path / "first", classes=("cat", "dog"))
    second = image_tree(tmp_path / "second", classes=("apple", "pear", "plum"), per_class=1)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "d.bzna"
    options = ("--preset", "ultrafast", "--workers", "1", "-q")
    assert bzna("build", first, out, *options)[0] == 0
    classes, report = (Path(p) for p in sidecar_paths(out))
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    report.unlink()
    report.mkdir()  # the report cannot be replaced: nothing may be
    status, _, err = bzna("build", second, out, *options)
    assert_one_line(status, err, "bzna build", "d.report.tsv")
    assert out.read_bytes() == before["d.bzna"]
    assert classes.read_bytes() == before["d.classes.txt"] == b"cat\ndog\n"
    assert listing(out_dir) == ["d.bzna", "d.classes.txt", "d.report.tsv"]


def test_a_list_build_removes_an_older_class_list(tmp_path):
    root = image_tree(tmp_path / "src")
    out = tmp_path / "d.bzna"
    options = ("--preset", "ultrafast", "--workers", "1", "-q")
    assert bzna("build", root, out, *options)[0] == 0
    names = tmp_path / "list.csv"
    names.write_text(f"{root / 'a' / '0.png'},7\n")
    assert bzna("build", names, out, *options)[0] == 0
    assert listing(tmp_path) == ["d.bzna", "d.report.tsv", "list.csv", "src"]


def test_writer_side_files_appear_with_the_dataset_or_not_at_all(tmp_path, encoded):
    out = tmp_path / "d.bzna"
    (tmp_path / "blocked").mkdir()
    writer = DatasetWriter(out)
    writer.add(encoded[0], 0, "a")
    with pytest.raises(IsADirectoryError, match="blocked"):
        writer.close({str(tmp_path / "notes.txt"): "fine\n", str(tmp_path / "blocked"): "x"})
    assert listing(tmp_path) == ["blocked"]
    with DatasetWriter(out) as writer:
        writer.add(encoded[0], 0, "a")
        writer.close({str(tmp_path / "notes.txt"): "fine\n"})
    assert listing(tmp_path) == ["blocked", "d.bzna", "notes.txt"]
    with pytest.raises(ValueError, match="not beside"):
        with DatasetWriter(out) as writer:
            writer.close({str(tmp_path / "blocked" / "x.txt"): "x"})
    assert listing(tmp_path) == ["blocked", "d.bzna", "notes.txt"]


# --- concat reads fragments through the index -------------------------------------------------


def fragmented_copy(source: Path, target: Path, in_moov: int) -> None:
    """``source`` with its samples from ``in_moov`` on described by a movie fragment instead of moov."""
    data = source.read_bytes()
    with BznaFile(source) as file:
        tracks = {t.name: t for t in file.tracks}
        moov = file.moov
        entries = [hvcc_of(e) for e in tracks[layout.VIDEO_TRACK].sample_entries]
        tables = {name: layout.SampleTable(t.offsets, t.sizes) for name, t in tracks.items()}
        ids = {name: t.track_id for name, t in tracks.items()}
    head = {name: layout.SampleTable(t.offsets[:in_moov], t.sizes[:in_moov]) for name, t in tables.items()}
    several = len(entries) > 1  # then the samples kept in moov must all use the first entry
    new_moov = layout.outer_moov(
        head[layout.INPUT_TRACK], head[layout.TARGET_TRACK], head[layout.FILENAME_TRACK], head[layout.VIDEO_TRACK],
        entries if several else entries[0], np.ones(in_moov, np.uint32) if several else None,
    )  # fmt: skip
    new_moov["children"].append({"type": "mvex", "children": [{"type": "trex", "track_id": i} for i in ids.values()]})
    flags = 0x000001 | 0x000200  # data_offset, sample_size
    trafs = []
    for name, table in tables.items():
        runs = [
            {"type": "trun", "flags": flags, "data_offset": int(o), "samples": np.array([(int(s),)], trun_dtype(flags))}
            for o, s in zip(table.offsets[in_moov:], table.sizes[in_moov:])
        ]
        tfhd = {"type": "tfhd", "flags": 0x000001, "track_id": ids[name], "base_data_offset": 0}
        trafs.append({"type": "traf", "children": [tfhd, *runs]})
    moof = {"type": "moof", "children": [{"type": "mfhd", "sequence_number": 1}, *trafs]}
    target.write_bytes(data[: moov.offset] + Box.build(new_moov) + Box.build(moof))


def test_concat_keeps_the_samples_of_movie_fragments(tmp_path, encoded):
    whole = tmp_path / "whole.bzna"
    write(whole, encoded, missing={2})
    fragmented = tmp_path / "fragmented.bzna"
    fragmented_copy(whole, fragmented, in_moov=2)
    with BznaFile(fragmented) as file:
        assert "moof" in [b.type for b in file.boxes] and len(file.track(layout.INPUT_TRACK)) == len(encoded)
    merged = tmp_path / "merged.bzna"
    assert concat([fragmented], merged) == len(encoded)
    assert merged.read_bytes() == whole.read_bytes()
    status, out, err = bzna("concat", fragmented, fragmented, "-o", tmp_path / "twice.bzna")
    assert status == 0, err
    assert f"{2 * len(encoded)} samples" in out


def test_concat_refuses_fragments_it_cannot_map_to_sample_descriptions(tmp_path, encoded):
    other = encode_image(gradient(45, 45, seed=99), preset="superfast")
    whole = tmp_path / "whole.bzna"
    write(whole, [encoded[0], other, encoded[1]])
    fragmented = tmp_path / "fragmented.bzna"
    fragmented_copy(whole, fragmented, in_moov=1)
    with pytest.raises(BoxError, match="several sample descriptions"):
        concat([fragmented], tmp_path / "merged.bzna")
    assert listing(tmp_path) == ["fragmented.bzna", "whole.bzna"]


# --- one writer per output; stale temporary files ---------------------------------------------

_HOLD = """
import sys
from bzna_boxes.writer import DatasetWriter
writer = DatasetWriter(sys.argv[1])
writer.add_missing(0, "x")
writer._file.flush()
print(writer._temp_path, flush=True)
sys.stdin.read()
"""


@contextmanager
def writer_process(path: Path):
    """A real process holding a DatasetWriter on ``path``: (process, its temporary file); killed at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )
    try:
        temp = process.stdout.readline().strip()
        assert temp, "the writer did not start"
        yield process, temp
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_two_writers_of_one_output_in_one_process(tmp_path, encoded):
    out = tmp_path / "d.bzna"
    first = DatasetWriter(out)
    with pytest.raises(BlockingIOError, match=r"\.d\.bzna\.lock"):
        DatasetWriter(out)
    with pytest.raises(BlockingIOError):
        concat([tmp_path / "absent.bzna"], out)
    first.add(encoded[0], 1, "a")
    first.close()
    assert listing(tmp_path) == ["d.bzna"]  # no lock file left
    with DatasetWriter(out) as again:
        again.add_missing(0, "b")
    assert listing(tmp_path) == ["d.bzna"]


@pytest.fixture
def out(tmp_path) -> Path:
    """An output path in a folder of its own, beside an ImageFolder tree ``src``."""
    image_tree(tmp_path / "src")
    (tmp_path / "out").mkdir()
    return tmp_path / "out" / "d.bzna"


def test_a_build_fails_at_once_while_another_process_writes_the_output(tmp_path, out):
    with writer_process(out) as (process, temp):
        status, _, err = bzna("build", tmp_path / "src", out, "--preset", "ultrafast", "--workers", "1", "-q")
        assert_one_line(status, err, "bzna build", ".d.bzna.lock", "another writer")
        assert os.path.exists(temp)  # a running writer's temporary file is never removed
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    assert listing(out.parent) == []  # the writer, dropped unclosed, removed its file and its lock


def test_the_next_writer_removes_the_temporary_files_of_dead_ones(tmp_path, encoded):
    out = tmp_path / "d.bzna"
    neighbour = tmp_path / "d.bzna.12345678"  # another output whose name starts the same
    with writer_process(out) as (process, temp), DatasetWriter(neighbour) as running:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert os.path.exists(temp) and os.path.exists(lock_path(out))  # what a killed build leaves
        lock = OutputLock(out)
        assert lock.removed == [temp]
        lock.release()
        assert os.path.exists(running._temp_path)
        running.add(encoded[0], 0, "n")
    assert listing(tmp_path) == ["d.bzna.12345678"]


def test_a_build_cleans_what_a_killed_build_left(tmp_path, out):
    with writer_process(out) as (process, temp):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert listing(out.parent) == sorted([".d.bzna.lock", os.path.basename(temp)])
    status, _, err = bzna("build", tmp_path / "src", out, "--preset", "ultrafast", "--workers", "1", "-q")
    assert status == 0, err
    assert listing(out.parent) == ["d.bzna", "d.classes.txt", "d.report.tsv"]


# --- one clear line, nothing partial ----------------------------------------------------------


def noise_list(tmp_path: Path, copies: int) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    names = tmp_path / "list.csv"
    names.write_text("".join(f"noise.png,{i}\n" for i in range(copies)))
    return names


def test_a_file_size_limit_mid_build_is_one_line(tmp_path):
    names = noise_list(tmp_path, 40)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def limit() -> None:  # EFBIG takes the path ENOSPC takes: a write that fails mid-build
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    status, _, err = bzna("build", names, out_dir / "d.bzna", "--max-short-side", "0", "--preset", "ultrafast", "--workers", "1", "-q", preexec_fn=limit)
    assert_one_line(status, err, "bzna build", "d.bzna", "File too large")
    assert listing(out_dir) == []


def _can_mount_in_a_namespace() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_in_a_namespace(), reason="mounts a small tmpfs in a private mount namespace (root)")
@pytest.mark.parametrize("mount_options, words", [("size=256k", "No space left on device"), ("ro,size=256k", "Read-only file system")])
def test_no_space_or_a_read_only_file_system_is_one_line(tmp_path, mount_options, words):
    names = noise_list(tmp_path, 40)
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = (
        'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; shift 2; "$@"; status=$?; ls -A "$MNT" >&1; exit $status'
    )
    build = [sys.executable, "-m", "bzna_boxes", "build", str(names), str(mount / "d.bzna"), "--max-short-side", "0", "--preset", "ultrafast", "--workers", "1", "-q"]
    status, out, err = bzna(command=["unshare", "-m", "sh", "-c", script, "sh", mount_options, str(mount), *build], env={"MNT": str(mount)})
    assert status != 99, "the tmpfs could not be mounted"
    assert_one_line(status, err, "bzna build", "d.bzna", words)
    assert out.split() == []  # nothing left in the file system that was full (or read-only)


def test_an_output_whose_folder_is_a_file_is_one_line(tmp_path, dataset):
    (tmp_path / "file").write_text("x")
    for args in (("build", noise_list(tmp_path, 1), tmp_path / "file" / "d.bzna"), ("extract", dataset, 0, "-o", tmp_path / "file" / "x"), ("concat", dataset, "-o", tmp_path / "file" / "c.bzna")):
        status, _, err = bzna(*args)
        assert_one_line(status, err, "file", "Not a directory")
    assert listing(tmp_path) == ["d.bzna", "file", "list.csv", "noise.png"]


def test_a_bad_decode_device_is_one_line(tmp_path, dataset):
    status, _, err = bzna("decode", dataset, 0, "-o", tmp_path / "x.png", "--device", "bogus")
    assert_one_line(status, err, "bzna decode", "bogus")
    assert listing(tmp_path) == ["d.bzna"]


@pytest.mark.parametrize("size", ["-1", "0"])
def test_a_bad_shard_size_is_one_line(tmp_path, size):
    names = noise_list(tmp_path, 1)
    for extra in (("--cluster", "local"), ()):
        status, _, err = bzna("build", names, tmp_path / "d.bzna", "--shard-size", size, *extra)
        assert_one_line(status, err, "--shard-size")
    assert listing(tmp_path) == ["list.csv", "noise.png"]


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    names = noise_list(tmp_path, 1)
    status, _, err = bzna(
        "build", names, tmp_path / "d.bzna", "--scheduler", "tcp://127.0.0.1:1", env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    )
    assert_one_line(status, err, "bzna build", "tcp://127.0.0.1:1")
    assert listing(tmp_path) == ["list.csv", "noise.png"]


@pytest.mark.parametrize("target", [str(2**70), "-2", "1.5", "seven"])
def test_every_target_is_checked_before_any_image_is_encoded(tmp_path, target):
    names = noise_list(tmp_path, 3)
    names.write_text(names.read_text() + f"\n# a comment\nnoise.png,{target}\n")
    with pytest.raises(BuildError, match="line 6"):
        list_sources(names)
    status, _, err = bzna("build", names, tmp_path / "d.bzna", "--preset", "ultrafast", "--workers", "1", "-q")
    assert_one_line(status, err, "bzna build", "line 6", target)
    assert listing(tmp_path) == ["list.csv", "noise.png"]


def test_inspect_of_an_empty_file_is_one_line(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    status, out, err = bzna("inspect", empty)
    assert_one_line(status, err, "bzna inspect", "empty.mp4", "empty")
    assert out == ""


def test_a_source_without_images_is_refused(tmp_path):
    names = tmp_path / "list.csv"
    names.write_text("# nothing yet\n\n")
    (tmp_path / "tree" / "cat").mkdir(parents=True)
    (tmp_path / "tree" / "cat" / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for source, words in ((names, "names no image"), (tmp_path / "tree", "a class folder without images")):
        status, _, err = bzna("build", source, out_dir / "d.bzna", "--preset", "ultrafast", "--workers", "1", "-q")
        assert_one_line(status, err, "bzna build", str(source), words)
    assert listing(out_dir) == []


def test_a_huge_line_in_a_list_file_is_an_error_not_a_memory_bomb(tmp_path):
    names = tmp_path / "zeros.csv"
    with open(names, "wb") as f:
        f.truncate(10 << 30)  # 10 GB of NUL bytes, sparse: nothing is stored

    def limit() -> None:  # a reader that takes the line whole dies of MemoryError here, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    status, _, err = bzna("build", names, tmp_path / "d.bzna", preexec_fn=limit)
    assert_one_line(status, err, "bzna build", "zeros.csv line 1", f"longer than {MAX_LINE} bytes")
    assert listing(tmp_path) == ["zeros.csv"]
    names.write_bytes(b"x.png,1\n" + b"y" * (MAX_LINE + 5) + b",2\n")
    with pytest.raises(BuildError, match="line 2: longer"):
        list_sources(names)
