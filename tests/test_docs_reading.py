"""docs/reading.md runs as written: its Python examples as doctests, its ``$ bzna ...`` lines
through the command's entry point, outputs compared (``...`` matches anything)."""

from __future__ import annotations

from pathlib import Path

import pytest
from guides import blocks as guide_blocks
from guides import run_console_examples, run_python_examples

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "reading.md"

pytest.importorskip("av", reason="the guide builds its example dataset with libx265 through PyAV")


def blocks(kind: str) -> list[str]:
    return guide_blocks(GUIDE, kind)


def test_the_guide_has_examples():
    assert len(blocks("python")) >= 8 and len(blocks("console")) >= 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder where ``fixtures/`` is the repository's, as when the guide runs from the root."""
    path = tmp_path_factory.mktemp("guide")
    (path / "fixtures").symlink_to(REPO / "fixtures")
    return path


def test_python_examples(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    assert run_python_examples(GUIDE) >= 40


def test_console_examples(workdir, monkeypatch):
    """Runs after the Python examples (which build example.bzna), in the same folder."""
    monkeypatch.chdir(workdir)
    if not (workdir / "example.bzna").exists():
        pytest.skip("example.bzna is built by the Python examples, which did not run first")
    ran = run_console_examples(GUIDE)
    assert ran >= 4
