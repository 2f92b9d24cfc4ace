"""Class names stored in the file (moov/udta/bzcl): build, DatasetWriter, Dataset.classes, concat, verify, inspect."""

from __future__ import annotations

import os
import pickle

import pytest
from writer_support import FAST, gradient

from bzna_boxes import BoxError, Dataset, ImageNet, layout
from bzna_boxes.boxes import Boxes, find
from bzna_boxes.build import BuildError, build, list_sources, sidecar_paths
from bzna_boxes.cli import main
from bzna_boxes.encode import encode_image
from bzna_boxes.verify import verify
from bzna_boxes.writer import DatasetWriter, concat

PIL = pytest.importorskip("PIL", reason="building reads images with Pillow")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="module")
def encoded():
    return [encode_image(gradient(24 + i, 20, seed=i), **FAST) for i in range(4)]


def write(path, encoded, classes=None, targets=(0, 1, 2, 1)) -> None:
    with DatasetWriter(path, classes=classes) as writer:
        for sample, target in zip(encoded, targets):
            writer.add(sample, target, f"img{target}.jpg")


def save_tree(root, classes: dict[str, int]) -> None:
    """An ImageFolder tree: ``classes`` maps a class folder to its number of tiny images."""
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(gradient(20 + i, 16, seed=k * 10 + i)).save(root / name / f"{i}.png")


def test_build_stores_the_image_folder_classes_in_the_file(tmp_path):
    root = tmp_path / "src"
    save_tree(root, {"zebra": 1, "Ant": 2, "café": 1})
    out = tmp_path / "out.bzna"
    build(root, out, workers=1, progress=False, **FAST)
    os.remove(sidecar_paths(out)[0])  # the names come from the file, not from the text file beside it
    with Dataset(out) as ds:
        assert ds.classes == ["Ant", "café", "zebra"] == list_sources(root).classes  # sorted, as ImageFolder
        assert ds.class_to_idx == {"Ant": 0, "café": 1, "zebra": 2}
        assert ds[1:3].classes == ds.classes and pickle.loads(pickle.dumps(ds)).classes == ds.classes
        assert [ds.classes[t] for t in ds.targets] == ["Ant", "Ant", "café", "zebra"]
        moov = Boxes.parse(ds.file.buffer)[-1]
        assert [box.type for box in find(moov, "udta").children] == ["bzsc", "bzcl"]
    with ImageNet(out) as imagenet:
        assert imagenet.classes == ["Ant", "café", "zebra"]


def test_dataset_writer_stores_classes_and_refuses_a_name_with_a_nul(tmp_path, encoded):
    write(tmp_path / "a.bzna", encoded, classes=["cat", "dog", "owl"])
    with Dataset(tmp_path / "a.bzna") as ds:
        assert ds.classes == ["cat", "dog", "owl"] and ds.file.class_names() == ["cat", "dog", "owl"]
    with pytest.raises(ValueError, match="contains a NUL"):
        DatasetWriter(tmp_path / "b.bzna", classes=["a\x00b"])
    assert sorted(os.listdir(tmp_path)) == ["a.bzna"]


def test_a_file_without_class_names_reads_the_text_file_beside_it_else_none(tmp_path, encoded):
    path = tmp_path / "old.bzna"
    write(path, encoded)
    with Dataset(path) as ds:
        assert ds.file.class_names() is None
        assert ds.classes == [] and ds.class_to_idx == {}
    (tmp_path / "old.classes.txt").write_bytes(b"cat\ndog\nn\xe9e\n")  # a name that is not UTF-8 keeps its bytes
    with Dataset(path) as ds:
        assert ds.classes == ["cat", "dog", "n\udce9e"]


def test_concat_keeps_agreeing_class_lists_and_refuses_differing_ones(tmp_path, encoded, capsys):
    a, b, c, none = (tmp_path / n for n in ("a.bzna", "b.bzna", "c.bzna", "none.bzna"))
    write(a, encoded[:2], classes=["cat", "dog", "owl"], targets=(0, 1))
    write(b, encoded[2:], classes=["cat", "dog", "owl"], targets=(2, 1))
    write(none, encoded[2:], targets=(2, 1))
    write(c, encoded[2:], classes=["cat", "owl"], targets=(1, 0))
    whole = tmp_path / "whole.bzna"
    write(whole, encoded, classes=["cat", "dog", "owl"])
    concat([a, b], tmp_path / "ab.bzna")
    assert (tmp_path / "ab.bzna").read_bytes() == whole.read_bytes()
    concat([none, a], tmp_path / "na.bzna")  # an input without names takes the others'
    with Dataset(tmp_path / "na.bzna") as ds:
        assert ds.classes == ["cat", "dog", "owl"]
    with pytest.raises(BoxError, match=r"c\.bzna: its class names \(2: 'cat', 'owl'\) differ from those of .*a\.bzna \(3: 'cat', 'dog', 'owl'\)"):
        concat([a, c], tmp_path / "ac.bzna")
    assert main(["concat", str(a), str(c), "-o", str(tmp_path / "ac.bzna")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differ from those of" in err
    assert not (tmp_path / "ac.bzna").exists()
    concat([a, c], tmp_path / "given.bzna", classes=["x", "y", "z"])  # names given replace the inputs'
    with Dataset(tmp_path / "given.bzna") as ds:
        assert ds.classes == ["x", "y", "z"]


def test_verify_shows_the_class_names_and_checks_them_against_the_targets(tmp_path, encoded):
    write(tmp_path / "ok.bzna", encoded, classes=["cat", "dog", "owl"])
    report = verify(tmp_path / "ok.bzna")
    assert report.ok and "classes: 3 stored in moov/udta/bzcl ('cat', 'dog', 'owl')" in report.summary
    assert not verify(tmp_path / "ok.bzna", num_classes=4).ok  # the file says 3
    write(tmp_path / "few.bzna", encoded, classes=["cat", "dog"])  # target 2 has no name
    problems = verify(tmp_path / "few.bzna").problems
    assert [p.kind for p in problems] == ["target"] and "outside [0, 2)" in problems[0].message
    write(tmp_path / "twice.bzna", encoded, classes=["cat", "dog", "cat"])
    assert [p.kind for p in verify(tmp_path / "twice.bzna").problems] == ["classes"]


def test_verify_and_dataset_report_a_damaged_class_box(tmp_path, encoded):
    path = tmp_path / "bad.bzna"
    write(path, encoded, classes=["cat", "dog", "owl"])
    data = bytearray(path.read_bytes())
    at = data.rindex(b"owl\x00")
    data[at + 3] = ord("!")  # the last name loses its NUL
    path.write_bytes(data)
    report = verify(path)
    assert [p.kind for p in report.problems] == ["classes"] and "no terminating NUL" in report.problems[0].message
    with Dataset(path) as ds, pytest.raises(BoxError, match=f"moov/{layout.CLASSES_PATH}"):
        ds.classes


def test_a_class_box_whose_count_leaves_names_unread_is_damaged(tmp_path, encoded):
    """entry_count 1 over three names: the two left over are not silently dropped."""
    path = tmp_path / "count.bzna"
    write(path, encoded, classes=["cat", "dog", "owl"])
    data = bytearray(path.read_bytes())
    at = data.rindex(b"bzcl")
    assert data[at + 8 : at + 12] == (3).to_bytes(4, "big")
    data[at + 8 : at + 12] = (1).to_bytes(4, "big")
    path.write_bytes(data)
    report = verify(path)
    assert "classes" in [p.kind for p in report.problems] and "8 bytes after" in report.problems[0].message
    with Dataset(path) as ds, pytest.raises(BoxError, match=f"moov/{layout.CLASSES_PATH} at offset {at - 4 + 20}"):
        ds.classes


def test_bzna_inspect_shows_the_class_names(tmp_path, encoded, capsys):
    write(tmp_path / "a.bzna", encoded, classes=["cat", "dog", "owl"])
    assert main(["inspect", str(tmp_path / "a.bzna")]) == 0
    out = capsys.readouterr().out
    assert "[bzcl]" in out and "class_names = [cat, dog, owl]" in out


# --- a folder without images is an error, as in ImageFolder ------------------------------------


@pytest.mark.parametrize(
    "tree, empty",
    [({"a": 1, "b": 0, "c": 1}, "b"), ({"a": 0, "b": 0}, "a")],
    ids=["one class folder without images", "no images at all"],
)
def test_a_class_folder_without_images_is_refused_before_anything_is_written(tmp_path, capsys, tree, empty):
    root = tmp_path / "src"
    save_tree(root, tree)
    (root / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(BuildError, match=f"{root / empty}.*: a class folder without images"):
        list_sources(root)
    out = tmp_path / "out.bzna"
    assert main(["build", str(root), str(out), "--preset", "ultrafast", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(root / empty) in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_a_source_folder_without_class_folders_is_refused(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lone.png").write_bytes(b"")
    assert main(["build", str(tmp_path / "src"), str(tmp_path / "out.bzna"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no class subfolders" in err
    assert sorted(os.listdir(tmp_path)) == ["src"]
