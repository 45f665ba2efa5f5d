"""``python -m jaxgan_lth.report DIR [DIR ...] [--out OUT]``: tables and plots of finished runs.

Reads what the loop and the pipeline wrote (nothing is recomputed), for one or several workdirs:

* every run's ``summary.json`` (seed, swept strengths, G steps, stage, IMP round, G and D
  density of its mask, final FID/KID and the FID protocol), ``eval.json`` (FID/KID over
  steps), ``metrics.jsonl`` (losses and the D-overfitting diagnostic over steps) and its last
  sample grid ``samples/step_*.png``;

and writes into OUT (default ``DIR/report`` for one workdir):

* ``report.md``: the FID protocol; one row per *group* of runs that differ only in seed
  (workdir, stage, swept strengths) with G/D density, G steps, n and FID / KID as mean ± std
  over the seeds (std with ddof = 1, the sample standard deviation; "-" when n = 1), and on
  Fashion-MNIST the class-coverage diagnostic (classes holding >= 2% of the EMA samples, mean
  classifier confidence; :mod:`jaxgan_lth.evaluation.coverage`); then one row per run (with
  its class histogram);
* ``report.json``: the same numbers unrounded, and the data of every plot;
* PNGs made with matplotlib: ``fid_vs_density.png`` (FID against G density over IMP rounds,
  mean ± std over seeds), ``fid_over_steps.png`` and ``kid_over_steps.png`` (every evaluation
  of every run), ``d_overfitting.png`` (D accuracy on training reals, held-out reals and fakes
  over steps, mean over seeds, one panel per group: the diagnostic of Chen et al., NeurIPS 2021,
  Fig. 2) and ``samples.png`` (the last sample grid of each group's first seed, side by side).

FIDs are only comparable under one protocol (generated count, reference set, network), so
runs whose protocols differ are refused with both named.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import sys
from typing import Any, Sequence

import ml_collections
import numpy as np
from absl import logging

from jaxgan_lth import io_utils
from jaxgan_lth import stages as stages_lib

__all__ = ["Run", "Group", "load_runs", "group_runs", "check_protocols", "write_report", "main"]

#: The stage folders a run can live in (``<stage>`` or ``<stage>/runs/<name>``).
_STAGE_RE = re.compile(r"^(?P<stage>.+?)(?:/runs/(?P<run>[^/]+))?$")


@dataclasses.dataclass
class Run:
    """One run read from its folder.

    Attributes:
      workdir: the workdir's label (its folder name).
      stage: the stage folder relative to the workdir, e.g. ``"train"``, ``"imp/round_02"``.
      name: the run's name (``seed1``, ``seed0_adv_step_size0.01``).
      path: the run's folder.
      summary: its ``summary.json``.
      history: its FID/KID records over steps (``eval.json``), each ``{"step", "fid", ...}``.
      metrics: its logged metrics over steps (``metrics.jsonl``).
      last_samples: path of its last sample grid PNG, or None.
    """

    workdir: str
    stage: str
    name: str
    path: str
    summary: dict
    history: list
    metrics: list
    last_samples: str | None

    @property
    def seed(self) -> int:
        """The run's PRNG seed."""
        return int(self.summary["seed"])

    @property
    def swept(self) -> dict:
        """Its swept strengths ``{name: value}`` (empty unless the stage was a sweep)."""
        return dict(self.summary.get("swept") or {})

    @property
    def fid(self) -> float | None:
        """FID at the end of the run (None without evaluation)."""
        return self.summary.get("final_fid")

    @property
    def kid(self) -> float | None:
        """KID at the end of the run (None without evaluation)."""
        return self.summary.get("final_kid")


@dataclasses.dataclass
class Group:
    """Runs that differ only in seed: one row of the summary table.

    Attributes:
      workdir, stage: as :class:`Run`.
      swept: the swept strengths shared by the runs.
      runs: the runs, ordered by seed.
    """

    workdir: str
    stage: str
    swept: dict
    runs: list

    @property
    def label(self) -> str:
        """``workdir/stage`` plus the swept strengths."""
        sw = " ".join(f"{k}={format(v, 'g')}" for k, v in self.swept.items())
        return f"{self.workdir}/{self.stage}" + (f" {sw}" if sw else "")

    def stat(self, key: str) -> tuple[float, float, int]:
        """``(mean, std, n)`` of summary value ``key`` over the runs that have it.

        std is the sample standard deviation (numpy ``ddof=1``); nan when n < 2.
        """
        vals = np.asarray([r.summary[key] for r in self.runs
                           if r.summary.get(key) is not None], np.float64)
        if vals.size == 0:
            return float("nan"), float("nan"), 0
        std = float(np.std(vals, ddof=1)) if vals.size > 1 else float("nan")
        return float(np.mean(vals)), std, int(vals.size)

    def first(self, key: str) -> Any:
        """``key`` of the first run's summary (densities and steps are shared by the group)."""
        return self.runs[0].summary.get(key)


def _run_dirs(workdir: str) -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(workdir, "**", "summary.json"), recursive=True)):
        d = os.path.dirname(path)
        if os.path.normpath(d) == os.path.normpath(workdir):
            continue  # DIR/summary.json is the pipeline's, not a run's
        if "best" in os.path.relpath(d, workdir).split(os.sep):
            continue
        out.append(d)
    return out


def missing_stages(workdir: str) -> list[str]:
    """The stages of ``DIR/config.json`` without a finished run (IMP rounds as ``imp/round_XX``).

    The folders are each listed stage's :meth:`jaxgan_lth.stages.Stage.run_folders` (a name no
    registered stage has: its folder of that name). A finished run wrote ``summary.json`` in the
    stage folder (or in its ``runs/<name>``).
    """
    cfg = ml_collections.ConfigDict(
        io_utils.read_json(os.path.join(workdir, "config.json")) or {})
    names = [x.strip() for x in str(cfg.get("stages", "")).split(",") if x.strip()]
    folders = [rel for n in names for rel in (
        stages_lib.get(n).run_folders(cfg) if n in stages_lib.REGISTRY else [n])]

    def finished(rel):
        d = os.path.join(workdir, rel)
        return (os.path.isfile(os.path.join(d, "summary.json")) or
                bool(glob.glob(os.path.join(d, "runs", "*", "summary.json"))))

    return [rel for rel in folders if not finished(rel)]


def load_runs(workdir: str, label: str | None = None) -> list[Run]:
    """Every run of a workdir that wrote a ``summary.json``.

    Args:
      workdir: a folder written by ``python -m jaxgan_lth.main``.
      label: the name used in tables (default: the folder's basename).

    Raises:
      ValueError: ``workdir`` is not a folder, has no ``config.json`` (not a workdir) or holds
        no finished run; each names the folder.
    """
    if not os.path.isdir(workdir):
        raise ValueError(f"{workdir!r} is not a folder; expected a workdir of "
                         "python -m jaxgan_lth.main.")
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        raise ValueError(f"{workdir!r} is not a jaxgan_lth workdir (it has no config.json); "
                         "expected the --workdir of python -m jaxgan_lth.main.")
    label = label or os.path.basename(os.path.normpath(workdir))
    runs = []
    for d in _run_dirs(workdir):
        summary = io_utils.read_json(os.path.join(d, "summary.json")) or {}
        if "seed" not in summary or "steps" not in summary:
            continue
        rel = os.path.relpath(d, workdir).replace(os.sep, "/")
        m = _STAGE_RE.match(rel)
        stage, name = m.group("stage"), m.group("run") or summary.get("run") or "run"
        grids = sorted(glob.glob(os.path.join(d, "samples", "step_*.png")))
        runs.append(Run(workdir=label, stage=stage, name=name, path=d, summary=summary,
                        history=(io_utils.read_json(os.path.join(d, "eval.json")) or {}).get(
                            "history", []),
                        metrics=io_utils.read_jsonl(os.path.join(d, "metrics.jsonl")),
                        last_samples=grids[-1] if grids else None))
    missing = missing_stages(workdir)
    if not runs:
        raise ValueError(f"{workdir!r} holds no finished run (no <stage>/summary.json or "
                         "<stage>/runs/<name>/summary.json); unfinished stages: "
                         f"{', '.join(missing) or '-'}. Re-run its command to finish them.")
    if missing:
        logging.warning("%s is half-finished: no finished run of %s (re-run its command to "
                        "finish them); the report covers the finished ones.", workdir,
                        ", ".join(missing))
    return runs


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Groups runs by (workdir, stage, swept strengths), in order of first appearance."""
    groups: dict[tuple, Group] = {}
    for r in runs:
        key = (r.workdir, r.stage, tuple(sorted(r.swept.items())))
        if key not in groups:
            groups[key] = Group(r.workdir, r.stage, r.swept, [])
        groups[key].runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: (r.seed, r.name))
    return list(groups.values())


def check_protocols(runs: Sequence[Run]) -> dict | None:
    """The one FID protocol of every evaluated run.

    Returns:
      The protocol dict (None when no run was evaluated).

    Raises:
      ValueError: two runs evaluated under different protocols, naming both folders and the
        differing fields; or a run with an FID but no recorded protocol.
    """
    first: tuple[str, dict] | None = None
    for r in runs:
        for h in r.history:
            p = h.get("protocol")
            if p is None:
                raise ValueError(f"{os.path.join(r.path, 'eval.json')} holds an FID without its "
                                 "protocol (written by an older version); re-evaluate it.")
            if first is None:
                first = (r.path, p)
            elif p != first[1]:
                diff = sorted(k for k in set(p) | set(first[1]) if p.get(k) != first[1].get(k))
                details = "; ".join(f"{k}: {first[1].get(k)!r} vs {p.get(k)!r}" for k in diff)
                raise ValueError(f"FID protocols differ between {first[0]} and {r.path} "
                                 f"({details}); their FIDs are not comparable.")
    return None if first is None else first[1]


def _fmt(x: Any, digits: int = 2, scale: float = 1.0) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{float(x) * scale:.{digits}f}"


def _pm(mean: float, std: float, digits: int = 2, scale: float = 1.0) -> str:
    if not np.isfinite(mean):
        return "-"
    return _fmt(mean, digits, scale) + (f" ± {_fmt(std, digits, scale)}"
                                        if np.isfinite(std) else "")


def _hist(hist: Sequence[float] | None) -> str:
    """A coverage histogram as space-separated percentages ("-" without one)."""
    return "-" if not hist else " ".join(f"{100 * h:.1f}" for h in hist)


def _mean_curve(runs: Sequence[Run], key: str) -> tuple[list[int], list[float]]:
    """Mean of metric ``key`` over runs at the steps every run logged."""
    per = [{int(m["step"]): float(m[key]) for m in r.metrics if key in m} for r in runs]
    steps = sorted(set.intersection(*[set(p) for p in per])) if per else []
    return steps, [float(np.mean([p[s] for p in per])) for s in steps]


def _plots(groups: Sequence[Group], runs: Sequence[Run], out: str) -> dict:
    """Writes the PNGs; returns ``{png name: plotted series}`` (for report.json and tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data: dict[str, Any] = {}
    # FID against G density over IMP rounds (one line per workdir and swept strengths)
    lines: dict[str, list] = {}
    for g in groups:
        if g.stage.startswith("imp/round_") and g.stat("final_fid")[2]:
            key = g.workdir + "".join(f" {k}={v:g}" for k, v in g.swept.items())
            m, s, _ = g.stat("final_fid")
            lines.setdefault(key, []).append((float(g.first("g_density")), m, s))
    if lines:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        data["fid_vs_density.png"] = {}
        for key, pts in lines.items():
            pts.sort(reverse=True)
            x, y, e = (list(v) for v in zip(*pts))
            ax.errorbar(x, y, yerr=[0 if not np.isfinite(v) else v for v in e], marker="o",
                        capsize=3, label=key)
            data["fid_vs_density.png"][key] = {"g_density": x, "fid": y}
        ax.invert_xaxis()
        ax.set_xlabel("G density (fraction of prunable weights kept)")
        ax.set_ylabel("FID (mean ± std over seeds)")
        ax.set_title("IMP rounds")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "fid_vs_density.png"), dpi=100)
        plt.close(fig)
    # FID and KID over steps, every evaluated run
    for metric in ("fid", "kid"):
        series = {f"{r.workdir}/{r.stage}/{r.name}": r.history for r in runs if r.history}
        if not series:
            continue
        name = f"{metric}_over_steps.png"
        fig, ax = plt.subplots(figsize=(6, 4))
        data[name] = {}
        for key, hist in series.items():
            x = [int(h["step"]) for h in hist]
            y = [float(h[metric]) for h in hist]
            ax.plot(x, y, marker="o", ms=3, lw=1, label=key if len(series) <= 12 else None)
            data[name][key] = {"step": x, metric: y}
        ax.set_xlabel("G steps")
        ax.set_ylabel(metric.upper())
        if len(series) <= 12:
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=100)
        plt.close(fig)
    # D-overfitting diagnostic, one panel per group
    diag = [g for g in groups if any("d_acc_train_real" in m for r in g.runs for m in r.metrics)]
    if diag:
        cols = min(4, len(diag))
        rows = -(-len(diag) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
        data["d_overfitting.png"] = {}
        for ax, g in zip(axes.flat, diag):
            data["d_overfitting.png"][g.label] = {}
            for key, lab in (("d_acc_train_real", "train reals"),
                             ("d_acc_heldout_real", "held-out reals"), ("d_acc_fake", "fakes")):
                x, y = _mean_curve(g.runs, key)
                if x:
                    ax.plot(x, y, label=lab)
                    data["d_overfitting.png"][g.label][key] = {"step": x, "acc": y}
            ax.set_title(g.label, fontsize=7)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("G steps", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in list(axes.flat)[len(diag):]:
            ax.axis("off")
        axes.flat[0].set_ylabel("D accuracy", fontsize=7)
        axes.flat[0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "d_overfitting.png"), dpi=100)
        plt.close(fig)
    # last sample grids side by side (first seed of each group)
    grids = [(g.label, g.runs[0].last_samples) for g in groups if g.runs[0].last_samples]
    if grids:
        from PIL import Image

        cols = min(4, len(grids))
        rows = -(-len(grids) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
        for ax, (label, path) in zip(axes.flat, grids):
            with Image.open(path) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
            ax.set_title(f"{label}\n{os.path.basename(path)}", fontsize=6)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "samples.png"), dpi=100)
        plt.close(fig)
        data["samples.png"] = {label: path for label, path in grids}
    return data


def write_report(workdirs: Sequence[str], out: str) -> dict:
    """Writes ``report.md``, ``report.json`` and the PNGs of ``workdirs`` into ``out``.

    Args:
      workdirs: one or more workdirs (their basenames must differ).
      out: output folder (created; existing files of the same names are replaced).

    Returns:
      The content of ``report.json``.

    Raises:
      ValueError: a folder that is not a finished workdir, two workdirs with the same name, or
        runs evaluated under different FID protocols (folders and fields named).
    """
    labels = [os.path.basename(os.path.normpath(w)) for w in workdirs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"workdirs {list(workdirs)} share the folder name(s) {dup}; the report "
                         "labels runs by folder name, so give folders with distinct names.")
    runs = [r for w, lab in zip(workdirs, labels) for r in load_runs(w, lab)]
    protocol = check_protocols(runs)
    groups = group_runs(runs)
    os.makedirs(out, exist_ok=True)
    plots = _plots(groups, runs, out)

    lines = ["# Report", "", "Workdirs: " + ", ".join(f"`{w}`" for w in workdirs), ""]
    missing = {lab: m for w, lab in zip(workdirs, labels) if (m := missing_stages(w))}
    for lab, m in missing.items():
        lines += [f"**Unfinished**: `{lab}` has no finished run of {', '.join(m)}; the tables "
                  "below cover its finished stages only.", ""]
    if protocol:
        lines += ["FID/KID protocol (every number below): "
                  f"{protocol['generated']} generated images of the {protocol['generator']} "
                  f"generator vs {protocol['reference_images']} reference images "
                  f"(`{protocol['reference']}`), {protocol['resolution']} px, "
                  f"{protocol['channels']} channel(s), x-flips of the training reals: "
                  f"{protocol['x_flips']}, {protocol['network']}.", ""]
    else:
        lines += ["No run was evaluated (eval.enabled was False): no FID/KID.", ""]
    lines += ["## Groups (runs that differ only in seed)", "",
              "FID and KID x 10^3: mean ± sample std (ddof = 1) over the n seeds at the end of "
              "training.", "",
              "| group | G density | D density | G steps | n | seeds | FID | KID x 10^3 | "
              "classes covered | class confidence |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    rows_json = []
    for g in groups:
        fm, fs, fn = g.stat("final_fid")
        km, ks, _ = g.stat("final_kid")
        cm, cs, _ = g.stat("final_coverage_classes")
        qm, qs, _ = g.stat("final_coverage_confidence")
        seeds = ",".join(str(r.seed) for r in g.runs)
        lines.append(f"| {g.label} | {_fmt(g.first('g_density'), 4)} | "
                     f"{_fmt(g.first('d_density'), 4)} | {g.first('steps')} | {fn} | {seeds} | "
                     f"{_pm(fm, fs)} | {_pm(km, ks, 2, 1e3)} | {_pm(cm, cs, 1)} | "
                     f"{_pm(qm, qs, 3)} |")
        rows_json.append({"group": g.label, "workdir": g.workdir, "stage": g.stage,
                          "swept": g.swept, "g_density": g.first("g_density"),
                          "d_density": g.first("d_density"), "steps": g.first("steps"),
                          "n": fn, "seeds": [r.seed for r in g.runs],
                          "fid_mean": fm, "fid_std": fs, "kid_mean": km, "kid_std": ks,
                          "coverage_classes_mean": cm, "coverage_classes_std": cs,
                          "coverage_confidence_mean": qm, "coverage_confidence_std": qs})
    lines += ["", "## Runs", "",
              "| workdir | stage | run | seed | G density | G steps | FID | KID x 10^3 | "
              "KID std x 10^3 | best FID (step) | wall time (s) | classes covered | "
              "class confidence | class histogram (%) |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    runs_json = []
    for g in groups:
        for r in g.runs:
            s = r.summary
            best = (f"{_fmt(s.get('best_fid'))} ({s.get('best_step')})"
                    if s.get("best_fid") is not None else "-")
            lines.append(f"| {r.workdir} | {r.stage} | {r.name} | {r.seed} | "
                         f"{_fmt(s.get('g_density'), 4)} | {s['steps']} | {_fmt(r.fid)} | "
                         f"{_fmt(r.kid, 2, 1e3)} | {_fmt(s.get('final_kid_std'), 2, 1e3)} | "
                         f"{best} | {_fmt(s.get('wall_time_s'), 0)} | "
                         f"{s.get('final_coverage_classes', '-')} | "
                         f"{_fmt(s.get('final_coverage_confidence'), 3)} | "
                         f"{_hist(s.get('final_coverage_hist'))} |")
            runs_json.append({"workdir": r.workdir, "stage": r.stage, "run": r.name,
                              "path": r.path, "summary": s})
    lines += ["", "## Plots", ""]
    for png, what in (("fid_vs_density.png", "FID against G density over the IMP rounds"),
                      ("fid_over_steps.png", "FID over G steps"),
                      ("kid_over_steps.png", "KID over G steps"),
                      ("d_overfitting.png", "D accuracy on training reals, held-out reals and "
                                            "fakes over G steps (mean over seeds)"),
                      ("samples.png", "last sample grid of each group's first seed")):
        if png in plots:
            lines += [f"{what}:", "", f"![{what}]({png})", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    result = {"workdirs": list(workdirs), "protocol": protocol, "groups": rows_json,
              "runs": runs_json, "plots": plots, "missing_stages": missing}
    io_utils.write_json(os.path.join(out, "report.json"), result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m jaxgan_lth.report DIR [DIR ...] [--out OUT]``; returns the exit code."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m jaxgan_lth.report", description=__doc__.split(
        "\n")[0])
    p.add_argument("workdirs", nargs="+", help="workdirs of python -m jaxgan_lth.main")
    p.add_argument("--out", default="", help="output folder (default: DIR/report for one DIR)")
    a = p.parse_args(argv)
    out = a.out or (os.path.join(a.workdirs[0], "report") if len(a.workdirs) == 1 else "")
    if not out:
        p.error("--out is required with several workdirs")
    try:
        write_report(a.workdirs, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(os.path.join(out, "report.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
