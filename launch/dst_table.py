"""README table: dense, IMP ticket, static ERK, DST, NS and small dense on the CPU default.

Fashion-MNIST 10%, dcgan, at the same G density and G-step budget.

Every row is one ``python -m jaxgan_lth.main`` run of ``configs/default.py:base`` in its own
workdir under ``--root`` (re-running resumes / skips finished rows), with the same
augmentation (DiffAugment ``translation,cutout``, no AdvAug) and evaluation (FID/KID of the EMA
G, the default protocol) for all rows; the G density of the sparse rows is the IMP ticket's,
``(1 - g_ratio) ** rounds`` = 0.45^2 = 0.2025 (2 IMP rounds pruning 55% each):

=============  ============================================================================
dense          stage ``train``, ``--steps`` G steps
IMP ticket     stages ``imp,ticket``: 2 rounds of ``--imp_steps``, the ticket ``--steps``
static ERK     stage ``dst``, ``dst.updates=False``
DST            stage ``dst`` (G explored: gradient growth; D dense), ``update_frequency``
               ``--steps // 12`` (12 updates, as the default config's 100 of 1,200)
NS             stage ``ticket``, ``mask_type=slimming`` (its dense L1 run: ``--imp_steps``)
small dense    stage ``ticket``, ``mask_type=small_dense`` (prunable-count matched width)
=============  ============================================================================

    python launch/dst_table.py --root /tmp/dst_table [--steps 1200] [--imp_steps 400]

Writes ``ROOT/dst_table.md`` (and prints it): G density, G steps of the row's final training,
extra G steps spent before it (IMP rounds, NS's dense run), FID, KID, wall time of the stages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rows(steps: int, imp_steps: int) -> list[tuple[str, str, list[str]]]:
    """``(label, stage key of summary.json, overrides)`` of the six rows."""
    common = [f"--config.train.num_steps={steps}", f"--config.ticket.num_steps={steps}",
              f"--config.dst.num_steps={steps}", f"--config.imp.num_steps={imp_steps}",
              "--config.imp.rounds=2", "--config.sparsity.g_ratio=0.55",
              "--config.diffaug.policy=translation,cutout",
              "--config.ticket.diffaug.policy=translation,cutout",
              "--config.ticket.advaug.mode=none", "--config.dst.g_density=0.2025",
              f"--config.dst.update_frequency={max(1, steps // 12)}"]
    return [
        ("dense", "train", common + ["--config.stages=train"]),
        ("IMP ticket (2 rounds x 55%)", "ticket", common + ["--config.stages=imp,ticket"]),
        ("static ERK", "dst", common + ["--config.stages=dst", "--config.dst.updates=False"]),
        ("DST (STU-GAN: G explored, gradient growth)", "dst", common + ["--config.stages=dst"]),
        ("network slimming", "ticket",
         common + ["--config.stages=ticket", "--config.ticket.mask_type=slimming"]),
        ("small dense", "ticket",
         common + ["--config.stages=ticket", "--config.ticket.mask_type=small_dense"]),
    ]


def main():
    """Runs (or skips finished) rows, then writes and prints the markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--imp_steps", type=int, default=400)
    args = p.parse_args()
    os.makedirs(args.root, exist_ok=True)
    cache = os.path.join(args.root, "fid_stats")  # reference statistics computed once
    out = []
    for i, (label, stage, overrides) in enumerate(rows(args.steps, args.imp_steps)):
        workdir = os.path.join(args.root, f"row{i}")
        summary_path = os.path.join(workdir, "summary.json")
        done = os.path.exists(os.path.join(workdir, "done"))
        if not done:
            cmd = [sys.executable, "-m", "jaxgan_lth.main", "--config=configs/default.py:base",
                   f"--workdir={workdir}", f"--config.eval.cache_dir={cache}", *overrides]
            print(" ".join(cmd), flush=True)
            t0 = time.time()
            subprocess.run(cmd, cwd=REPO, check=True)
            with open(os.path.join(workdir, "done"), "w") as f:
                f.write(f"{time.time() - t0:.0f}\n")
        with open(summary_path) as f:
            summary = json.load(f)
        with open(os.path.join(workdir, "done")) as f:
            wall = float(f.read())
        s = summary["stages"][stage]
        extra = ""
        if label.startswith("IMP"):
            extra = f"{2 * args.imp_steps:,} (2 IMP rounds)"
        elif label == "network slimming":
            extra = f"{args.imp_steps:,} (dense L1 run)"
        dens = s.get("g_density", 1.0)
        if label == "small dense":
            dens = f"1.0 (width {s['g_channels']} of 64: {s['params']:,} vs {s['target_params']:,}"\
                   " prunable weights)"
        else:
            dens = f"{dens:.4f}"
        out.append(f"| {label} | {dens} | {s['steps']:,} | {extra or '-'} | "
                   f"{s['final_fid']:.1f} | {s['final_kid']:.3f} +- {s['final_kid_std']:.3f} | "
                   f"{wall:.0f} s |")
    head = ("| row | G density | G steps | G steps before | FID | KID | wall time (all stages) |\n"
            "|---|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(out) + "\n"
    with open(os.path.join(args.root, "dst_table.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
