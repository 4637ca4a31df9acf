#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): one command, at most 8 minutes on one GPU, no network, nothing
# installed beyond the project's environment (.venv, or the Python in $PYTHON). Writes gpu_check.json (or --json).
#   bash benchmarks/gpu_check.sh [--json out.json] [--peak-tflops N]
#   bash benchmarks/gpu_check.sh --dry     # the CPU check of the script itself (tiny models; figures mean nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout --signal=TERM 480 "$PYTHON" benchmarks/gpu_check.py "$@"
