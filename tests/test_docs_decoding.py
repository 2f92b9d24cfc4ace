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


def test_the_training_example_trains_and_resumes_on_the_cpu(tmp_path, monkeypatch):
    """The 'Train with PyTorch' script, as written: one epoch, then a second run resuming from its checkpoint."""
    import torch

    from bzna_boxes.build import build

    monkeypatch.chdir(tmp_path)
    build(REPO / "fixtures" / "images", "demo.bzna", workers=1, progress=False, preset="ultrafast")
    example = next(block for block in blocks(GUIDE, "python") if "torchrun" in block or "LOCAL_RANK" in block)
    assert 'transform="random_resized_crop"' in example and "load_state_dict" in example
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("BATCH_SIZE", "2")
    code = compile(example, str(GUIDE), "exec")
    for epochs in (1, 2):
        monkeypatch.setenv("EPOCHS", str(epochs))
        printed = io.StringIO()
        namespace: dict = {}
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
        loader = namespace["loader"]
        assert loader.device == torch.device("cpu") and loader.epoch == epochs
        assert printed.getvalue().splitlines()[-1].startswith(f"epoch {epochs}: loss ")
        assert torch.load("checkpoint.pt")["loader"] == {"epoch": epochs, "batch": 0, "seed": 0}
    assert len(printed.getvalue().splitlines()) == 1  # the second run resumed: it trained epoch 2 only
