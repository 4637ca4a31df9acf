"""Which package modules a rule runs, computed from the code, and one digest of them for Snakemake's params.

Snakemake reruns a job when its ``script:`` file or its ``params:`` change, but not when a module imported by
the script changes. Each rule therefore passes ``code=code_version("scripts/<rule>.py")``: a digest of the
script's transitive imports within ``lulc`` (module-level and function-level ``import`` / ``from ... import``
statements, read with :mod:`ast`, nothing imported), so editing any module a rule can run reruns it, and editing
a module it never imports reruns nothing. No hand-written lists to fall behind the imports.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

#: The package directory (``lulc/``) and the repository root above it.
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def _package_imports(source: Path, package_dir: Path) -> set[str]:
    """Names of the ``package_dir`` modules that ``source`` imports anywhere in its body."""
    package = package_dir.name
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative import inside the package
                if source.parent == package_dir:
                    found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
                continue
            parts = (node.module or "").split(".")
            if parts[0] != package:
                continue
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
    return {name for name in found if (package_dir / f"{name}.py").is_file()}


def package_modules(script: str | Path, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every module of the package that ``script`` runs (its transitive package imports), sorted."""
    seen: set[str] = set()
    todo = sorted(_package_imports(Path(script), package_dir))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_package_imports(package_dir / f"{module}.py", package_dir) - seen)
    if (package_dir / "__init__.py").is_file():
        seen.add("__init__")
    return sorted(seen)


@cache
def _digest(script: Path, package_dir: Path) -> str:
    digest = hashlib.sha256()
    for module in package_modules(script, package_dir):
        digest.update(module.encode() + b"\0" + (package_dir / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def code_version(script: str | Path, package_dir: Path = PACKAGE_DIR) -> str:
    """A digest of the package modules ``script`` runs (not the script itself: Snakemake tracks that)."""
    return _digest(Path(script).resolve(), Path(package_dir).resolve())


__all__ = ["code_version", "package_modules"]
