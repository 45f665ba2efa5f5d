#!/usr/bin/env bash
# The CPU preset of configs/stylegan2_fewshot.py (32x32 StyleGAN2, batch 16, DiffAugment, lazy R1)
# on the two 100-shot folders:
#   bash launch/fewshot_cpu.sh [ROOT] [--config.x=y ...]     (ROOT defaults to workdirs/fewshot_cpu)
# With 2+ cores and taskset (util-linux), the two runs train at once, each pinned to one core
# (one run does not keep two cores busy: 1.7 G steps/s alone on one core of the 2-core EPYC);
# FEWSHOT_JOBS=1 runs them one after the other on all cores. Each run resumes where it stopped
# when re-run. Writes ROOT/<name>/wall_time.json per completed run, copies each run's last EMA
# sample grid to docs/fewshot/<name>.png and prints README's table (FID/KID with their
# protocol, kimg, wall time, cores, load average) from the runs' summaries.
# The data: FEWSHOT_DATA/100-shot-{obama,grumpy_cat} (FEWSHOT_DATA defaults to data/); a folder
# that is not there is fetched first with `python -m jaxgan_lth.data.fetch` (needs internet; the
# fetch's error says how to put the folder there by hand otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-workdirs/fewshot_cpu}"
[ $# -gt 0 ] && shift
py=".venv/bin/python"; [ -x "$py" ] || py=python
data="${FEWSHOT_DATA:-data}"
jobs="${FEWSHOT_JOBS:-2}"
if [ "$jobs" != 1 ] && { [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; }; then
  jobs=1
fi

train() {  # train NAME CORE|"" ARGS...: one run, then its wall_time.json
  local name="$1" core="$2" wd="$root/$1" start end pin=()
  shift 2
  [ -n "$core" ] && pin=(taskset -c "$core")
  start=$(date +%s)
  echo "== $(date -u +%FT%TZ) 100-shot-$name -> $wd${core:+ (core $core)}"
  "${pin[@]}" "$py" -m jaxgan_lth.main --config=configs/stylegan2_fewshot.py:cpu \
    --config.data.folder="$data/100-shot-$name" --workdir="$wd" "$@"
  end=$(date +%s)
  printf '{"seconds": %d, "cores": "%s", "loadavg_end": "%s", "commit": "%s"}\n' \
    "$(( end - start ))" "${core:-all}" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$wd/wall_time.json"
}

for name in obama grumpy_cat; do
  [ -d "$data/100-shot-$name" ] ||
    "$py" -m jaxgan_lth.data.fetch "100-shot-$name" "$data/100-shot-$name"
done

if [ "$jobs" = 1 ]; then
  train obama "" "$@"
  train grumpy_cat "" "$@"
else
  mkdir -p "$root"
  train obama 0 "$@" > "$root/obama.log" 2>&1 &
  p1=$!
  train grumpy_cat 1 "$@" > "$root/grumpy_cat.log" 2>&1 &
  p2=$!
  echo "training both folders at once, one core each; logs: $root/{obama,grumpy_cat}.log"
  rc=0
  wait "$p1" || rc=$?
  wait "$p2" || rc=$?
  [ "$rc" = 0 ] || { echo "a run failed (rc $rc); see the logs above" >&2; exit "$rc"; }
fi
"$py" - "$root" <<'EOF'
import glob, json, os, sys
from PIL import Image

root = sys.argv[1]
print("| data | G steps | kimg | FID | KID x 10^3 | protocol | wall time | cores | load avg. at end |")
print("|---|---:|---:|---:|---:|---|---:|---|---|")
os.makedirs("docs/fewshot", exist_ok=True)
for name in ("obama", "grumpy_cat"):
    wd = os.path.join(root, name)
    s = json.load(open(os.path.join(wd, "summary.json")))["stages"]["train"]
    ev = json.load(open(os.path.join(wd, "train", "eval.json")))
    last = (ev.get("history") if isinstance(ev, dict) else ev)[-1]
    p = s["fid_protocol"]
    w = json.load(open(os.path.join(wd, "wall_time.json")))
    grid = sorted(glob.glob(os.path.join(wd, "train", "samples", "step_*.png")))[-1]
    with Image.open(grid) as im:
        im.save(f"docs/fewshot/{name}.png", optimize=True)
    print(f"| 100-shot {name} | {s['steps']} | {last['kimg']:g} | {s['final_fid']:.2f} | "
          f"{s['final_kid'] * 1e3:.2f} | {p['generated']} {p['generator']} samples vs the "
          f"{p['reference_images']} images of `{p['reference']}`, {p['resolution']} px, "
          f"training x-flips {p['x_flips']} | {w['seconds'] / 60:.1f} min | {w.get('cores', 'all')} | "
          f"{w['loadavg_end']} |")
EOF
