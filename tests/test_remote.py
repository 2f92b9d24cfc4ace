"""Reading datasets from object stores and web servers (bzna_boxes.remote) against real servers
on localhost: moto's S3 server (through s3fs) behind a recording proxy, and a plain HTTP server
honouring Range. Index, bytes, decode and Loader batches equal the local file's; opening makes
few requests; the index cache; retries; the CLI's reading verbs with s3:// URLs."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

import bzna_boxes  # noqa: E402
from bzna_boxes import Dataset, layout  # noqa: E402
from bzna_boxes.remote import BLOCK, RemoteReadError, RemoteStorage  # noqa: E402

from bzna_factory import encoded_entries, plain_entries, write_dataset  # noqa: E402
from remote_servers import RangeServer, run_in_session, running_s3  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BUCKET = "data"


@pytest.fixture(scope="module")
def s3():
    with running_s3(BUCKET) as server:
        yield server


@pytest.fixture(autouse=True)
def quiet_proxy(request, tmp_path_factory, monkeypatch):
    """Each test starts with an empty request log, no failures and no delay, and an index cache
    of its own (not the user's)."""
    monkeypatch.setenv("BZNA_CACHE_DIR", str(tmp_path_factory.mktemp("index-cache")))
    if "s3" in request.fixturenames:
        request.getfixturevalue("s3").proxy.reset()
    yield


@pytest.fixture(scope="module")
def photos(tmp_path_factory, s3):
    """Real H.265 samples (the fixture photographs), on disk and in the bucket."""
    entries, _, video_hvcc = encoded_entries()
    path = tmp_path_factory.mktemp("photos") / "photos.bzna"
    write_dataset(path, entries, video_hvcc)
    s3.filesystem().put(str(path), f"{BUCKET}/photos.bzna")
    return path, f"s3://{BUCKET}/photos.bzna"


@pytest.fixture(scope="module")
def plain(tmp_path_factory, s3):
    """3,000 samples of arbitrary bytes (an mdat of about 450 KB, many times a fetched block)."""
    path = tmp_path_factory.mktemp("plain") / "plain.bzna"
    write_dataset(path, plain_entries(3000, seed=5, missing=(4,), no_target=(9,)))
    s3.filesystem().put(str(path), f"{BUCKET}/plain.bzna")
    return path, f"s3://{BUCKET}/plain.bzna"


def fast_failing(s3, tmp_path, **extra) -> dict:
    """storage_options whose client does not retry by itself (the storage's retries are tested)."""
    return s3.options(config_kwargs={"retries": {"max_attempts": 1, "mode": "standard"}}, **extra)


def assert_same_index(remote, local) -> None:
    assert [t.name for t in remote.tracks] == [t.name for t in local.tracks]
    for a, b in zip(remote.tracks, local.tracks):
        assert a.track_id == b.track_id and a.handler == b.handler
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.sizes, b.sizes)
    assert remote.boxes == local.boxes and remote.size == local.size


def test_open_gives_the_local_index_targets_filenames_and_bytes(s3, plain, tmp_path):
    path, url = plain
    with bzna_boxes.open(url, s3.options(), index_cache=False) as remote, bzna_boxes.open(path) as local:
        assert_same_index(remote, local)
        assert remote.storage.buffer is None
    remote, local = Dataset(url, storage_options=s3.options()), Dataset(path)
    np.testing.assert_array_equal(remote.targets, local.targets)
    assert [s.filename for s in remote] == [s.filename for s in local]
    everything = list(range(len(local)))
    assert [bytes(s.data) for s in remote.fetch(everything)] == [bytes(s.data) for s in local]
    assert [bytes(remote[i].data) for i in (0, 5, 1500, -1)] == [bytes(local[i].data) for i in (0, 5, 1500, -1)]
    assert list(remote.missing) == list(local.missing) == [4]


def test_samples_decode_like_the_local_file(s3, photos):
    from bzna_boxes.decode import open_decoder

    path, url = photos
    remote, local = Dataset(url, storage_options=s3.options()), Dataset(path)
    decoder = open_decoder("cpu", layout="HWC")
    for a, b in zip(remote, local):
        assert bytes(a.data) == bytes(b.data)
        for track in (layout.INPUT_TRACK, layout.THUMB_TRACK):
            np.testing.assert_array_equal(decoder.decode(a.image(track)), decoder.decode(b.image(track)))


def test_the_loader_yields_the_local_batches(s3, photos):
    import torch

    from bzna_boxes.torch import Loader

    path, url = photos

    def batches(dataset):
        return list(Loader(dataset, 3, shuffle=True, seed=11, device="cpu", size=(24, 32)))

    remote, local = batches(Dataset(url, storage_options=s3.options())), batches(Dataset(path))
    assert len(remote) == len(local) > 1
    for (images, targets), (local_images, local_targets) in zip(remote, local):
        assert torch.equal(targets, local_targets) and torch.equal(images, local_images)


def test_a_remote_dataset_pickles_and_reads_in_the_copy(s3, plain):
    path, url = plain
    copy = pickle.loads(pickle.dumps(Dataset(url, storage_options=s3.options())))
    local = Dataset(path)
    assert bytes(copy[17].data) == bytes(local[17].data) and copy[17].filename == local[17].filename


def test_opening_reads_the_boxes_in_at_most_four_requests(s3, plain):
    path, url = plain
    with bzna_boxes.open(path) as local:
        moov, top_headers = local.moov, sum(b.header for b in local.boxes if b.type != "moov")
    with bzna_boxes.open(url, s3.options(), index_cache=False):
        pass
    requests = s3.proxy.requests
    assert len(requests) <= 4, requests
    assert [r.method for r in requests].count("HEAD") == 1
    fetched = sum(end - start for start, end in (r.span for r in requests if r.method == "GET"))
    assert moov.size + top_headers <= fetched <= moov.size + top_headers + (64 << 10), requests


def test_the_index_cache_spares_the_moov_and_rereads_a_changed_object(s3, plain, tmp_path):
    path, _ = plain
    url = f"s3://{BUCKET}/cached.bzna"
    fs = s3.filesystem()
    fs.put(str(path), f"{BUCKET}/cached.bzna")
    cache = tmp_path / "cache"
    with bzna_boxes.open(url, s3.options(), index_cache=cache) as first, bzna_boxes.open(path) as local:
        assert_same_index(first, local)
        assert not first.storage.cached
    assert s3.proxy.count("GET") >= 1 and list(cache.iterdir())
    s3.proxy.reset()
    with bzna_boxes.open(url, s3.options(), index_cache=cache) as second, bzna_boxes.open(path) as local:
        assert_same_index(second, local)
        assert second.storage.cached
    assert [r.method for r in s3.proxy.requests] == ["HEAD"]

    other = tmp_path / "other.bzna"
    write_dataset(other, plain_entries(40, seed=9))
    fs.put(str(other), f"{BUCKET}/cached.bzna")  # the same URL, another object
    s3.proxy.reset()
    with bzna_boxes.open(url, s3.options(), index_cache=cache) as third, bzna_boxes.open(other) as local:
        assert_same_index(third, local)
        assert not third.storage.cached
    assert s3.proxy.count("GET") >= 1

    s3.proxy.reset()
    with bzna_boxes.open(url, s3.options(), index_cache=False):
        pass
    assert s3.proxy.count("GET") >= 1  # off: read again


def test_the_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    from bzna_boxes.remote import index_cache_dir

    monkeypatch.delenv("BZNA_CACHE_DIR", raising=False)
    monkeypatch.delenv("BZNA_INDEX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert index_cache_dir() == os.path.join(str(tmp_path), "bzna_boxes", "index")
    monkeypatch.setenv("BZNA_CACHE_DIR", str(tmp_path / "here"))
    assert index_cache_dir() == str(tmp_path / "here")
    assert index_cache_dir(tmp_path / "given") == str(tmp_path / "given")
    monkeypatch.setenv("BZNA_INDEX_CACHE", "0")
    assert index_cache_dir() is None and index_cache_dir(False) is None


def test_a_changed_object_is_reported_by_changed(s3, plain, tmp_path):
    path, _ = plain
    fs = s3.filesystem()
    fs.put(str(path), f"{BUCKET}/changing.bzna")
    with bzna_boxes.open(f"s3://{BUCKET}/changing.bzna", s3.options(), index_cache=False) as file:
        assert file.changed() is None
        other = tmp_path / "other.bzna"
        write_dataset(other, plain_entries(40, seed=9))
        fs.put(str(other), f"{BUCKET}/changing.bzna")
        assert "size changed" in file.changed()
        fs.rm(f"{BUCKET}/changing.bzna")
        assert file.changed() == "it was removed"


def test_read_many_merges_neighbours_and_splits_at_gaps(s3, plain):
    path, url = plain
    storage = RemoteStorage(url, s3.options(), index_cache=False, max_gap=1000)
    with bzna_boxes.open(path) as local:
        data = local.storage
        spans = [(100, 50), (160, 40), (150, 10), (5000, 10), (5900, 100), (20000, 1)]
        s3.proxy.reset()
        got = storage.read_many(spans)
        assert [bytes(g) for g in got] == [data.read(o, s) for o, s in spans]
    ranges = sorted(r.span for r in s3.proxy.requests if r.method == "GET")
    assert ranges == [(100, 200), (5000, 6000), (20000, 20001)]


def test_failed_requests_are_retried_and_the_bytes_are_right(s3, plain, tmp_path):
    path, url = plain
    s3.proxy.fail = lambda number, request: 503 if number % 3 == 0 else None  # every third request
    storage = RemoteStorage(url, fast_failing(s3, tmp_path), index_cache=False, backoff=0.001)
    with bzna_boxes.open(storage) as remote, bzna_boxes.open(path) as local:
        assert_same_index(remote, local)
        track = local.track(layout.INPUT_TRACK)
        spans = list(zip(track.offsets.tolist(), track.sizes.tolist()))[::7]
        for start in range(0, len(spans), 40):
            batch = spans[start : start + 40]
            assert [bytes(g) for g in remote.storage.read_many(batch)] == [local.storage.read(o, s) for o, s in batch]
    statuses = s3.proxy.requests
    assert len(statuses) >= 6  # some requests failed and were tried again


def test_exhausted_retries_name_the_url_and_the_byte_range(s3, plain, tmp_path):
    path, url = plain
    storage = RemoteStorage(url, fast_failing(s3, tmp_path), index_cache=False, attempts=3, backoff=0.001)
    dataset = Dataset(bzna_boxes.open(storage))
    local = Dataset(path)
    inputs = local.file.track(layout.INPUT_TRACK)
    start, size = int(inputs.offsets[2000]), int(inputs.sizes[2000])  # far from the blocks opening fetched
    s3.proxy.reset()
    s3.proxy.fail = lambda number, request: 503 if request.method == "GET" else None
    with pytest.raises(RemoteReadError) as caught:
        bytes(dataset[2000].data)
    message = str(caught.value)
    assert url in message and f"bytes {start}..{start + size}" in message and "3 attempts" in message and "failed by the test proxy" in message
    assert s3.proxy.count("GET") >= 3
    with pytest.raises(RemoteReadError, match=url):
        dataset.fetch([1000, 2000, 2500])


def test_a_short_answer_is_an_error_not_a_sample(s3, plain, tmp_path):
    _, url = plain
    storage = RemoteStorage(url, fast_failing(s3, tmp_path), index_cache=False, attempts=2, backoff=0.001)
    storage.indexed()  # from now on a read fetches exactly its range
    storage._fs.cat_file = lambda path, start, end: b"\0" * (end - start - 1)  # a server that sends too little
    with pytest.raises(RemoteReadError, match="bytes 1000..2000 .*sent 999 bytes"):
        storage.read(1000, 1000)


def test_a_missing_object_is_one_clear_error(s3, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/nothing.bzna"):
        bzna_boxes.open(f"s3://{BUCKET}/nothing.bzna", s3.options())


def run_bzna(args, env, cwd) -> subprocess.CompletedProcess:
    return run_in_session([sys.executable, "-m", "bzna_boxes", *args], env, cwd)


def untimed(text: str) -> str:
    """``text`` without the durations and rates that verify reports."""
    return re.sub(r"in [\d.]+ s \([\d,.]+ [a-z]+/s\)", "in T", text)


def cli_env(s3, tmp_path) -> dict:
    return {**s3.env(), "PYTHONPATH": str(REPO), "BZNA_CACHE_DIR": str(tmp_path / "cache")}


def test_the_cli_reads_s3_urls_like_local_files(s3, photos, tmp_path):
    path, url = photos
    env = cli_env(s3, tmp_path)
    for args in (["inspect", "--depth", "2"], ["verify", "-q", "--decode"]):
        remote, local = run_bzna([*args, url], env, tmp_path), run_bzna([*args, str(path)], env, tmp_path)
        assert remote.returncode == local.returncode == 0, remote.stderr
        assert untimed(remote.stdout.replace(url, "FILE")) == untimed(local.stdout.replace(str(path), "FILE"))
    for args in (["extract", "2"], ["extract", "2", "--track", "bzna_thumb"], ["decode", "1", "--device", "cpu"]):
        suffix = ".png" if args[0] == "decode" else ".bin"
        remote = run_bzna([args[0], url, *args[1:], "-o", str(tmp_path / f"remote{suffix}")], env, tmp_path)
        local = run_bzna([args[0], str(path), *args[1:], "-o", str(tmp_path / f"local{suffix}")], env, tmp_path)
        assert remote.returncode == local.returncode == 0, remote.stderr
        assert (tmp_path / f"remote{suffix}").read_bytes() == (tmp_path / f"local{suffix}").read_bytes()


def test_the_cli_gives_one_line_for_a_missing_object(s3, tmp_path):
    result = run_bzna(["verify", f"s3://{BUCKET}/absent.bzna"], cli_env(s3, tmp_path), tmp_path)
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and f"s3://{BUCKET}/absent.bzna" in result.stderr


def test_plain_http_with_ranges(plain, tmp_path):
    path, _ = plain
    server = RangeServer({"/d/plain.bzna": Path(path).read_bytes()})
    try:
        url = f"{server.url}/d/plain.bzna"
        with bzna_boxes.open(url, index_cache=tmp_path / "cache") as remote, bzna_boxes.open(path) as local:
            assert_same_index(remote, local)
        assert len(server.requests) <= 4 and all(r.range for r in server.requests if r.method == "GET")
        remote, local = Dataset(url, storage_options={}), Dataset(path)
        assert [bytes(s.data) for s in remote[::50]] == [bytes(s.data) for s in local[::50]]
        np.testing.assert_array_equal(remote.targets, local.targets)
        server.requests.clear()
        with bzna_boxes.open(url, index_cache=tmp_path / "cache") as again:
            assert again.storage.cached
        assert [r.method for r in server.requests] == ["HEAD"]
    finally:
        server.stop()


def test_a_server_that_ignores_ranges_is_one_clear_error_without_retries(plain, tmp_path):
    path, _ = plain
    server = RangeServer({"/d/plain.bzna": Path(path).read_bytes()})
    server.honour_ranges = False
    try:
        url = f"{server.url}/d/plain.bzna"
        with pytest.raises(RemoteReadError, match=f"^{re.escape(url)}: bytes 0..16384: the server sent [0-9,]+ bytes for a range of 16,384: it does not honour Range"):
            bzna_boxes.open(url, index_cache=False)
        assert [r.method for r in server.requests] == ["HEAD", "GET"]
    finally:
        server.stop()


def test_http_errors_on_the_head_are_told_apart_from_a_missing_file(plain):
    """fsspec reports any failed HEAD of an http(s) URL as FileNotFoundError: a server error is
    retried, a refusal is a PermissionError, and only a 404 says that there is no such file."""
    path, _ = plain
    server = RangeServer({"/d/plain.bzna": Path(path).read_bytes()})
    try:
        url = f"{server.url}/d/plain.bzna"
        for status, error, words in ((503, RemoteReadError, "could not be read after 3 attempts"), (403, PermissionError, "access denied"), (404, FileNotFoundError, "no such file")):
            server.status = status
            server.requests.clear()
            with pytest.raises(error, match=f"^{re.escape(url)}: .*{words}"):
                RemoteStorage(url, index_cache=False, attempts=3, backoff=0.01)
            heads = [r for r in server.requests if r.method == "HEAD"]
            assert len(heads) == (3 if status == 503 else 1), (status, server.requests)
        server.status = None
        assert RemoteStorage(url, index_cache=False).size == Path(path).stat().st_size
    finally:
        server.stop()


def test_a_local_path_or_file_url_imports_no_fsspec(plain):
    path, _ = plain
    code = (
        "import sys, bzna_boxes\n"
        f"d = bzna_boxes.Dataset({str(path)!r}); bytes(d[3].data); d.targets\n"
        f"f = bzna_boxes.open('file://' + {str(path)!r}); f.tracks\n"
        "loaded = [m for m in ('fsspec', 's3fs', 'aiohttp', 'botocore') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = run_in_session([sys.executable, "-c", code], {**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 0, result.stderr


def sample_bytes(batch) -> list[bytes]:
    return [bytes(sample.data) for sample in batch]


def test_dataloader_workers_forked_after_a_read_read_the_same_bytes(s3, plain):
    """The parent has read through the file (its client's event loop runs) before DataLoader
    forks its workers: they read through a client of their own, not the parent's."""
    torch = pytest.importorskip("torch")
    path, url = plain
    local = Dataset(path)
    ds = Dataset(url, storage_options=s3.options())
    assert bytes(ds[1].data) == bytes(local[1].data)
    indices = list(range(0, len(local), 97))
    loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=indices, num_workers=2, multiprocessing_context="fork", collate_fn=sample_bytes, timeout=120)
    got = [data for batch in loader for data in batch]
    assert got == [bytes(local[i].data) for i in indices]


def test_access_denied_names_the_url_and_is_not_retried(s3, plain, tmp_path):
    path, url = plain
    s3.proxy.fail = lambda number, request: 403
    with pytest.raises(PermissionError, match=f"^{re.escape(url)}: access denied"):
        bzna_boxes.open(url, storage_options=fast_failing(s3, tmp_path), index_cache=False)
    assert s3.proxy.count() == 1


def test_a_remote_file_without_class_names_reads_the_class_list_beside_it(s3, plain, tmp_path):
    """As a local file does: NAME.classes.txt in the same bucket folder (what bzna build uploads)."""
    path, _ = plain
    s3.filesystem().put(str(path), f"{BUCKET}/listed/plain.bzna")
    url = f"s3://{BUCKET}/listed/plain.bzna"
    assert Dataset(url, storage_options=s3.options()).classes == []
    s3.filesystem().pipe(f"{BUCKET}/listed/plain.classes.txt", "cat\nd\u00f6g\n".encode())
    ds = Dataset(url, storage_options=s3.options())
    assert ds.classes == ["cat", "d\u00f6g"] and ds.class_to_idx == {"cat": 0, "d\u00f6g": 1}


def send_sample(dataset, index, connection) -> None:
    connection.send(bytes(dataset[index].data))


def test_a_process_forked_while_the_storage_lock_is_held_reads(s3, plain):
    """A fork copies a lock another thread holds (a Loader's fetch counting its requests) as
    held: the child's storage starts with a lock of its own."""
    import multiprocessing

    path, url = plain
    ds = Dataset(url, storage_options=s3.options())
    middle = len(ds) // 2  # far from the blocks that opening kept: read by a request
    expected = bytes(Dataset(path)[middle].data)
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    with ds.file.storage._lock:
        child = context.Process(target=send_sample, args=(ds, middle, writer))
        child.start()
    try:
        assert reader.poll(60), "the forked reader hung"
        assert reader.recv() == expected
    finally:
        if child.is_alive():
            child.kill()
        child.join()


def moov_reads(s3, moov) -> float:
    """How many times the GETs the proxy saw fetched the ``moov``'s bytes (1.0: once)."""
    spans = [r.span or (0, moov.end) for r in s3.proxy.requests if r.method == "GET"]
    return sum(max(0, min(end, moov.end) - max(start, moov.offset)) for start, end in spans) / moov.size


@pytest.fixture
def s3_env(s3, monkeypatch):
    """The S3 server as the usual environment gives it, to this process. s3fs keeps one client
    per set of arguments, so the client made from this environment is dropped afterwards (it
    would talk to this module's server in the next module's tests)."""
    import s3fs

    for name, value in s3.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("index_cache", [False, True])
def test_verify_and_concat_of_a_remote_file_read_its_moov_once(s3, s3_env, tmp_path, monkeypatch, index_cache):
    from bzna_boxes.verify import verify
    from bzna_boxes.writer import concat

    from bzna_boxes.encode import encode_image
    from bzna_boxes.writer import DatasetWriter, InnerSample

    path = tmp_path / "written.bzna"  # by the library's writer: with its checksum table and class names
    sample = InnerSample.from_encoded(encode_image(np.full((16, 16, 3), 99, np.uint8), preset="ultrafast"))
    with DatasetWriter(path, classes=["cat", "dog", "fish"]) as writer:
        for index in range(2000):  # a moov of many blocks
            writer.add_sample(sample._replace(target=index % 3, filename=f"{index}.png"))
    url = f"s3://{BUCKET}/written-{index_cache}.bzna"
    s3.filesystem().put(str(path), url.removeprefix("s3://"))
    monkeypatch.setenv("BZNA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BZNA_INDEX_CACHE", "1" if index_cache else "0")
    with bzna_boxes.open(path) as local:
        moov, names, table = local.moov, local.class_names(), local.checksum_table()
    assert names and table is not None and moov.size > 4 * BLOCK
    with bzna_boxes.open(url) as remote:
        assert moov_reads(s3, moov) == 1
        assert remote.class_names() == names and remote.checksum_table() == table
        assert remote.find_box("moov/udta") is not None
    assert moov_reads(s3, moov) == 1  # the class names, the checksum table and the box headers came with the index
    s3.proxy.reset()
    assert verify(url, inner=False).ok
    assert moov_reads(s3, moov) == (0 if index_cache else 1)
    s3.proxy.reset()
    assert concat([url], tmp_path / "copy.bzna") == len(Dataset(str(path)))
    assert (tmp_path / "copy.bzna").read_bytes() == path.read_bytes()
    assert moov_reads(s3, moov) == (0 if index_cache else 1)


def test_inspect_of_a_remote_file_reads_its_moov_once(s3, s3_env, plain, monkeypatch):
    from bzna_boxes.inspect import inspect_file

    path, url = plain
    monkeypatch.setenv("BZNA_INDEX_CACHE", "0")
    with bzna_boxes.open(path) as local:
        moov = local.moov
    s3.proxy.reset()
    nodes, _ = inspect_file(url)
    assert {"moov", "mdat"} <= {node["type"] for node in nodes}
    assert moov_reads(s3, moov) == 1  # the boxes are parsed from what opening it read
