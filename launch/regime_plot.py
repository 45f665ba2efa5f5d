"""``python launch/regime_plot.py OUT.png DIGEST.json [DIGEST.json ...]``: the regime's curves.

Also writes ``OUT.md`` (the PNG's name with ``.md``): per digest a table of every evaluation
(G step, FID of each run, their mean) with D's accuracy on training and held-out reals at that
step (the mean over the runs of the ``SMOOTH`` log points up to it), the best FID's step and
the verdicts of issue 28's regime test: the final gap between the two accuracies (at least
``MIN_GAP``) and whether the mean FID rose after its best (the last evaluation above the best
by more than ``MIN_RISE`` of the best: a 500-sample FID moves by a few percent between
neighbouring evaluations without any trend, so a smaller rise is not counted).

Draws, from digests of ``launch/regime_digest.py`` (nothing typed by hand), two panels side by
side: FID against G steps (one line per digest, the mean over its runs with each run's curve
faint; the protocol of the first digest in the title) and D's accuracy on its training reals
and on held-out reals (a D-overfitting diagnostic: ``mean(D(x) > 0)`` over a batch, as logged in
``metrics.jsonl``), smoothed by a running mean over ``SMOOTH`` log points. The FID-over-steps
panel shows overfitting as a rise after the best; the accuracy panel as a gap.
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Log points of the running mean of the D-accuracy curves (raw curves are batch-noisy).
SMOOTH = 5
#: Issue 28's regime: held-out real accuracy at least this far below training real accuracy.
MIN_GAP = 0.15
#: Rise of the last mean FID over the best, as a fraction of the best, counted as a rise (ours).
MIN_RISE = 0.05


def _runs(d: dict) -> list[dict]:
    return list(d["runs"].values()) if "runs" in d else [d]


def _smooth(y: np.ndarray) -> np.ndarray:
    k = min(SMOOTH, len(y)) or 1
    return np.convolve(y, np.ones(k) / k, mode="valid")


def label(d: dict) -> str:
    """A short label of a digest: data set, training images, augmentation, stage."""
    data, s = d["settings"]["data"], d["settings"]
    name = data.get("folder") or data.get("name")
    aug = s.get("diffaug", {}).get("policy") or ""
    if (s.get("ada") or {}).get("pipeline"):
        aug = (aug + " " if aug else "") + "ADA " + s["ada"]["pipeline"]
    return f"{name} n={data.get('subset_count')} {d.get('stage', 'train')}" + (
        f" ({aug})" if aug else " (no aug.)")


def plot(digests: list[dict], out: str) -> None:
    """Writes the two panels of ``digests`` to ``out`` (PNG)."""
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(11, 4))
    for i, d in enumerate(digests):
        color = f"C{i}"
        runs = _runs(d)
        curves = [([h["step"] for h in r["fid_history"]], [h["fid"] for h in r["fid_history"]])
                  for r in runs if r["fid_history"]]
        for steps, fids in curves:
            if len(runs) > 1:
                ax_f.plot(steps, fids, color=color, alpha=0.25, lw=1)
        n = min(len(c[0]) for c in curves)
        mean = np.mean([c[1][:n] for c in curves], axis=0)
        ax_f.plot(curves[0][0][:n], mean, "o-", color=color,
                  label=label(d) + f", {len(runs)} run(s)")
        for r in runs[:1]:
            pts = r["d_overfitting"]
            steps = np.array([p["step"] for p in pts])
            for key, style in (("d_acc_train_real", "-"), ("d_acc_heldout_real", "--")):
                y = _smooth(np.array([p[key] for p in pts], dtype=float))
                ax_d.plot(steps[len(steps) - len(y):], y, style, color=color,
                          label=f"{label(d)}: {key[6:].replace('_', ' ')}")
    proto = digests[0].get("protocol") or {}
    ax_f.set_title(f"FID: {proto.get('generated')} {proto.get('generator', '')} samples vs "
                   f"{proto.get('reference')} ({proto.get('reference_images')} images)",
                   fontsize=9)
    ax_f.set_xlabel("G step")
    ax_f.set_ylabel("FID")
    ax_d.set_title(f"D accuracy on reals (running mean of {SMOOTH} logs; first run)", fontsize=9)
    ax_d.set_xlabel("G step")
    ax_d.set_ylim(-0.02, 1.02)
    for ax in (ax_f, ax_d):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _acc_at(runs: list[dict], step: int, key: str) -> float:
    vals = []
    for r in runs:
        pts = [p[key] for p in r["d_overfitting"] if p["step"] <= step][-SMOOTH:]
        if pts:
            vals.append(float(np.mean(pts)))
    return float(np.mean(vals)) if vals else float("nan")


def table(d: dict) -> list[str]:
    """Markdown lines of one digest: FID and D accuracy per evaluation, then the verdicts."""
    runs = _runs(d)
    names = list(d["runs"]) if "runs" in d else [d.get("run", "run")]
    steps = sorted({h["step"] for r in runs for h in r["fid_history"]})
    fid = {(i, h["step"]): h["fid"] for i, r in enumerate(runs) for h in r["fid_history"]}
    lines = [f"### {label(d)} (`{d.get('run')}`, commit {d.get('commit')})", "",
             "| G step | " + " | ".join(f"FID {n}" for n in names) + " | mean FID | "
             "D acc. train reals | D acc. held-out reals |",
             "|---" * (len(names) + 4) + "|"]
    means = []
    for st in steps:
        vals = [fid.get((i, st)) for i in range(len(runs))]
        full = [v for v in vals if v is not None]
        m = float(np.mean(full)) if len(full) == len(vals) else None
        means.append((st, m))
        cells = " | ".join("" if v is None else f"{v:.1f}" for v in vals)
        lines.append(f"| {st} | {cells} | {'' if m is None else f'{m:.1f}'} | "
                     f"{_acc_at(runs, st, 'd_acc_train_real'):.2f} | "
                     f"{_acc_at(runs, st, 'd_acc_heldout_real'):.2f} |")
    done = [(st, m) for st, m in means if m is not None]
    last = max(p["step"] for r in runs for p in r["d_overfitting"])
    gap = _acc_at(runs, last, "d_acc_train_real") - _acc_at(runs, last, "d_acc_heldout_real")
    lines.append("")
    if done:
        best = min(done, key=lambda t: t[1])
        rise = done[-1][1] / best[1] - 1.0
        verdict = "rose" if rise > MIN_RISE else "did not rise"
        lines.append(f"Best mean FID {best[1]:.1f} at G step {best[0]}; last {done[-1][1]:.1f} "
                     f"at step {done[-1][0]} ({100 * rise:+.1f}%): FID {verdict} after its best "
                     f"(a rise counts above {100 * MIN_RISE:.0f}%).")
    lines.append(f"D accuracy gap (train - held-out reals) at step {last}: {gap:.2f} "
                 f"({'at least' if gap >= MIN_GAP else 'below'} {MIN_GAP}).")
    return lines + [""]


def main(argv) -> int:
    """Plots ``argv[1:]`` into ``argv[0]``; returns the exit status (2: usage)."""
    if len(argv) < 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    digests = []
    for path in argv[1:]:
        with open(path) as f:
            digests.append(json.load(f))
    plot(digests, argv[0])
    md = os.path.splitext(argv[0])[0] + ".md"
    with open(md, "w") as f:
        f.write("\n".join(["<!-- written by launch/regime_plot.py from "
                            + ", ".join(os.path.basename(p) for p in argv[1:]) + " -->", ""]
                           + [line for d in digests for line in table(d)]))
    print(f"wrote {argv[0]} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
