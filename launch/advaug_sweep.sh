#!/usr/bin/env bash
# AdvAug strength sweep: configs/advaug_sweep.py trains 8 runs (PGD step sizes
# 0, 0.01, 0.05, 0.1 x seeds 0, 1) together in one jax.vmap program on all local devices
# (stage "multirun"); each run writes WORKDIR/runs/<name>/ (metrics, samples, summary.json).
# Usage: launch/advaug_sweep.sh [WORKDIR] [--config.key=value ...]
#   e.g. launch/advaug_sweep.sh /data/sweep --config.multirun.hparams="adv_step_size=0.0,0.2"
#   Other sweeps: --config.multirun.hparams="adv_lam=0.1,0.3,0.5,0.7" --config.multirun.seeds=0
#   Multi-node: use slurm_multinode.sbatch or tpu_pod.sh with CONFIG=configs/advaug_sweep.py.
#   On a CPU add --config.multirun.strategy=loop (vmapped convolutions are slow on XLA:CPU,
#   see benchmarks/results/multirun_throughput_*.md).
set -euo pipefail  # PYTHON: the interpreter of the venv (default: python on PATH)
WORKDIR=${1:-/tmp/jaxgan_advaug_sweep}
shift $(( $# < 1 ? $# : 1 ))
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m jaxgan_lth.main --config=configs/advaug_sweep.py --workdir="$WORKDIR" "$@"
