"""Which package modules a rule runs, computed from the code, and one digest of them for Snakemake's params.

Snakemake reruns a job when its ``script:`` file or its ``params:`` change, but not when a module imported by
the script changes. Each rule therefore passes ``code=code_version("scripts/<rule>.py")``: a digest of the
script's transitive imports within ``lulc`` (module-level and function-level ``import`` / ``from ... import``
statements, absolute or relative, read with :mod:`ast`, nothing imported), so editing any module a rule can run
reruns it, and editing a module it never imports reruns nothing. No hand-written lists to fall behind the
imports.

Modules are named by their dotted path below the package (``train``, ``models.prithvi``); a sub-package is
the module of its ``__init__.py`` (``models``), and importing a module of a sub-package runs the
``__init__.py`` of every package above it, as Python does, so those count too.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

#: The package directory (``lulc/``) and the repository root above it.
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of ``module`` (a dotted path below the package, "" for the package itself), or None."""
    base = package_dir.joinpath(*module.split(".")) if module else package_dir
    for candidate in (base.with_suffix(".py") if module else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> set[str]:
    """``module`` and every sub-package above it (``models.prithvi`` -> ``models.prithvi``, ``models``)."""
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts) + 1)}


def _module_of(source: Path, package_dir: Path) -> tuple[str, bool]:
    """(dotted name below the package, whether it is a package ``__init__``) of a file inside the package,
    or ("", False) for a file outside it (a rule script)."""
    try:
        relative = source.resolve().relative_to(package_dir.resolve())
    except ValueError:
        return "", False
    parts = list(relative.with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts = parts[:-1]
    return ".".join(parts), is_init


def imported_modules(source: Path, package_dir: Path = PACKAGE_DIR, with_parents: bool = True) -> set[str]:
    """Dotted names of the package modules that ``source`` imports anywhere in its body (function bodies too),
    and, with ``with_parents``, the sub-packages whose ``__init__.py`` those imports run (what a rule runs);
    without it, only the modules the statements name (the import graph as written)."""
    package = package_dir.name
    own, is_init = _module_of(source, package_dir)
    own_package = own.split(".") if is_init else own.split(".")[:-1]
    candidates: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative import inside the package
                if not own and not is_init and source.parent.resolve() != package_dir.resolve():
                    continue
                anchor = own_package[: len(own_package) - (node.level - 1)] if node.level > 1 else own_package
                base = anchor + (node.module.split(".") if node.module else [])
            else:
                parts = (node.module or "").split(".")
                if parts[0] != package:
                    continue
                base = parts[1:]
            base_name = ".".join(base)
            if base_name:
                candidates.add(base_name)
            # `from lulc.x import y` imports the module lulc.x.y where y is one
            candidates |= {".".join([*base, alias.name]) for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    candidates.add(".".join(parts[1:]))
    found: set[str] = set()
    for name in candidates:
        if module_file(name, package_dir) is None:
            continue
        if with_parents:
            found |= {parent for parent in _with_parents(name) if module_file(parent, package_dir)}
        else:
            found.add(name)
    found.discard(own)
    return found


def package_modules(script: str | Path, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every module of the package that ``script`` runs (its transitive package imports), sorted; the
    package's own ``__init__`` as ``__init__``."""
    seen: set[str] = set()
    todo = sorted(imported_modules(Path(script), package_dir))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, package_dir)
        assert path is not None  # only existing modules are ever queued
        todo.extend(imported_modules(path, package_dir) - seen)
    if (package_dir / "__init__.py").is_file():
        seen.add("__init__")
    return sorted(seen)


@cache
def _digest(script: Path, package_dir: Path) -> str:
    digest = hashlib.sha256()
    for module in package_modules(script, package_dir):
        path = package_dir / "__init__.py" if module == "__init__" else module_file(module, package_dir)
        assert path is not None
        digest.update(module.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def code_version(script: str | Path, package_dir: Path = PACKAGE_DIR) -> str:
    """A digest of the package modules ``script`` runs (not the script itself: Snakemake tracks that)."""
    return _digest(Path(script).resolve(), Path(package_dir).resolve())


__all__ = ["code_version", "imported_modules", "module_file", "package_modules"]
