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
