"""docs/reading.md runs as written: its Python examples as doctests, its ``$ bzna ...`` lines
through the command's entry point, outputs compared (``...`` matches anything)."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import shlex
from pathlib import Path

import pytest

from bzna_boxes.cli import main

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "reading.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

pytest.importorskip("av", reason="the guide builds its example dataset with libx265 through PyAV")


def blocks(kind: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(GUIDE.read_text(encoding="utf-8")) if lang == kind]


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
    text = "\n".join(blocks("python"))
    test = doctest.DocTestParser().get_doctest(text, {"__name__": "reading_md"}, "docs/reading.md", str(GUIDE), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output = io.StringIO()
    runner.run(test, out=output.write)
    assert runner.failures == 0, output.getvalue()
    assert runner.tries >= 40


def test_console_examples(workdir, monkeypatch):
    """Runs after the Python examples (which build example.bzna), in the same folder."""
    monkeypatch.chdir(workdir)
    if not (workdir / "example.bzna").exists():
        pytest.skip("example.bzna is built by the Python examples, which did not run first")
    checker = doctest.OutputChecker()
    ran = 0
    for block in blocks("console"):
        for command, expected in re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", block, re.M):
            args = shlex.split(command)
            assert args[0] == "bzna"
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main(args[1:])
            assert status == 0, command
            assert checker.check_output(expected, out.getvalue(), doctest.ELLIPSIS), f"{command}\nexpected:\n{expected}got:\n{out.getvalue()}"
            ran += 1
    assert ran >= 4
