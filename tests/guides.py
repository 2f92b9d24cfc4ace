"""Run a Markdown guide as written: its ``python`` blocks as doctests, its ``$ bzna ...`` lines
through the command's entry point with their outputs compared (``...`` matches anything)."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import shlex
from pathlib import Path

from bzna_boxes.cli import main

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_COMMAND = re.compile(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", re.M)


def blocks(guide: Path, language: str) -> list[str]:
    """The bodies of the guide's fenced blocks in ``language``, in order."""
    return [body for lang, body in _BLOCK.findall(guide.read_text(encoding="utf-8")) if lang == language]


def run_python_examples(guide: Path) -> int:
    """Run every ``python`` block as one doctest session; fail with the report; return the examples run."""
    text = "\n".join(blocks(guide, "python"))
    test = doctest.DocTestParser().get_doctest(text, {"__name__": guide.stem}, guide.name, str(guide), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output = io.StringIO()
    runner.run(test, out=output.write)
    assert runner.failures == 0, output.getvalue()
    return runner.tries


def run_console_examples(guide: Path) -> int:
    """Run every ``$ bzna ...`` line of the ``console`` blocks and compare its output; return how many ran."""
    checker = doctest.OutputChecker()
    ran = 0
    for block in blocks(guide, "console"):
        for command, expected in _COMMAND.findall(block):
            args = shlex.split(command)
            assert args[0] == "bzna", command
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main(args[1:])
            assert status == 0, command
            assert checker.check_output(expected, out.getvalue(), doctest.ELLIPSIS), f"{command}\nexpected:\n{expected}got:\n{out.getvalue()}"
            ran += 1
    return ran
