"""The ``bzna`` command: ``--json`` on every verb that reports, defaults in ``--help``, one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bzna_boxes import layout
from bzna_boxes.cli import main
from bzna_boxes.index import open as open_bzna

BUILD = ["--preset", "ultrafast", "--max-short-side", "64", "--workers", "1", "-q"]


def run_json(capsys, *argv) -> tuple[int, dict]:
    """Run ``bzna ARGV --json``: the exit status and the one JSON object printed (stderr must be empty)."""
    code = main([*map(str, argv), "--json"])
    out, err = capsys.readouterr()
    assert err == "" and out.endswith("\n") and out.count("\n") == 1, (out, err)
    return code, json.loads(out)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Two classes of small pictures, and one file that is not an image."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(7)
    for name, count in (("cat", 2), ("dog", 1)):
        (root / name).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "d.bzna"
    assert main(["build", str(tree), str(out), *BUILD]) == 0
    return out


def test_build_json(tree, tmp_path, capsys):
    out = tmp_path / "d.bzna"
    code, record = run_json(capsys, "build", tree, out, *BUILD)
    assert code == 0
    assert record["command"] == "build" and record["path"] == str(out)
    assert (record["samples"], record["missing"], record["workers"]) == (4, 1, 1)
    assert record["bytes"] == out.stat().st_size and record["seconds"] > 0 and record["images_per_second"] > 0
    assert record["classes_path"] == str(tmp_path / "d.classes.txt") and Path(record["report_path"]).is_file()
    (failure,) = record["failures"]
    assert failure["index"] == 3 and failure["filename"] == "dog/broken.png" and failure["reason"]


def test_verify_json_reports_ok_and_problems(built, tmp_path, capsys):
    path = built
    code, record = run_json(capsys, "verify", path)
    assert code == 0 and record["command"] == "verify" and record["path"] == str(path)
    assert record["ok"] is True and record["problem_count"] == 0 and record["problems"] == [] and record["counts"] == {}
    assert any("checksums" in line for line in record["summary"]) and record["seconds"] >= 0
    damaged = tmp_path / "damaged.bzna"
    data = bytearray(path.read_bytes())
    with open_bzna(path) as f:
        at = int(f.track(layout.INPUT_TRACK).offsets[0]) + 100
    data[at] ^= 0xFF
    damaged.write_bytes(bytes(data))
    code, record = run_json(capsys, "verify", damaged, "--max-problems", "1")
    assert code == 1 and record["ok"] is False and record["damaged"] == [0]
    assert record["problem_count"] >= 1 and record["counts"]["checksum"] == 1 and len(record["problems"]) == 1
    assert set(record["problems"][0]) == {"kind", "message", "offset", "path"}


def test_concat_json(built, tmp_path, capsys):
    path = built
    out = tmp_path / "merged.bzna"
    code, record = run_json(capsys, "concat", path, path, "-o", out)
    assert code == 0 and record["command"] == "concat"
    assert (record["path"], record["inputs"], record["samples"]) == (str(out), [str(path), str(path)], 8)
    assert record["bytes"] == out.stat().st_size and record["seconds"] >= 0


@pytest.mark.parametrize("track, content", [(None, "sample"), ("bzna_thumb", "annexb"), ("bzna_fname", "sample")])
def test_extract_json(built, tmp_path, capsys, track, content):
    path = built
    out = tmp_path / "out.bin"
    code, record = run_json(capsys, "extract", path, 1, "-o", out, *(["--track", track] if track else []))
    assert code == 0 and record["command"] == "extract"
    assert (record["path"], record["source"], record["index"], record["content"]) == (str(out), str(path), 1, content)
    assert record["track"] == (track or layout.INPUT_TRACK) and record["bytes"] == out.stat().st_size > 0
    if track == "bzna_fname":
        assert out.read_bytes() == b"cat/1.png"


def test_decode_json(built, tmp_path, capsys):
    path = built
    out = tmp_path / "picture.png"
    code, record = run_json(capsys, "decode", path, 2, "-o", out, "--device", "cpu")
    assert code == 0 and record["command"] == "decode"
    assert (record["path"], record["source"], record["index"], record["track"]) == (str(out), str(path), 2, "bzna_input")
    assert (record["width"], record["height"], record["device"]) == (80, 48, "cpu")  # never upscaled
    assert Image.open(out).size == (80, 48)


def test_an_error_with_json_is_one_line_on_stderr_and_nothing_on_stdout(built, tmp_path, capsys):
    path = built
    code = main(["decode", str(path), "99", "-o", str(tmp_path / "x.png"), "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("bzna decode: index 99 out of range")
    code = main(["verify", str(tmp_path / "absent.bzna"), "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.count("\n") == 1 and "absent.bzna" in err


def test_a_distributed_build_json(tree, tmp_path, capsys):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    out = tmp_path / "d.bzna"
    code, record = run_json(capsys, "build", tree, out, *BUILD[:-3], "--cluster", "local", "--workers", "1", "--shard-size", "2", "-q")
    assert code == 0 and record["command"] == "build"
    assert (record["samples"], record["missing"], record["shards"], record["built"], record["reused"]) == (4, 1, 2, [0, 1], [])
    assert record["bytes"] == out.stat().st_size and record["merge_seconds"] >= 0


@pytest.mark.parametrize(
    "command, shown",
    [
        ("inspect", ["(default: 3)"]),
        ("verify", ["(default: 20)"]),
        ("build", ["(default: 512)", "(default: all cores)", "(default: 16GB)", "(default: the library's"]),
        ("decode", ["(default: auto)", "(default: bzna_input)"]),
        ("extract", ["(default: the bzna_input sample"]),
    ],
)
def test_help_shows_the_defaults(capsys, command, shown):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit.value.code == 0
    for text in shown:
        assert text in out
    assert "(default: None)" not in out and "(default: False)" not in out
    if command != "inspect":
        assert "--json" in out


@pytest.mark.parametrize("verb", ["extract", "decode"])
def test_an_output_url_is_refused_before_reading(built, tmp_path, capsys, monkeypatch, verb):
    """extract and decode write local files: an s3:// output is one clear line, not a folder 's3:'."""
    monkeypatch.chdir(tmp_path)
    assert main([verb, str(built), "0", "-o", "s3://bucket/x.out"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"bzna {verb}: s3://bucket/x.out: ") and "local file" in err
    assert os.listdir(tmp_path) == []
