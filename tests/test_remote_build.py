"""``bzna build`` and ``concat`` writing to ``s3://`` (moto's S3 server on localhost): the object
and its side files appear whole at the end, and an interrupted or failed build leaves none."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from PIL import Image  # noqa: E402

from bzna_boxes import Dataset  # noqa: E402
from bzna_boxes.build import build  # noqa: E402
from bzna_boxes.writer import concat  # noqa: E402

import build_faults  # noqa: E402
from remote_servers import run_in_session, running_s3  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "fixtures" / "images"
BUCKET = "out"


@pytest.fixture(scope="module")
def s3():
    with running_s3(BUCKET) as server:
        yield server


@pytest.fixture
def env(s3, tmp_path, monkeypatch):
    """The S3 server as the usual environment gives it (for s3fs in this process and in the
    command's), and a staging folder the test can look into."""
    staging = tmp_path / "staging"
    staging.mkdir()
    values = {**{k: v for k, v in s3.env().items() if k.startswith("AWS_")}, "BZNA_STAGING_DIR": str(staging), "BZNA_CACHE_DIR": str(tmp_path / "cache")}
    values["AWS_MAX_ATTEMPTS"] = "1"  # botocore's own retries off: the library's retries are what the tests see
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    s3.proxy.reset()
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a client from another environment is not reused, nor this one later
    yield staging
    s3fs.S3FileSystem.clear_instance_cache()


def contents(dataset: Dataset) -> list:
    return [(s.target, s.filename, bytes(s.data)) for s in dataset]


def test_build_to_s3_uploads_the_dataset_and_its_side_files_at_the_end(s3, env, tmp_path):
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/built/photos.bzna"
    seen: list[bool] = []
    result = build_with_probe(url, lambda: seen.append(fs.exists(f"{BUCKET}/built/photos.bzna")))
    assert seen and not any(seen)  # absent while the images were being written
    assert result.path == url and result.classes_path == f"s3://{BUCKET}/built/photos.classes.txt"
    local = build(IMAGES, tmp_path / "photos.bzna", workers=1, preset="ultrafast", max_short_side=64)
    assert contents(Dataset(url)) == contents(Dataset(local.path))
    assert fs.cat(f"{BUCKET}/built/photos.classes.txt") == Path(local.classes_path).read_bytes()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/built")) == sorted(p.name for p in tmp_path.glob("photos.*"))
    assert fs.cat(f"{BUCKET}/built/photos.report.tsv") == Path(local.report_path).read_bytes()
    assert not os.listdir(env)  # the staging folder is gone


def build_with_probe(url, probe):
    """``build`` of the fixture photographs to ``url``, calling ``probe()`` after each image."""
    from bzna_boxes.build import build_sources, list_sources

    listing = list_sources(IMAGES)
    return build_sources(listing.sources, url, workers=1, on_image=lambda _: probe(), with_side_files=True, classes=listing.classes, preset="ultrafast", max_short_side=64)


def test_an_interrupted_build_leaves_no_object(s3, env):
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/interrupted/photos.bzna"

    def interrupt(_):
        raise KeyboardInterrupt

    from bzna_boxes.build import build_sources, list_sources

    listing = list_sources(IMAGES)
    with pytest.raises(KeyboardInterrupt):
        build_sources(listing.sources, url, workers=1, on_image=interrupt, with_side_files=True, classes=listing.classes, preset="ultrafast")
    assert not fs.exists(f"{BUCKET}/interrupted")
    assert not os.listdir(env)
    assert s3.proxy.count("PUT") == s3.proxy.count("POST") == 0  # nothing was sent


def test_a_killed_build_process_leaves_no_object(s3, env, tmp_path):
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.full((48, 64, 3), 30, np.uint8)).save(tmp_path / build_faults.TRIGGER)
    lines = [f"img.png,{i % 3}\n" for i in range(20)]
    lines[10] = f"{build_faults.TRIGGER},0\n"
    (tmp_path / "list.txt").write_text("".join(lines))
    url = f"s3://{BUCKET}/killed/d.bzna"
    path = os.pathsep.join([str(REPO), str(REPO / "tests")])
    command = [sys.executable, "-c", "import build_faults; build_faults.main()", "kill_build", str(tmp_path / "list.txt"), url, "--preset", "ultrafast", "--workers", "2", "-q"]
    process = run_in_session(command, {**os.environ, "PYTHONPATH": path})
    assert process.returncode == -signal.SIGKILL
    assert not s3.filesystem().exists(f"{BUCKET}/killed")
    assert s3.proxy.count("PUT") == s3.proxy.count("POST") == 0


def test_a_failed_upload_leaves_neither_the_object_nor_its_side_files(s3, env):
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/failing/photos.bzna"
    # the side file goes first and succeeds; every request about the dataset itself fails
    s3.proxy.fail = lambda number, request: 500 if request.method in ("PUT", "POST") and "photos.bzna" in request.path else None
    with pytest.raises(OSError):
        build_with_probe(url, lambda: None)
    assert any("photos.classes.txt" in r.path for r in s3.proxy.requests if r.method == "PUT")
    assert not fs.exists(f"{BUCKET}/failing/photos.bzna") and not fs.exists(f"{BUCKET}/failing/photos.classes.txt")
    assert not os.listdir(env)


def test_concat_writes_to_s3(s3, env, tmp_path):
    from bzna_boxes.build import build_sources, list_sources

    listing = list_sources(IMAGES)
    half = len(listing.sources) // 2
    parts = [tmp_path / "a.bzna", tmp_path / "b.bzna"]
    for part, sources in zip(parts, (listing.sources[:half], listing.sources[half:])):
        build_sources(sources, part, workers=1, preset="ultrafast", max_short_side=48)
    s3.filesystem().put(str(parts[1]), f"{BUCKET}/parts/b.bzna")
    url = f"s3://{BUCKET}/merged/all.bzna"
    assert concat([parts[0], f"s3://{BUCKET}/parts/b.bzna"], url) == len(listing.sources)
    local = tmp_path / "all.bzna"
    concat(parts, local)
    assert s3.filesystem().cat(f"{BUCKET}/merged/all.bzna") == local.read_bytes()


def test_a_distributed_build_merges_to_s3(s3, env, tmp_path):
    distributed = pytest.importorskip("distributed")
    from bzna_boxes.distributed import build as build_distributed

    url = f"s3://{BUCKET}/distributed/photos.bzna"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        result = build_distributed(IMAGES, url, client, shard_size=5, work_dir=tmp_path / "shards", progress=False, preset="ultrafast", max_short_side=64)
    assert result.path == url and result.classes_path == f"s3://{BUCKET}/distributed/photos.classes.txt"
    local = build(IMAGES, tmp_path / "photos.bzna", workers=1, preset="ultrafast", max_short_side=64)
    assert s3.filesystem().cat(f"{BUCKET}/distributed/photos.bzna") == Path(local.path).read_bytes()
    assert not os.listdir(env)


def test_bzna_concat_to_s3_reports_the_object_it_wrote(s3, env, tmp_path, capsys):
    import json

    from bzna_boxes.build import build_sources, list_sources
    from bzna_boxes.cli import main

    part = tmp_path / "part.bzna"
    build_sources(list_sources(IMAGES).sources[:2], part, workers=1, preset="ultrafast", max_short_side=48)
    url = f"s3://{BUCKET}/cli/twice.bzna"
    assert main(["concat", str(part), str(part), "-o", url, "--json"]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    assert record["samples"] == 4 and record["bytes"] == s3.filesystem().size(f"{BUCKET}/cli/twice.bzna")


@pytest.mark.parametrize("url", [f"s3://{BUCKET}", f"s3://{BUCKET}/", f"s3://{BUCKET}/folder/"])
def test_an_output_url_that_names_no_object_is_refused_before_building(s3, env, url):
    encoded: list[int] = []
    with pytest.raises(ValueError, match=f"{url}: the output URL names no file"):
        build_with_probe(url, lambda: encoded.append(1))
    assert not encoded and s3.proxy.count("PUT") == s3.proxy.count("POST") == 0
    assert not s3.filesystem().exists(f"{BUCKET}/folder")


# --- streamed multipart uploads: datasets larger than one part ---------------------------------

PART = 5 << 20  # the smallest part S3 (and moto) takes


@pytest.fixture(scope="module")
def large_sample():
    """A real H.265 sample of ~400 KB (lossless noise): a few dozen make a dataset of several parts."""
    from bzna_boxes.encode import encode_image
    from bzna_boxes.writer import InnerSample

    noise = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    return InnerSample.from_encoded(encode_image(noise, preset="ultrafast", crf=0), 1, "noise.png")


def pending_uploads(fs) -> list:
    return fs.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])


def wait_for(condition, seconds: float = 60) -> None:
    """Wait until ``condition()`` holds (another thread's request reaching the server)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def write_samples(path, sample, count, on_sample=lambda index: None, side_files=None):
    from bzna_boxes.writer import DatasetWriter

    with DatasetWriter(path, classes=["a", "b"]) as writer:
        for index in range(count):
            writer.add_sample(sample._replace(filename=f"{index}.png"))
            on_sample(index)
        writer.close(side_files)
    return writer.file_size


def test_a_large_dataset_is_streamed_in_parts_and_appears_only_at_the_end(s3, env, tmp_path, large_sample, monkeypatch):
    from bzna_boxes import remote

    monkeypatch.setattr(remote, "PART_SIZE", PART)
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/streamed/big.bzna"
    count = 40  # ~15 MiB: three parts
    seen = []

    def probe(index):
        if index == count - 1:  # all samples given: part 2 leaves while the writer runs, the object is not there
            wait_for(lambda: s3.proxy.count("PUT"))  # the uploading thread's request
            staged = [p.name for p in env.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
            seen.append((fs.exists(f"{BUCKET}/streamed/big.bzna"), len(pending_uploads(fs)), s3.proxy.count("PUT"), staged))

    size = remote.write_then_upload(url, lambda local: write_samples(local, large_sample, count, probe, {remote.staged_name(local, "big.classes.txt"): "a\nb\n"}))
    assert seen == [(False, 1, 1, [])]  # no object, one upload under way with its second part sent, nothing on disk
    local = tmp_path / "big.bzna"
    assert write_samples(local, large_sample, count) == size == local.stat().st_size > 2 * PART
    assert fs.cat(f"{BUCKET}/streamed/big.bzna") == local.read_bytes()
    assert fs.cat(f"{BUCKET}/streamed/big.classes.txt") == b"a\nb\n"
    assert [r.method for r in s3.proxy.requests if r.method in ("PUT", "POST")] == ["POST", "PUT", "PUT", "PUT", "PUT", "POST"]
    assert not pending_uploads(fs) and not os.listdir(env)


def test_a_streamed_upload_interrupted_midway_leaves_no_object_and_no_parts(s3, env, large_sample, monkeypatch):
    from bzna_boxes import remote

    monkeypatch.setattr(remote, "PART_SIZE", PART)
    fs = s3.filesystem()
    url = f"s3://{BUCKET}/stopped/big.bzna"

    def stop(index):
        if index == 30:  # part 2 has been queued: once it is uploaded, stop
            wait_for(lambda: s3.proxy.count("PUT"))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        remote.write_then_upload(url, lambda local: write_samples(local, large_sample, 40, stop))
    assert s3.proxy.count("PUT") == 1  # part 2 had left; nothing more after the interruption
    assert not fs.exists(f"{BUCKET}/stopped") and not pending_uploads(fs) and not os.listdir(env)
    assert [r.method for r in s3.proxy.requests][-1] == "DELETE"  # the abort


def test_a_failed_part_aborts_the_upload(s3, env, large_sample, monkeypatch):
    from bzna_boxes import remote

    monkeypatch.setattr(remote, "PART_SIZE", PART)
    monkeypatch.setattr(remote, "BACKOFF", 0.0)
    fs = s3.filesystem()
    s3.proxy.fail = lambda number, request: 500 if request.method == "PUT" and "partNumber=2" in request.path else None
    with pytest.raises(OSError, match="part 2 could not be written after 5 attempts"):
        remote.write_then_upload(f"s3://{BUCKET}/failed/big.bzna", lambda local: write_samples(local, large_sample, 40))
    assert not fs.exists(f"{BUCKET}/failed") and not pending_uploads(fs) and not os.listdir(env)


def test_concat_streams_a_large_merge(s3, env, tmp_path, large_sample, monkeypatch):
    from bzna_boxes import remote

    monkeypatch.setattr(remote, "PART_SIZE", PART)
    shard = tmp_path / "shard.bzna"
    write_samples(shard, large_sample, 6)
    s3.filesystem().put(str(shard), f"{BUCKET}/shards/shard.bzna")
    inputs = [shard, f"s3://{BUCKET}/shards/shard.bzna"] * 3
    url = f"s3://{BUCKET}/merged/big.bzna"
    s3.proxy.reset()
    assert concat(inputs, url) == 36
    concat(inputs, tmp_path / "big.bzna")
    assert s3.filesystem().cat(f"{BUCKET}/merged/big.bzna") == (tmp_path / "big.bzna").read_bytes()
    assert s3.proxy.count("POST") == 2  # one multipart upload: started and completed
    assert not pending_uploads(s3.filesystem()) and not os.listdir(env)


KILLED_WRITER = """
import os, pickle, signal, sys
from bzna_boxes import remote
from bzna_boxes.writer import InnerSample
remote.PART_SIZE = 5 << 20
with open(sys.argv[2], "rb") as f:
    sample = InnerSample(*pickle.load(f))
def kill(index):
    if index == 30:
        os.kill(os.getpid(), signal.SIGKILL)
import test_remote_build
remote.write_then_upload(sys.argv[1], lambda local: test_remote_build.write_samples(local, sample, 40, kill))
"""


def test_a_killed_streaming_process_leaves_no_object(s3, env, tmp_path, large_sample):
    """SIGKILL leaves no object; the multipart upload it had started stays pending (an S3
    lifecycle rule, AbortIncompleteMultipartUpload, removes such uploads) and is aborted here."""
    import pickle

    fs = s3.filesystem()
    url = f"s3://{BUCKET}/killed-stream/big.bzna"
    path = os.pathsep.join([str(REPO), str(REPO / "tests")])
    (tmp_path / "sample.pickle").write_bytes(pickle.dumps(tuple(large_sample)))
    command = [sys.executable, "-c", KILLED_WRITER, url, str(tmp_path / "sample.pickle")]
    process = run_in_session(command, {**os.environ, "PYTHONPATH": path})
    assert process.returncode == -signal.SIGKILL
    assert not fs.exists(f"{BUCKET}/killed-stream")
    left = [u for u in pending_uploads(fs) if u["Key"] == "killed-stream/big.bzna"]
    assert len(left) <= 1
    for upload in left:
        fs.call_s3("abort_multipart_upload", Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
