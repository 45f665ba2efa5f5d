#!/usr/bin/env bash
# Prints the pip extra of jaxgan_lth that fits this machine's NVIDIA driver: `cuda13` when
# `nvidia-smi` reports a CUDA driver version >= 13, else `cuda12` (JAX's CUDA 12 and CUDA 13
# plugin wheels, jax[cuda12] / jax[cuda13]; a CUDA 12 driver cannot run CUDA 13 wheels, a
# CUDA 13 driver runs both, the 13 wheels being the ones JAX builds against it).
# Without a working nvidia-smi it prints to stderr which extra to choose by hand and exits 1.
# Used by launch/install.sh cuda; installs nothing.
set -euo pipefail
choose='choose by hand: `bash launch/install.sh cuda12` (NVIDIA driver for CUDA 12.x) or `bash launch/install.sh cuda13` (driver for CUDA 13.x or newer; `nvidia-smi` prints "CUDA Version" in its header)'
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "install.sh cuda: nvidia-smi not found, so the CUDA driver version is unknown; $choose." >&2
  exit 1
fi
if ! header="$(nvidia-smi 2>/dev/null)"; then
  echo "install.sh cuda: nvidia-smi failed (no driver or no GPU?); $choose." >&2
  exit 1
fi
major="$(printf '%s\n' "$header" | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)"
if [ -z "$major" ]; then
  echo "install.sh cuda: nvidia-smi printed no \"CUDA Version: X.Y\"; $choose." >&2
  exit 1
fi
if [ "$major" -ge 13 ]; then echo cuda13; else echo cuda12; fi
