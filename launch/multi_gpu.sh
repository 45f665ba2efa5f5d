#!/usr/bin/env bash
# All GPUs of one host, one process: jax.devices() lists every GPU, train.build puts them in
# one Mesh(('data',)), and each batch is split over them (jax.jit + NamedSharding, no pmap).
# The D and G batch sizes must be divisible by the GPU count (else a clear ValueError).
# Usage: launch/multi_gpu.sh [CONFIG] [WORKDIR] [--config.key=value ...]
#   e.g. CUDA_VISIBLE_DEVICES=0,1,2,3 launch/multi_gpu.sh configs/biggan_cifar10.py /data/bg
set -euo pipefail  # PYTHON: the interpreter of the venv (default: python on PATH)
CONFIG=${1:-configs/default.py}
WORKDIR=${2:-/tmp/jaxgan_multi_gpu}
shift $(( $# < 2 ? $# : 2 ))
cd "$(dirname "$0")/.."
# One process only: make sure no stale multi-process settings switch on jax.distributed.
export JAXGAN_DISTRIBUTED=0
nvidia-smi -L || true
exec "${PYTHON:-python}" -m jaxgan_lth.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
