#!/usr/bin/env bash
# The CPU preset of configs/stylegan2_fewshot.py (32x32 StyleGAN2, batch 8, DiffAugment
# color,translation,cutout, lazy R1) on the two 100-shot folders, one after the other:
#   bash launch/fewshot_cpu.sh [ROOT] [--config.x=y ...]     (ROOT defaults to workdirs/fewshot_cpu)
# Each run resumes where it stopped when re-run. Writes ROOT/<name>/wall_time.json per completed
# run, copies each run's last EMA sample grid to docs/fewshot/<name>.png and prints README's
# table (FID/KID with their protocol, kimg, wall time, load average) from the runs' summaries.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-workdirs/fewshot_cpu}"
[ $# -gt 0 ] && shift
py=".venv/bin/python"; [ -x "$py" ] || py=python
data="${FEWSHOT_DATA:-../shared/data/few-shot}"
for name in obama grumpy_cat; do
  wd="$root/$name"
  start=$(date +%s)
  echo "== $(date -u +%FT%TZ) 100-shot-$name -> $wd"
  "$py" -m jaxgan_lth.main --config=configs/stylegan2_fewshot.py:cpu \
    --config.data.folder="$data/100-shot-$name" --workdir="$wd" "$@"
  end=$(date +%s)
  printf '{"seconds": %d, "loadavg_end": "%s", "commit": "%s"}\n' "$(( end - start ))" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    > "$wd/wall_time.json"
done
"$py" - "$root" <<'EOF'
import glob, json, os, sys
from PIL import Image

root = sys.argv[1]
print("| data | G steps | kimg | FID | KID x 10^3 | protocol | wall time | load avg. at end |")
print("|---|---:|---:|---:|---:|---|---:|---|")
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
          f"training x-flips {p['x_flips']} | {w['seconds'] / 60:.1f} min | {w['loadavg_end']} |")
EOF
