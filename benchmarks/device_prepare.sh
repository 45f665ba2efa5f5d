#!/usr/bin/env bash
# Builds the ignored folders a device call carries (README "Benchmarks"):
#   wheels/                        ml_collections (pure Python; the only package the project
#                                  imports that the accelerator image lacks: absl-py and
#                                  PyYAML, its requirements, are there)
#   device_data/100-shot-obama/    the 100-shot folder of the short training run (~2.5 MB)
#
#   bash benchmarks/device_prepare.sh [FOLDER]    # FOLDER default data/100-shot-obama (python -m jaxgan_lth.data.fetch 100-shot-obama data/100-shot-obama)
#
# Needs a package index once (pip download); refuses to overwrite a non-empty
# device_data/100-shot-obama that differs from FOLDER.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
SRC=${1:-data/100-shot-obama}
VERSION=${ML_COLLECTIONS_VERSION:-1.1.0}
mkdir -p wheels
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 -d wheels "ml_collections==$VERSION"
if [ ! -d "$SRC" ]; then
  echo "device_prepare.sh: no image folder at $SRC (give the 100-shot folder as argument)" >&2
  exit 1
fi
DST=device_data/100-shot-obama
if [ -d "$DST" ] && [ -n "$(ls -A "$DST")" ]; then
  if ! diff -rq "$SRC" "$DST" >/dev/null; then
    echo "device_prepare.sh: $DST exists and differs from $SRC; remove it first" >&2
    exit 1
  fi
else
  mkdir -p "$DST" && cp -r "$SRC"/. "$DST"/
fi
du -sh wheels device_data
ls wheels
