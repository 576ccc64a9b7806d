"""The Python packages import only down the layer order (README "Layout"):
core <- cuda <- bindings (_C) <- ops <- nn <- models <- train / cli.

Every import statement is read from the source (module level and inside functions, relative or
absolute, and importlib.import_module("localmamba....") strings), so a lazy import that runs up
the order fails here as well as an eager one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import localmamba

ROOT = Path(localmamba.__file__).resolve().parent

#: Each package or top-level module and its layer; an import may reach its own layer or a lower one.
LAYERS = {
    "_C": 0, "errors": 0, "atomic_files": 0,
    "ops": 1,
    "nn": 2,
    "models": 3,
    "data": 4, "search": 4, "visualize": 4, "profiling": 4, "export": 4,
    "train": 5,
    "dense": 6,
    "commands": 7, "cli": 7, "__main__": 7, "__init__": 7,
}


def _top_name(module: Path) -> str:
    parts = module.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def _imported_packages(own: tuple, text: str):
    """(top-level localmamba package or module, line) for every import in one source file, whose
    module path inside localmamba is ``own`` (e.g. ("ops", "reference"))."""
    package = own[:-1]  # the package a relative import starts from (an __init__ is its own package)
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("localmamba."):
                    continue
                target = node.module.split(".")[1:]
            else:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                yield target[0], node.lineno
            else:  # "from . import x" at the top: x is a package, a module or a name of __init__
                for alias in node.names:
                    yield alias.name if alias.name in LAYERS else "__init__", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("localmamba."):
                    yield alias.name.split(".")[1], node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("localmamba."):
                yield arg.value.split(".")[1], node.lineno


def test_every_package_has_a_layer():
    names = {_top_name(p) for p in ROOT.rglob("*.py")}
    assert names <= set(LAYERS), f"give these a layer in LAYERS: {sorted(names - set(LAYERS))}"


def test_no_import_runs_up_the_layer_order():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        source = _top_name(path)
        for target, line in _imported_packages(path.relative_to(ROOT).with_suffix("").parts, path.read_text()):
            assert target in LAYERS, f"{path.relative_to(ROOT)}:{line} imports unknown localmamba.{target}"
            if LAYERS[target] > LAYERS[source]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({source}, layer {LAYERS[source]}) imports "
                              f"{target} (layer {LAYERS[target]})")
    assert not upward, "imports up the layer order:\n" + "\n".join(upward)


def test_the_reader_sees_lazy_relative_and_string_imports():
    text = ("def f():\n    from ..models import create_model\n    import importlib\n"
            "    importlib.import_module('localmamba.train')\n    from . import reference\n"
            "    import localmamba.nn.mixers\n    from localmamba.data import registry\n")
    found = sorted(_imported_packages(("ops", "probe"), text), key=lambda hit: hit[1])
    assert found == [("models", 2), ("train", 4), ("ops", 5), ("nn", 6), ("data", 7)]
    assert list(_imported_packages(("__main__",), "from . import cli, get_cmake_dir\n")) == [
        ("cli", 1), ("__init__", 1)]
