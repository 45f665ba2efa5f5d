#!/usr/bin/env bash
# A Cloud TPU VM pod slice (e.g. v4-32: 4 workers): the same command on every worker
# (--worker=all). JAXGAN_DISTRIBUTED=1 makes parallel.initialize_distributed() call
# jax.distributed.initialize(), which finds the workers from the TPU VM metadata.
# Prerequisites on every worker: this repository at ~/jaxgan_lth with its venv (pip install
# -e '.[tfds,tensorboard]' 'jax[tpu]'; tfds reads the CIFAR configs' data, or use
# --config.data.name=cifar10_python with the official tarball and plain -e .), and WORKDIR on storage shared by all workers (a Filestore/NFS mount or a
# gcsfuse mount of a bucket: the PNG/JSON writers use local file APIs, so not a gs:// URL).
# Usage: TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh [CONFIG] [WORKDIR] [overrides]
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
CONFIG=${1:-configs/sngan_cifar10.py}
WORKDIR=${2:-/mnt/shared/jaxgan_runs/tpu_pod}
shift $(( $# < 2 ? $# : 2 ))
EXTRA=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  cd ~/jaxgan_lth && source .venv/bin/activate &&
  JAXGAN_DISTRIBUTED=1 python -m jaxgan_lth.main \
    --config=$CONFIG --workdir=$WORKDIR $EXTRA"
