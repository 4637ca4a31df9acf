# Two commands on a fresh machine: `make demo` (the whole workflow on the offline demo region) and
# `make test` (the test suite). Both create .venv with the pinned dependencies first, once.
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= all
# No pip cache: the torch pair and its CUDA packages are about 3 GB of wheels that would stay on disk beside
# the 7 GB they install to.
export PIP_NO_CACHE_DIR := 1

.PHONY: demo test lint install clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/snakemake --cores $(CORES)

test: install
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakefmt --check Snakefile workflow
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/mypy

clean:
	rm -rf results .snakemake
