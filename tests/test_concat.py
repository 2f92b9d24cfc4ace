"""concat: shards merged into one dataset equal, byte for byte, a single write of the same samples."""

from __future__ import annotations

import os

import numpy as np
import pytest
from writer_support import FAST, REPO, gradient, sample_bytes, tables

from bzna_boxes import BoxError, layout
from bzna_boxes.cli import main
from bzna_boxes.encode import encode_image
from bzna_boxes.writer import DatasetWriter, concat


@pytest.fixture(scope="module")
def samples():
    """Ten small encoded images (two of them with thumbnails) and a second preset for one."""
    sizes = [(40, 30), (600, 90), (64, 64), (31, 47), (90, 700), (50, 50), (20, 80), (80, 20), (33, 33), (70, 40)]
    encoded = [encode_image(gradient(w, h, seed=i), **FAST) for i, (w, h) in enumerate(sizes)]
    other_preset = encode_image(gradient(45, 45, seed=99), preset="superfast")
    return encoded, other_preset


def write(path, items) -> None:
    """items: (encoded sample or None for a missing one, target, filename)."""
    with DatasetWriter(path) as writer:
        for sample, target, name in items:
            if sample is None:
                writer.add_missing(target, name)
            else:
                writer.add(sample, target, name)


def items_of(encoded, missing=()) -> list[tuple]:
    return [(None if i in missing else s, i % 4 - 1, f"c{i % 4}/img{i}.jpg") for i, s in enumerate(encoded)]


@pytest.mark.parametrize("cuts", [(5,), (1, 9), (3, 3, 7), (0, 10)])
def test_concat_equals_one_write(tmp_path, samples, cuts):
    encoded, _ = samples
    items = items_of(encoded, missing={0, 4, 9})
    whole = tmp_path / "whole.bzna"
    write(whole, items)
    bounds = [0, *cuts, len(items)]
    shards = []
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        shards.append(tmp_path / f"shard{k}.bzna")
        write(shards[-1], items[start:stop])
    merged = tmp_path / "merged.bzna"
    assert concat(shards, merged) == len(items)
    assert merged.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_concat_merges_blocks_and_resolves_missing_across_shards(tmp_path, samples):
    encoded, _ = samples
    a, b = tmp_path / "a.bzna", tmp_path / "b.bzna"
    write(a, [(encoded[0], 0, "a0"), (None, 1, "a1")])  # alone, a's missing sample shows a0
    write(b, [(encoded[1], 2, "b0"), (encoded[2], 3, "b1")])
    merged = tmp_path / "m.bzna"
    concat([a, b], merged)
    found = tables(merged)
    # the seed's three blocks: inner samples, then targets, then filenames, each in one piece
    inputs, targets, names = found["bzna_input"], found["bzna_target"], found["bzna_fname"]
    assert np.all(np.diff(targets[0].astype(np.int64)) == 8)
    assert targets[0][0] == inputs[0][-1] + inputs[1][-1]
    assert names[0][0] == targets[0][-1] + 8
    assert [int.from_bytes(x, "little", signed=True) for x in sample_bytes(merged, layout.TARGET_TRACK)] == [0, 1, 2, 3]
    assert [x.decode() for x in sample_bytes(merged, layout.FILENAME_TRACK)] == ["a0", "a1", "b0", "b1"]
    video = found["VideoHandler"][0]
    assert video[1] == video[0]  # the tie between a0 and b0 goes to the earlier one


def test_concat_of_shards_with_other_presets(tmp_path, samples):
    encoded, other = samples
    items = [(encoded[0], 0, "x"), (other, 1, "y"), (None, 2, "z"), (encoded[1], 3, "w")]
    whole, s1, s2, merged = (tmp_path / n for n in ("whole.bzna", "s1.bzna", "s2.bzna", "m.bzna"))
    write(whole, items)
    write(s1, items[:2])
    write(s2, items[2:])
    concat([s1, s2], merged)
    assert merged.read_bytes() == whole.read_bytes()


def test_concat_of_empty_shards(tmp_path, samples):
    encoded, _ = samples
    empty, full, merged, whole = (tmp_path / n for n in ("e.bzna", "f.bzna", "m.bzna", "w.bzna"))
    write(empty, [])
    write(full, items_of(encoded[:3]))
    write(whole, items_of(encoded[:3]))
    concat([empty, full, empty], merged)
    assert merged.read_bytes() == whole.read_bytes()
    concat([empty, empty], merged)
    assert merged.read_bytes() == empty.read_bytes()


def test_concat_rejects_what_is_not_a_dataset(tmp_path, samples):
    encoded, _ = samples
    shard = tmp_path / "s.bzna"
    write(shard, items_of(encoded[:2]))
    out = tmp_path / "out.bzna"
    with pytest.raises(BoxError, match="bzna_input"):
        concat([shard, REPO / "fixtures" / "media" / "h264.mp4"], out)
    truncated = tmp_path / "t.bzna"
    truncated.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(BoxError):
        concat([truncated], out)
    with pytest.raises(ValueError, match="also an input"):
        concat([shard], shard)
    with pytest.raises(FileNotFoundError):
        concat([tmp_path / "absent.bzna"], out)
    assert sorted(os.listdir(tmp_path)) == ["s.bzna", "t.bzna"]


def test_bzna_concat_command(tmp_path, samples, capsys):
    encoded, _ = samples
    a, b, whole, out = (tmp_path / n for n in ("a.bzna", "b.bzna", "w.bzna", "o.bzna"))
    items = items_of(encoded[:4])
    write(a, items[:1])
    write(b, items[1:])
    write(whole, items)
    assert main(["concat", str(a), str(b), "-o", str(out)]) == 0
    assert "4 samples" in capsys.readouterr().out
    assert out.read_bytes() == whole.read_bytes()
    assert main(["concat", str(a), str(REPO / "fixtures" / "media" / "h264.mp4"), "-o", str(out)]) == 1
    assert "bzna concat" in capsys.readouterr().err


def test_concat_of_built_shards_equals_one_build(tmp_path):
    """bzna build of two halves of a list, merged, is bzna build of the whole list, byte for byte."""
    from writer_support import IMAGES

    photos = sorted(IMAGES.rglob("*.jpg"))
    lines = [f"{p.relative_to(IMAGES).as_posix()},{i % 3}\n" for i, p in enumerate(photos)]
    lines.insert(3, "cat/not-there.jpg,1\n")  # a missing sample inside the first shard
    for name, part in (("whole", lines), ("a", lines[:5]), ("b", lines[5:])):
        listing = tmp_path / f"{name}.csv"
        listing.write_text("".join(f"{IMAGES}/{line}" for line in part))
        assert main(["build", str(listing), str(tmp_path / f"{name}.bzna"), "--preset", "ultrafast", "--workers", "1", "-q"]) == 0
    assert main(["concat", str(tmp_path / "a.bzna"), str(tmp_path / "b.bzna"), "-o", str(tmp_path / "merged.bzna")]) == 0
    assert (tmp_path / "merged.bzna").read_bytes() == (tmp_path / "whole.bzna").read_bytes()
