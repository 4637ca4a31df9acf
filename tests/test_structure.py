"""The code's structure, read from the source: no import circle in ``lulc``, no private name imported across
modules, no function over 120 lines, and code versions (what decides reruns) that follow sub-packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lulc.code_version import code_version, imported_modules, module_file, package_modules

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lulc"
MAX_FUNCTION_LINES = 120


def _modules(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by dotted name ("" for the package's own __init__)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules its import statements name (module level and inside functions)."""
    return {
        name: imported_modules(path, package_dir, with_parents=False) - {name}
        for name, path in _modules(package_dir).items()
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_lulc_package_has_no_import_circle():
    graph = import_graph()
    assert {"train", "tune", "tuned", "recipe", "metrics"} <= set(graph), sorted(graph)
    assert "tuned" in graph["train"] and "tuned" in graph["tune"], "train and tune share the tuned-value format"
    assert import_cycles(graph) == []


def test_the_circle_finder_finds_circles_through_other_modules(tmp_path):
    """The check above could fail: a circle a -> b -> c -> a, one inside a function, is found."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import x\n")
    (package / "b.py").write_text("import pkg.sub.c\nx = 1\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("def f():\n    from pkg import a\n")
    (package / "d.py").write_text("from pkg.a import y\n")
    assert import_cycles(import_graph(package)) == [["a", "b", "sub.c"]]


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] == "lulc"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_name_is_imported_across_modules():
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]
    offenders = {str(path.relative_to(REPO)): names for path in sources if (names := _private_imports(path))}
    assert offenders == {}


def test_no_function_in_the_package_is_longer_than_120_lines():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.name}"] = lines
    assert long == {}


@pytest.fixture
def nested_package(tmp_path: Path) -> tuple[Path, Path]:
    """A package with a sub-package, absolute and relative imports, and a rule script that imports it."""
    package = tmp_path / "lulc"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text("def run():\n    from lulc.models.unet import build\n")
    (package / "maps.py").write_text("X = 1\n")
    (package / "models" / "__init__.py").write_text("from lulc.models import registry\n")
    (package / "models" / "registry.py").write_text("REGISTRY = {}\n")
    (package / "models" / "unet.py").write_text("from .registry import REGISTRY\nfrom ..maps import X\n")
    script = tmp_path / "train_script.py"
    script.write_text("from lulc.train import run\n")
    return package, script


def test_code_versions_follow_sub_packages_and_relative_imports(nested_package):
    package, script = nested_package
    assert package_modules(script, package) == ["__init__", "maps", "models", "models.registry", "models.unet",
                                                "train"]
    assert module_file("models", package) == package / "models" / "__init__.py"
    before = code_version(script, package)
    registry = package / "models" / "registry.py"
    registry.write_text(registry.read_text() + "# an edit deep in the sub-package\n")
    from lulc import code_version as module

    module._digest.cache_clear()
    assert code_version(script, package) != before, "an edit inside a sub-package must change the code version"


def test_an_edit_outside_a_rules_imports_leaves_its_code_version(nested_package):
    package, script = nested_package
    from lulc import code_version as module

    before = code_version(script, package)
    (package / "unused.py").write_text("Y = 2\n")
    module._digest.cache_clear()
    assert code_version(script, package) == before
