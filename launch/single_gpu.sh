#!/usr/bin/env bash
# One GPU on one host: the data mesh has one device, so this is plain single-device training.
# Usage: launch/single_gpu.sh [CONFIG] [WORKDIR] [--config.key=value ...]
#   e.g. launch/single_gpu.sh configs/sngan_cifar10.py /data/runs/sngan --config.stages=train
set -euo pipefail  # PYTHON: the interpreter of the venv (default: python on PATH)
CONFIG=${1:-configs/default.py}
WORKDIR=${2:-/tmp/jaxgan_single_gpu}
shift $(( $# < 2 ? $# : 2 ))
cd "$(dirname "$0")/.."
# Pick the GPU (default 0); JAX then sees exactly one device.
export CUDA_VISIBLE_DEVICES=${GPU:-0}
# Re-running the same command resumes from the latest checkpoint in WORKDIR.
exec "${PYTHON:-python}" -m jaxgan_lth.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
