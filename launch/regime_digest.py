"""``python launch/regime_digest.py WORKDIR OUT.json [STAGE]``: FID and D-overfitting curves.

Issue 28's regime search and studies: runs trained long on few images, evaluated every
``eval.every`` G steps. This writes the numbers docs/results.md plots from (nothing typed by
hand), for the stage folder ``WORKDIR/STAGE`` (default ``train``; e.g. ``imp/round_00``,
``ticket``): for every run of the stage (``STAGE/runs/<name>/`` of a swept stage, e.g. one per
seed, else the stage folder itself) the FID/KID history of its ``eval.json`` with the protocol,
D's accuracy on training reals, held-out reals and fakes from every log line of its
``metrics.jsonl``, and the final summary (``summary.json``: steps, wall time, densities) when
the run finished. Also the data and budget keys of ``WORKDIR/config.json``, the commit of the
checkout it is run from (run it from the worktree the run trained from) and the machine:
``benchmarks.common.machine()`` (the record of the benchmark result files) plus the load
average when written. A single run's curves are also at the top level (``fid_history``,
``d_overfitting``), the layout of the first regime digests.
"""

import json
import os
import subprocess
import sys

# the repository root, so the benchmarks' machine record (benchmarks/common.py) is importable
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

#: Keys of ``WORKDIR/config.json`` a digest records (the run's data, model and budget).
KEEP = {"data": ("name", "folder", "subset_count", "subset_fraction", "subset_selection",
                 "subset_seed", "heldout_split", "resolution"),
        "model": ("name", "g_channels", "d_channels"),
        "train": ("num_steps", "g_batch_size", "d_batch_size", "g_lr", "d_lr"),
        "diffaug": ("policy",), "ada": ("pipeline", "target", "kimg"),
        "advaug": ("mode", "networks", "step_size"),
        "eval": ("every", "num_samples", "reference_split"),
        "imp": ("rounds", "num_steps"), "ticket": ("num_steps", "mask_type"),
        "sweep": ("seeds", "stages", "strategy")}
#: Summary keys kept per finished run.
SUMMARY_KEYS = ("seed", "steps", "steps_this_session", "wall_time_s", "final_fid", "final_kid",
                "best_fid", "best_step", "diverged_at_step", "g_density", "d_density")


def run_curves(folder: str) -> dict:
    """The FID history, D diagnostic and summary of one run folder.

    Raises:
      FileNotFoundError: ``folder/eval.json`` or ``folder/metrics.jsonl`` missing.
    """
    with open(os.path.join(folder, "eval.json")) as f:
        ev = json.load(f)
    diag = []
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "d_acc_train_real" in row:
                diag.append({k: row[k] for k in ("step", "d_acc_train_real",
                                                 "d_acc_heldout_real", "d_acc_fake") if k in row})
    fid = [{k: h.get(k) for k in ("step", "kimg", "fid", "kid", "coverage_classes")}
           for h in ev["history"]]
    out = {"protocol": ev["history"][-1].get("protocol") if ev["history"] else None,
           "fid_history": fid, "d_overfitting": diag}
    summary = os.path.join(folder, "summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            s = json.load(f)
        out["summary"] = {k: s[k] for k in SUMMARY_KEYS if k in s}
    return out


def digest(workdir: str, stage: str = "train") -> dict:
    """The curves and settings of every run of ``workdir/stage`` (see the module docstring).

    Raises:
      FileNotFoundError: the stage folder holds no run with an ``eval.json``.
    """
    folder = os.path.join(workdir, stage)
    runs_dir = os.path.join(folder, "runs")
    names = (sorted(n for n in os.listdir(runs_dir)
                    if os.path.exists(os.path.join(runs_dir, n, "eval.json")))
             if os.path.isdir(runs_dir) else [])
    runs = ({n: run_curves(os.path.join(runs_dir, n)) for n in names} if names
            else {"": run_curves(folder)})
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    settings = {s: {k: cfg.get(s, {}).get(k) for k in ks} for s, ks in KEEP.items()}
    settings["data"]["folder"] = os.path.basename(str(settings["data"]["folder"] or ""))
    # the checkout the run trained from: run this from that (pinned) worktree
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout
    out = {"run": os.path.basename(os.path.normpath(workdir)), "stage": stage,
           "settings": settings, "commit": commit.strip(),
           "machine": {**common.machine(), "loadavg": open("/proc/loadavg").read().split()[:3]}}
    if list(runs) == [""]:
        out.update(runs[""])
    else:
        out["protocol"] = next(iter(runs.values()))["protocol"]
        out["runs"] = {n: {k: v for k, v in r.items() if k != "protocol"}
                       for n, r in runs.items()}
    return out


def main(argv) -> int:
    """Writes the digest of ``argv[0]`` (stage ``argv[2]``) to ``argv[1]``; 2: usage."""
    if len(argv) not in (2, 3):
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    out = digest(argv[0], *argv[2:])
    os.makedirs(os.path.dirname(os.path.abspath(argv[1])), exist_ok=True)
    with open(argv[1], "w") as f:
        json.dump(out, f, indent=1)
    runs = out.get("runs", {"": out})
    print(f"wrote {argv[1]}: {len(runs)} run(s), "
          f"{sum(len(r['fid_history']) for r in runs.values())} evaluations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
