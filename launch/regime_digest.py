"""``python launch/regime_digest.py WORKDIR OUT.json``: FID and D-overfitting curves of one run.

Issue 28's regime search: a dense run trained long on few images, evaluated every
``eval.every`` G steps. This writes the numbers docs/results.md plots from (nothing typed by
hand): the FID/KID history of ``WORKDIR/train/eval.json`` with its protocol, D's accuracy on
training reals, held-out reals and fakes from every log line of ``WORKDIR/train/metrics.jsonl``,
the data and budget keys of ``WORKDIR/config.json``, the commit of the checkout it is run from
(run it from the worktree the run trained from) and the machine: ``benchmarks.common.machine()``
(the record of the benchmark result files) plus the load average when written.
"""

import json
import os
import subprocess
import sys

# the repository root, so the benchmarks' machine record (benchmarks/common.py) is importable
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402


def digest(workdir: str) -> dict:
    """The curves and settings of one run (see the module docstring).

    Raises:
      FileNotFoundError: ``WORKDIR/train/eval.json`` or ``metrics.jsonl`` missing.
    """
    stage = os.path.join(workdir, "train")
    with open(os.path.join(stage, "eval.json")) as f:
        ev = json.load(f)
    diag = []
    with open(os.path.join(stage, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "d_acc_train_real" in row:
                diag.append({k: row[k] for k in ("step", "d_acc_train_real",
                                                 "d_acc_heldout_real", "d_acc_fake") if k in row})
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    keep = {"data": ("name", "folder", "subset_count", "subset_fraction", "subset_selection",
                     "subset_seed", "heldout_split", "resolution"),
            "model": ("name", "g_channels", "d_channels"),
            "train": ("num_steps", "g_batch_size", "d_batch_size", "g_lr", "d_lr"),
            "diffaug": ("policy",), "eval": ("every", "num_samples", "reference_split")}
    settings = {s: {k: cfg.get(s, {}).get(k) for k in ks} for s, ks in keep.items()}
    settings["data"]["folder"] = os.path.basename(str(settings["data"]["folder"] or ""))
    # the checkout the run trained from: run this from that (pinned) worktree
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout
    fid = [{k: h.get(k) for k in ("step", "kimg", "fid", "kid", "coverage_classes")}
           for h in ev["history"]]
    return {"run": os.path.basename(os.path.normpath(workdir)), "settings": settings,
            "protocol": ev["history"][-1].get("protocol") if ev["history"] else None,
            "fid_history": fid, "d_overfitting": diag, "commit": commit.strip(),
            "machine": {**common.machine(),
                        "loadavg": open("/proc/loadavg").read().split()[:3]}}


def main(argv) -> int:
    """Writes the digest of ``argv[0]`` to ``argv[1]``; returns the exit status (2: usage)."""
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    out = digest(argv[0])
    os.makedirs(os.path.dirname(os.path.abspath(argv[1])), exist_ok=True)
    with open(argv[1], "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {argv[1]}: {len(out['fid_history'])} evaluations, "
          f"{len(out['d_overfitting'])} diagnostic points")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
