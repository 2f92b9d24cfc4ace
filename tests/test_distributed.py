"""Distributed builds on a Dask LocalCluster equal local builds, survive failures and resume."""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install bzna_boxes[distributed])")

from bzna_boxes import build as local_build  # noqa: E402
from bzna_boxes import distributed as dist  # noqa: E402
from bzna_boxes.build import BuildError, list_sources  # noqa: E402
from bzna_boxes.cli import main  # noqa: E402
from bzna_boxes.index import open as open_bzna  # noqa: E402
from bzna_boxes.verify import verify  # noqa: E402

import build_faults  # noqa: E402

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
OPTIONS = {"preset": "ultrafast", "max_short_side": 256}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def sources_dir(tmp_path_factory) -> Path:
    """The fixture photographs plus one corrupt file, so the report has an entry."""
    root = tmp_path_factory.mktemp("src")
    shutil.copytree(IMAGES, root / "images", ignore=shutil.ignore_patterns("*.md"))
    (root / "images" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root / "images"


@pytest.fixture(scope="module")
def reference(sources_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "local.bzna"
    local_build.build(sources_dir, out, workers=1, progress=False, **OPTIONS)
    return out


def assert_same_dataset(built: Path, reference: Path) -> None:
    """Byte-identical files and side files (class list, report), and the same tables through the reader."""
    assert filecmp.cmp(built, reference, shallow=False)
    for suffix in (".classes.txt", ".report.tsv"):
        assert Path(str(built)[: -len(".bzna")] + suffix).read_text() == Path(str(reference)[: -len(".bzna")] + suffix).read_text()
    with open_bzna(built) as a, open_bzna(reference) as b:
        assert [t.name for t in a.tracks] == [t.name for t in b.tracks]
        for ta, tb in zip(a.tracks, b.tracks):
            assert (ta.offsets == tb.offsets).all() and (ta.sizes == tb.sizes).all()
            assert all(bytes(x) == bytes(y) for x, y in zip(ta, tb))


@pytest.mark.parametrize("shard_size", [1, 3, 100])
def test_distributed_build_equals_local_build(client, sources_dir, reference, tmp_path, shard_size):
    out = tmp_path / "dist.bzna"
    result = dist.build(sources_dir, out, client, shard_size=shard_size, progress=False, **OPTIONS)
    count = len(list_sources(sources_dir).sources)
    assert result.count == count
    assert result.shards == -(-count // shard_size)
    assert sorted(result.built) == list(range(result.shards)) and result.reused == []
    assert [row[1] for row in result.failures] == ["cat/broken.jpg"]
    assert not (tmp_path / "dist.bzna.shards").exists(), "shards are removed after the merge"
    assert_same_dataset(out, reference)
    report = verify(out)  # the merge carries the shards' checksum tables
    assert report.ok and f"checksums (c32c): {4 * count} samples of 4 tracks checked, all match" in report.summary
    with open_bzna(out) as built:  # the class names, which the shards do not hold, given at the merge
        assert built.class_names() == ["cat", "coffee", "space"]


def test_a_task_that_fails_once_is_retried(client, sources_dir, reference, tmp_path):
    out = tmp_path / "retry.bzna"
    build_faults.mark_shard(tmp_path, "fail_shard_once", 1)
    dist.build(sources_dir, out, client, shard_size=3, progress=True, shard_task=build_faults.fail_shard_once, **OPTIONS)
    assert not list(tmp_path.glob("*-once-*")), "the shard failed once"
    assert_same_dataset(out, reference)


def test_a_worker_that_dies_mid_build_loses_nothing(client, sources_dir, reference, tmp_path):
    out = tmp_path / "killed.bzna"
    build_faults.mark_shard(tmp_path, "kill_worker_once", 0)
    dist.build(sources_dir, out, client, shard_size=2, progress=False, shard_task=build_faults.kill_worker_once, **OPTIONS)
    assert not list(tmp_path.glob("*-once-*")), "a worker died"
    client.wait_for_workers(2, timeout=60)
    assert_same_dataset(out, reference)


def test_a_shard_that_keeps_failing_stops_the_build_and_resume_redoes_only_it(client, sources_dir, reference, tmp_path):
    out = tmp_path / "resumed.bzna"
    work = tmp_path / "work"
    with pytest.raises(BuildError, match=r"shard 2 \(images 6\.\.8\) failed after 1 attempts"):
        build_faults.mark_shard(tmp_path, "fail_shard_once", 2)
        dist.build(sources_dir, out, client, shard_size=3, work_dir=work, retries=0, progress=False, shard_task=build_faults.fail_shard_once, **OPTIONS)
    assert not out.exists()
    done = sorted(p.name for p in work.glob("shard-*.json"))
    assert "shard-000002.json" not in done and len(done) == 2
    result = dist.build(sources_dir, out, client, shard_size=3, work_dir=work, resume=True, progress=False, **OPTIONS)
    assert result.built == [2] and result.reused == [0, 1]
    assert_same_dataset(out, reference)


def test_resume_redoes_a_shard_whose_sources_changed_or_whose_file_is_short(client, sources_dir, tmp_path):
    work = tmp_path / "work"
    out = tmp_path / "a.bzna"
    dist.build(sources_dir, out, client, shard_size=4, work_dir=work, keep_shards=True, progress=False, **OPTIONS)
    specs = dist.plan_shards(list_sources(sources_dir).sources, str(work), 4, OPTIONS)
    assert all(dist.shard_is_done(spec) for spec in specs)
    # A different encoder option changes every digest: nothing is reused.
    other = dist.plan_shards(list_sources(sources_dir).sources, str(work), 4, {**OPTIONS, "crf": 30})
    assert not any(dist.shard_is_done(spec) for spec in other)
    # A shard file cut short no longer counts as done.
    with open(specs[0].path, "r+b") as f:
        f.truncate(os.path.getsize(specs[0].path) // 2)
    assert not dist.shard_is_done(specs[0])
    result = dist.build(sources_dir, out, client, shard_size=4, work_dir=work, resume=True, progress=False, **OPTIONS)
    assert result.built == [0] and result.reused == list(range(1, result.shards))


def test_plan_shards_covers_every_source_once_in_order(sources_dir, tmp_path):
    sources = list_sources(sources_dir).sources
    for size in (1, 2, 4, len(sources), len(sources) + 5):
        specs = dist.plan_shards(sources, str(tmp_path), size, OPTIONS)
        flat = [s for spec in specs for s in spec.sources]
        assert [s.filename for s in flat] == [s.filename for s in sources]
        assert [spec.start for spec in specs] == list(range(0, len(sources), size))
        assert all(1 <= len(spec.sources) <= size for spec in specs)
    with pytest.raises(ValueError):
        dist.plan_shards(sources, str(tmp_path), 0, OPTIONS)


def test_cli_build_on_an_existing_scheduler(client, sources_dir, reference, tmp_path, capsys):
    out = tmp_path / "cli.bzna"
    address = client.scheduler.address
    code = main(["build", str(sources_dir), str(out), "--scheduler", address, "--shard-size", "3", "--preset", "ultrafast", "--max-short-side", "256", "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "from 3 shards" in printed and "1 missing" in printed
    assert_same_dataset(out, reference)
