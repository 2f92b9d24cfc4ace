"""docs/decoding.md's "One image" example runs as written (on the CPU here)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from guides import blocks

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "decoding.md"

pytest.importorskip("av", reason="decoding on the CPU needs PyAV")


def test_the_one_image_example_runs(tmp_path, monkeypatch):
    from bzna_boxes.build import build

    monkeypatch.chdir(tmp_path)
    build(REPO / "fixtures" / "images", "demo.bzna", workers=1, progress=False, preset="ultrafast")
    example = blocks(GUIDE, "python")[0]
    assert 'Dataset("demo.bzna")' in example
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(GUIDE), "exec"), namespace)
    rgb = namespace["rgb"]
    assert rgb.shape == (300, 451, 3)  # the first image in sorted order: cat/chelsea.jpg, 451x300
    assert "(300, 451, 3)" in printed.getvalue()
