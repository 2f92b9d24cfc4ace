"""A file replaced underneath a reader (by rename, as ``bzna`` writes, or rewritten in place).

The reader keeps its snapshot of the file it opened (its map), and says so when asked
(``Dataset.stale``, ``check_unchanged``), at each epoch of the ``Loader``, when a sample read
fails, and at the end of ``bzna verify``. The replacements here are real ``os.replace`` calls
over the dataset's path, made at a known point (no timing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bzna_boxes
from bzna_boxes import Dataset
from bzna_boxes.index import FileChangedError
from bzna_boxes.verify import verify

from bzna_factory import write_numbered


def _replace(path: Path, count: int) -> None:
    """Write a new dataset of ``count`` samples beside ``path`` and rename it over ``path``."""
    fresh = path.with_name(path.name + ".new")
    write_numbered(fresh, count)
    os.replace(fresh, path)


@pytest.fixture
def dataset_path(tmp_path) -> Path:
    path = tmp_path / "d.bzna"
    write_numbered(path, 16)
    return path


def test_a_dataset_replaced_by_rename_is_stale_and_keeps_its_snapshot(dataset_path):
    with Dataset(dataset_path) as ds:
        before = [bytes(ds[i].data) for i in range(len(ds))]
        assert not ds.stale
        ds.check_unchanged()
        _replace(dataset_path, 8)
        assert ds.stale
        with pytest.raises(FileChangedError, match=r"d\.bzna changed since it was opened: it was replaced by another file"):
            ds.check_unchanged()
        assert len(ds) == 16 and [bytes(ds[i].data) for i in range(16)] == before  # the old file, whole
    with Dataset(dataset_path) as again:
        assert len(again) == 8 and not again.stale


def test_a_failed_sample_read_names_the_replacement(dataset_path):
    """The inner samples of write_numbered are single bytes: reading a picture fails. Before the
    replacement that is a BoxError about the sample; after it, the error says the file changed."""
    with Dataset(dataset_path) as ds:
        with pytest.raises(bzna_boxes.BoxError):
            ds[0].image()
        _replace(dataset_path, 16)
        with pytest.raises(FileChangedError, match="replaced") as caught:
            ds[0].image()
        assert isinstance(caught.value.__context__, bzna_boxes.BoxError)


def test_a_file_rewritten_in_place_is_noticed(dataset_path):
    file = bzna_boxes.open(dataset_path)
    try:
        size = dataset_path.stat().st_size
        with open(dataset_path, "r+b") as f:  # one byte rewritten, same size
            f.seek(size - 1)
            f.write(b"\x00")
        os.utime(dataset_path, ns=(1, 1))  # a distinct mtime, whatever the clock's granularity
        assert file.changed() == "it was modified in place"
        with open(dataset_path, "ab") as f:  # growing it in place (shrinking it would SIGBUS a reader)
            f.write(b"\x00" * 8)
        assert file.changed() == f"its size changed from {size:,} to {size + 8:,} bytes (rewritten in place)"
        with pytest.raises(FileChangedError, match="its size changed"):
            file.check_unchanged()
        os.remove(dataset_path)
        assert file.changed() == "it was removed"
    finally:
        file.close()


def test_verify_reports_a_file_replaced_while_it_ran(dataset_path):
    def replace_on_first_sample(iterable, total):
        for n, item in enumerate(iterable):
            if n == 0:
                _replace(dataset_path, 16)
            yield item

    report = verify(dataset_path, progress=replace_on_first_sample)
    assert report.counts["changed"] == 1
    (problem,) = [p for p in report.problems if p.kind == "changed"]
    assert "the file changed while it was verified: it was replaced" in problem.message
    assert verify(dataset_path, inner=False).counts["changed"] == 0


def test_the_loader_checks_at_each_epoch(dataset_path):
    pytest.importorskip("torch")
    from bzna_boxes.torch import Loader

    ds = Dataset(dataset_path)
    loader = Loader(ds, batch_size=4, device="cpu", size=None)
    loader.set_epoch(0)  # the same file: nothing to say
    _replace(dataset_path, 16)
    with pytest.raises(FileChangedError, match="replaced"):
        loader.set_epoch(1)
    with pytest.raises(FileChangedError, match="replaced"):
        iter(loader)
    loader.close()
    ds.close()
