"""``construct`` as the box schemas import it: without its debugger until someone asks for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()


def test_the_schemas_import_construct_without_pdb():
    assert _run("import sys, bzna_boxes.boxes; print(sorted(m for m in ('construct', 'construct.debug', 'pdb') if m in sys.modules))") == "['construct']"


@pytest.mark.parametrize(
    "use",
    [
        "from construct import Probe, Debugger",
        "import construct.debug; from construct.debug import Probe, Debugger",
        "from construct import *",
    ],
)
def test_the_debugger_still_loads_on_first_use(use):
    code = f"import bzna_boxes.boxes, construct; {use}; import construct.debug as d; print(Probe is d.Probe is construct.Probe, Debugger is d.Debugger)"
    assert _run(code) == "True True"
