"""The conda environments for --use-conda pin exactly what requirements.txt pins."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[re.sub(r"\[.*\]", "", match.group(1)).lower()] = match.group(2)
    return pins


def test_requirements_pin_every_dependency_exactly():
    pins = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert pins["torch"] == "2.15.0" and pins["torchvision"] == "0.29.2", "torch/torchvision must stay a matching pair"
    assert {"snakemake", "rasterio", "stackstac", "pystac-client", "geopandas"} <= set(pins)


def test_conda_envs_agree_with_requirements():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert env_files
    for env_file in env_files:
        env = yaml.safe_load(env_file.read_text())
        pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
        assert pip_sections, f"{env_file.name}: no pip section"
        env_pins = _pins(pip_sections[0])
        assert env_pins, env_file.name
        for name, version in env_pins.items():
            assert name in requirements, f"{env_file.name}: {name} is not pinned in requirements.txt"
            assert requirements[name] == version, (
                f"{env_file.name}: {name}=={version}, requirements.txt has {requirements[name]}"
            )
        assert "python=3.11" in env["dependencies"], env_file.name


def test_every_rule_names_an_existing_conda_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env} does not exist"


#: Imports that a pinned package brings with it (not pinned themselves): the module -> the pinned package that
#: requires it.
TRANSITIVE = {
    "affine": "rasterio",
    "pyproj": "geopandas",
    "requests": "pystac-client",
    "urllib3": "pystac-client",
    "huggingface_hub": "timm",
}


def _top_level_imports(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_rule_env_provides_what_its_code_imports():
    """With --use-conda a rule runs in its env alone: every third-party module its script and the `lulc` modules
    it runs import (function-level imports too) is pinned in that env, or brought by a pinned package."""
    import importlib.metadata
    import sys

    from lulc.code_version import module_file, package_modules

    distributions = importlib.metadata.packages_distributions()
    normalise = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    problems = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule, body in re.findall(r"^(?:rule|checkpoint) (\w+):\n((?:    .*\n|\n)*)", smk.read_text(), re.M):
            env_match = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            script_match = re.search(r'script:\s*\n\s*"([^"]+)"', body)
            if not env_match or not script_match:
                continue
            env = yaml.safe_load((smk.parent / env_match[1]).read_text())
            pinned = {normalise(name) for name in _pins(
                [d for section in env["dependencies"] if isinstance(section, dict) for d in section["pip"]])}
            script = (smk.parent / script_match[1]).resolve()
            files = [script] + [module_file(m) or REPO / "lulc" / "__init__.py" for m in package_modules(script)]
            imported = set().union(*(_top_level_imports(f) for f in files)) - set(sys.stdlib_module_names)
            for module in sorted(imported - {"lulc", "snakemake"}):
                provider = TRANSITIVE.get(module)
                packages = [provider] if provider else distributions.get(module, [module])
                if not any(normalise(p) in pinned for p in packages):
                    problems.append(f"{rule} ({env_match[1]}): {module}")
    assert problems == []
