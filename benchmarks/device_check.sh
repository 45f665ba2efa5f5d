#!/usr/bin/env bash
# One prepared check of an accelerator host in a hard 7-minute wall-clock budget (issue 31).
#
#   bash benchmarks/device_check.sh               # on a GPU host (one device call)
#   bash benchmarks/device_check.sh --cpu-smoke   # CPU, tiny sizes, < 4 minutes (CI)
#   options: --budget S, --cap-scale F, --data FOLDER, --wheels DIR, --only STEP[,STEP],
#            --python PY
#
# Installs the carried wheels of wheels/ that are missing (ml_collections), checks
# jax.devices(), then runs the steps of benchmarks/device_steps.py, most valuable first, each
# in its own process under what is left of the budget. After every step it rewrites
# $OUT/device_check.tar.gz (summary, machine probe, result files, logs, sample grids) and
# $OUT/device_check.{json,md}; without $OUT, workdirs/device_check/<UTC time>/.
# Prepare the carried folders here first: bash benchmarks/device_prepare.sh.
# Unpack the archive into benchmarks/results/<machine>/:
#   python benchmarks/device_archive.py unpack PATH/device_check.tar.gz
# Details: benchmarks/device_check.py. Exit status 0 unless a step failed or timed out.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
exec "$PY" benchmarks/device_check.py --python "$PY" "$@"
