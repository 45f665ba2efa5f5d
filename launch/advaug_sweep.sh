#!/usr/bin/env bash
# AdvAug strength sweep: configs/advaug_sweep.py trains 8 runs of the dense stage (PGD step
# sizes 0, 0.01, 0.05, 0.1 x seeds 0, 1) as one sweep; each run writes
# WORKDIR/train/runs/<name>/ (metrics, samples, summary.json), the table is WORKDIR/train/sweep.md.
# Usage: launch/advaug_sweep.sh [WORKDIR] [--config.key=value ...]
#   e.g. launch/advaug_sweep.sh /data/sweep --config.sweep.hparams="adv_step_size=0.0,0.2"
#   Other sweeps: --config.sweep.hparams="adv_lam=0.1,0.3,0.5,0.7" --config.sweep.seeds=0
#   Multi-node: use slurm_multinode.sbatch or tpu_pod.sh with CONFIG=configs/advaug_sweep.py.
#   On GPUs add --config.sweep.strategy=vmap (one jax.vmap program for all runs); the default
#   "loop" suits CPUs (vmapped convolutions are slow on XLA:CPU, see
#   benchmarks/results/multirun_throughput_*.md).
set -euo pipefail  # PYTHON: the interpreter of the venv (default: python on PATH)
WORKDIR=${1:-/tmp/jaxgan_advaug_sweep}
shift $(( $# < 1 ? $# : 1 ))
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m jaxgan_lth.main --config=configs/advaug_sweep.py --workdir="$WORKDIR" "$@"
