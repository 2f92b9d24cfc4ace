"""The package's structure: no import cycles among its modules (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bzna_boxes"


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` by its dotted name (a package by its own)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package's modules an import statement loads (the innermost module each name lies in)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".")[: None if is_package else -1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, at module level or inside a function.

    Both count: a function-level import still ties the two modules together (it only moves the
    cycle from import time to call time). Imports under ``if TYPE_CHECKING:`` never run and do
    not count.
    """
    modules = module_names(root)
    graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        imports: set[str] = set()
        stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
        while stack:
            for child in ast.iter_child_nodes(stack.pop()):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    imports |= _imported(module, is_package, child, modules)
                stack.append(child)
        imports.discard(module)
        graph[module] = imports
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "bzna_boxes.build" in graph["bzna_boxes.distributed"]  # the reader sees real edges
    assert "bzna_boxes.hevc" in graph["bzna_boxes.image"]  # function-level imports count
    assert cycles(graph) == []


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .sub.c import g\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..b import f\n")
    assert cycles(import_graph(package)) == []  # TYPE_CHECKING imports do not run
    (package / "sub" / "c.py").write_text("def g():\n    from ..a import b\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


# --- one type per idea ------------------------------------------------------------------------


def test_the_encoder_and_the_reader_give_one_picture_type(tmp_path):
    import numpy as np

    from bzna_boxes import layout
    from bzna_boxes.dataset import Dataset
    from bzna_boxes.encode import encode_image
    from bzna_boxes.image import CleanAperture, EncodedImage
    from bzna_boxes.writer import DatasetWriter, InnerSample

    rng = np.random.default_rng(0)
    encoded = encode_image(rng.integers(0, 255, (300, 700, 3), dtype=np.uint8), preset="ultrafast")
    image = encoded.image
    assert type(image) is EncodedImage and type(encoded.thumbnail) is EncodedImage
    assert image.clean_aperture == CleanAperture(0, 0, 700, 300)  # the layout's clap, read back
    assert image.clap() == {k: v for k, v in layout.clean_aperture(image).items() if k != "type"}
    assert (image.frame_width % layout.FRAME_MULTIPLE, encoded.thumbnail.frame_width) == (0, layout.THUMBNAIL_SIZE)
    with DatasetWriter(tmp_path / "d.bzna", fsync=False) as writer:
        writer.add_sample(InnerSample.from_encoded(encoded, 1, "a.png"))
    with Dataset(tmp_path / "d.bzna") as dataset:
        read = dataset[0].image()
        assert type(read) is EncodedImage
        assert (read.clean_aperture, read.frame_width, read.width) == (image.clean_aperture, image.frame_width, image.width)
        assert bytes(read.payload) == image.payload


def test_one_function_chooses_the_device():
    import pytest

    from bzna_boxes import decode
    from bzna_boxes.decode import CpuDecoder, Decoder, resolve_device

    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:3") == "cuda:3"
    for bad in ("tpu", "cuda:x", "cuda:", "gpu:0"):
        with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
            resolve_device(bad)
        with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
            decode.open_decoder(bad)
    assert isinstance(CpuDecoder(), Decoder) and not isinstance(object(), Decoder)


def test_decoding_on_the_cpu_by_auto_imports_no_torch():
    import importlib.util
    import subprocess
    import sys

    import pytest

    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed: 'auto' then asks torch for the current device")
    code = "import sys, bzna_boxes.decode as d; print(type(d.open_decoder('auto')).__name__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.split() == ["CpuDecoder", "False"]


# --- the public API ---------------------------------------------------------------------------

HEAVY = ("construct", "numpy", "av", "torch", "PIL", "dask", "distributed", "PyNvVideoCodec")


def _modules_after(code: str) -> list[str]:
    import subprocess
    import sys

    script = f"import sys\n{code}\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    return out.stdout.split()


def test_import_bzna_boxes_imports_no_heavy_package_and_names_load_on_use():
    assert _modules_after("import bzna_boxes; bzna_boxes.BuildError, bzna_boxes.BoxError, bzna_boxes.DecoderUnavailable") == []
    assert _modules_after("import bzna_boxes; bzna_boxes.MissingSampleError") == ["construct", "numpy"]  # the reader's module (the index parses moov by the box schemas)
    loaded = _modules_after("import bzna_boxes; bzna_boxes.DatasetWriter, bzna_boxes.encode_image, bzna_boxes.open_decoder")
    assert not {"av", "torch", "PyNvVideoCodec"} & set(loaded)  # PyAV loads when a picture is encoded or decoded
    assert "torch" in _modules_after("import bzna_boxes; bzna_boxes.Loader")


def test_the_public_names_are_documented_and_typed():
    import inspect
    import typing

    import bzna_boxes

    added = ("encode_image", "open_decoder", "BuildError", "MissingSampleError", "DatasetWriter", "Loader")
    for name in bzna_boxes.__all__:
        value = getattr(bzna_boxes, name)
        if inspect.isfunction(value) or inspect.isclass(value):  # not __version__, nor the Box and Boxes constructs
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"
    for name in added:
        value = getattr(bzna_boxes, name)
        assert name in bzna_boxes.__all__ and name in dir(bzna_boxes)
        if inspect.isclass(value) and issubclass(value, BaseException):
            continue
        target = value.__init__ if inspect.isclass(value) else value
        hints = typing.get_type_hints(target)
        parameters = [p.name for p in inspect.signature(target).parameters.values() if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert parameters and all(p in hints for p in parameters), f"{name}: parameters without a type hint"
        assert inspect.isclass(value) or "return" in hints, f"{name}: no return type"
    assert bzna_boxes.MissingSampleError is __import__("bzna_boxes.dataset").dataset.MissingSampleError
    assert bzna_boxes.Loader is __import__("bzna_boxes.torch").torch.Loader
