#!/usr/bin/env bash
# The few-shot study of configs/study_fewshot.py (issue 28) on one 100-shot folder:
#   bash launch/study_fewshot.sh FOLDER ROOT [DIGESTS] [CONFIG_ARG]
#   e.g. bash launch/study_fewshot.sh data/100-shot-obama workdirs/fewshot_obama
#        bash launch/study_fewshot.sh data/100-shot-obama workdirs/fs_obama docs/results/fewshot shots=25,steps=3000
# FOLDER: a 100-shot folder you fetched (python -m jaxgan_lth.data.fetch obama data/100-shot-obama).
# Runs the arms baseline, diffaug, ada, ticket_da, ticket_da_adv one after the other (3 seeds
# each, one after the other; a re-run resumes where it stopped and skips a finished arm), and
# after every arm writes its digest DIGESTS/<folder name>/<arm>.json (default DIGESTS:
# ROOT/digests) with launch/regime_digest.py: per seed the FID/KID over G steps, D's accuracy
# on training and held-out reals, the final summary; the commit of this checkout and the
# machine. Run it from a worktree pinned to one commit, so every digest names the code it ran.
set -euo pipefail
cd "$(dirname "$0")/.."
folder="${1:?usage: launch/study_fewshot.sh FOLDER ROOT [DIGESTS] [CONFIG_ARG]}"
root="${2:?usage: launch/study_fewshot.sh FOLDER ROOT [DIGESTS] [CONFIG_ARG]}"
digests="${3:-$root/digests}"
arg="${4:-}"
[ -d "$folder" ] || { echo "no folder $folder: fetch one, e.g. python -m jaxgan_lth.data.fetch obama $folder" >&2; exit 2; }
py=".venv/bin/python"; [ -x "$py" ] || py=python
name="$(basename "$folder")"
mkdir -p "$root" "$digests/$name"
for arm in baseline diffaug ada ticket_da ticket_da_adv; do
  case "$arm" in baseline) stage=imp/round_00 ;; diffaug|ada) stage=train ;; *) stage=ticket ;; esac
  extra=()
  case "$arm" in ticket*) extra=(--config.ticket.imp_workdir="$root/baseline") ;; esac
  echo "== $(date -u +%FT%TZ) arm $arm ($name)"
  "$py" -m jaxgan_lth.main --config="configs/study_fewshot.py:arm=$arm${arg:+,$arg}" \
    --config.data.folder="$folder" --workdir="$root/$arm" \
    --config.eval.cache_dir="$root/fid_stats" "${extra[@]}"
  "$py" launch/regime_digest.py "$root/$arm" "$digests/$name/$arm.json" "$stage"
done
