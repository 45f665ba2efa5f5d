#!/usr/bin/env bash
# The equal-budget study of configs/study_fashion_mnist.py for one data fraction or N-shot subset:
#   bash launch/study.sh FRACTION|shots=N ROOT [--config.x=y ...]
#   e.g. bash launch/study.sh 0.01 workdirs/study_1pct
#        bash launch/study.sh shots=100 workdirs/study_100shot   (issue 28's regime: the recipe)
# Runs the arms one after the other (each resumes where it stopped when re-run), then writes
# ROOT/report/report.md with python -m jaxgan_lth.report. The FID reference statistics are
# shared by both fractions (ROOT/../study_fid_stats). Extra flags go to every arm. Every
# completed invocation appends its wall time to ROOT/wall_times.jsonl; an interrupted one leaves
# its heartbeat ROOT/.invocation_START.json (start and last time seen, to the minute), which
# python -m jaxgan_lth.proj.study counts too.
set -euo pipefail
cd "$(dirname "$0")/.."
fraction="${1:?usage: launch/study.sh FRACTION|shots=N ROOT [flags]}"
root="${2:?usage: launch/study.sh FRACTION|shots=N ROOT [flags]}"
case "$fraction" in shots=*) spec="$fraction" ;; *) spec="fraction=$fraction" ;; esac
shift 2
py=".venv/bin/python"; [ -x "$py" ] || py=python
cache="$(dirname "$root")/study_fid_stats"
mkdir -p "$root"
start=$(date +%s)
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# Heartbeat of this invocation: rewritten every 60 s, removed when it completes. A study killed
# mid-way (e.g. at the end of a session) leaves it behind, and python -m jaxgan_lth.proj.study adds
# its last_seen - start to the wall time of the resumed study.
beat="$root/.invocation_$start.json"
( while kill -0 $$ 2>/dev/null; do  # stops with the launcher, even one killed with SIGKILL
    printf '{"start": %d, "last_seen": %d, "fraction": "%s", "commit": "%s"}\n' \
      "$start" "$(date +%s)" "$fraction" "$commit" > "$beat.tmp" && mv "$beat.tmp" "$beat"
    sleep 60
  done ) &
beat_pid=$!
trap 'kill $beat_pid 2>/dev/null || true' EXIT
for arm in imp dense_da dense_da_adv ticket ticket_random ticket_omp ticket_da ticket_da_adv; do
  extra=()
  case "$arm" in ticket*) extra=(--config.ticket.imp_workdir="$root/imp") ;; esac
  echo "== $(date -u +%FT%TZ) arm $arm (fraction $fraction)"
  "$py" -m jaxgan_lth.main --config="configs/study_fashion_mnist.py:$spec,arm=$arm" \
    --workdir="$root/$arm" --config.eval.cache_dir="$cache" "${extra[@]}" "$@"
done
end=$(date +%s)
echo "== study wall time: $(( end - start )) s (this invocation)"
# one line per completed invocation: python -m jaxgan_lth.proj.study sums them into docs/results.md
printf '{"start": %d, "end": %d, "seconds": %d, "fraction": "%s", "loadavg_end": "%s", "commit": "%s"}\n' \
  "$start" "$end" "$(( end - start ))" "$fraction" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$commit" >> "$root/wall_times.jsonl"
kill $beat_pid 2>/dev/null || true
rm -f "$beat"
"$py" -m jaxgan_lth.report "$root"/imp "$root"/dense_da "$root"/dense_da_adv "$root"/ticket \
  "$root"/ticket_random "$root"/ticket_omp "$root"/ticket_da "$root"/ticket_da_adv \
  --out="$root/report"
