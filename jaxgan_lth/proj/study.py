"""``python -m jaxgan_lth.proj.study ROOT [ROOT ...] --out docs/results.md``: the study's write-up.

Turns the reports of ``launch/study.sh`` (``ROOT/report/report.json``, one ROOT per data
fraction, see ``configs/study_fashion_mnist.py``) into one Markdown page: a table per fraction
with every method's FID and KID (mean ± std over seeds, n), and the lottery paper's claims
(Chen et al., NeurIPS 2021, Tables 1-3 and Fig. 7) tested one by one at equal G-step budget:

* the IMP ticket beats the dense network it was pruned from;
* DiffAugment improves the ticket, and AdvAug improves it further;
* the ticket beats the dense network under the same augmentation;
* IMP tickets beat random tickets (same layer densities) and one-shot magnitude (OMP) tickets;
* the gain of ticket + DiffAugment + AdvAug over dense is largest when data are scarcest.

Each pairwise claim "A has a lower FID than B" gets the difference of the means, Welch's
two-sided t-test over the seeds (``scipy.stats.ttest_ind(equal_var=False)``) and a verdict:
``holds`` / ``reversed`` when p < 0.05, otherwise ``holds within the seeds' spread`` or
``reversed within the seeds' spread`` (with 3 seeds a t-test is weak: read p with care). Every
figure on the page is read from the reports; none is typed by hand.

Study folders do not outlive the machine they ran on, and one fraction takes about two hours on
a 2-core CPU, so the fractions may run in different sessions. For each finished ROOT the page's
folder gets ``results/<root name>/digest.json``: every number the page takes from that ROOT
(per-seed FIDs, group rows, grid statistics, wall times, protocol). A later call may name that
file in place of the ROOT; the page is then the same, number for number.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Sequence

import numpy as np

from jaxgan_lth import io_utils

__all__ = ["METHODS", "CLAIMS", "method_rows", "compare", "grid_tiles", "hole_rate",
           "border_level", "wall_times", "digest", "write_results", "main"]

#: The study's methods: ``(label, workdir (arm) name, stage folder)``. The dense row is round 0
#: of the IMP arm: the unpruned network trained from the same theta_0 for the same G steps.
METHODS = (
    ("dense", "imp", "imp/round_00"),
    ("dense + DiffAugment", "dense_da", "train"),
    ("dense + DiffAugment + AdvAug", "dense_da_adv", "train"),
    ("IMP ticket", "ticket", "ticket"),
    ("random ticket", "ticket_random", "ticket"),
    ("OMP ticket", "ticket_omp", "ticket"),
    ("ticket + DiffAugment", "ticket_da", "ticket"),
    ("ticket + DiffAugment + AdvAug", "ticket_da_adv", "ticket"),
)

#: Pairwise claims ``(better, worse, source in the paper)``: "better" has the lower FID.
CLAIMS = (
    ("IMP ticket", "dense", "Table 1: tickets match or beat the dense GAN"),
    ("ticket + DiffAugment", "IMP ticket", "Tables 1-3: DiffAugment helps the ticket"),
    ("ticket + DiffAugment + AdvAug", "ticket + DiffAugment", "Tables 1-3: AdvAug adds"),
    ("ticket + DiffAugment", "dense + DiffAugment", "Tables 1-2: ticket vs dense, same aug."),
    ("ticket + DiffAugment + AdvAug", "dense + DiffAugment + AdvAug",
     "Tables 1-2: ticket vs dense, same aug."),
    ("IMP ticket", "random ticket", "Fig. 7 / Table 6: IMP beats random pruning"),
    ("IMP ticket", "OMP ticket", "Fig. 7 / Table 6: IMP beats one-shot pruning"),
)


def method_rows(report: dict) -> dict[str, dict]:
    """``{method label: group row of report.json}`` for the methods the report holds.

    Raises:
      ValueError: a method's group appears more than once (the study sweeps only seeds).
    """
    out: dict[str, dict] = {}
    for label, arm, stage in METHODS:
        rows = [g for g in report["groups"] if g["workdir"] == arm and g["stage"] == stage]
        if len(rows) > 1:
            raise ValueError(f"{len(rows)} groups for {label!r} ({arm}/{stage}); the study "
                             "sweeps only seeds.")
        if rows:
            out[label] = rows[0]
    return out


def _group_runs(report: dict, row: dict) -> list[dict]:
    """The runs of ``report.json`` in one group row (one method, its seeds)."""
    return [r for r in report["runs"]
            if r["workdir"] == row["workdir"] and r["stage"] == row["stage"]]


def _fids(report: dict, row: dict) -> np.ndarray:
    return np.asarray([r["summary"]["final_fid"] for r in _group_runs(report, row)
                       if r["summary"].get("final_fid") is not None], np.float64)


def grid_tiles(path: str, size: int) -> np.ndarray:
    """The images of a sample grid PNG written by the loop (``samples/step_*.png``).

    Args:
      path: a grid of ``rows x cols`` tiles of ``size x size`` pixels, no padding.
      size: the tile side (the data resolution).

    Returns:
      ``[rows * cols, size, size]`` float64 in [0, 1] (grey levels; RGB grids are averaged).

    Raises:
      ValueError: the grid's sides are not multiples of ``size``.
    """
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("L"), np.float64) / 255.0
    h, w = a.shape
    if h % size or w % size:
        raise ValueError(f"sample grid {path!r} is {w}x{h} px, not a grid of {size} px tiles.")
    return a.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(
        -1, size, size)


def hole_rate(tiles: np.ndarray, threshold: float = 0.2, min_pixels: int = 4) -> float:
    """Fraction of images with a dark hole inside the object: DiffAugment's cutout leak.

    A generator that learned DiffAugment's cutout (zeroed squares) draws dark rectangles in
    its objects (data-efficient-gans issue 84). On dark-background images (Fashion-MNIST), the
    object is ``tiles > threshold``; a hole is a connected background region enclosed by the
    object (``scipy.ndimage.binary_fill_holes``) of at least ``min_pixels`` pixels. Real
    garments have holes too (bag handles, sandals), so the rate is read against the same
    network trained without cutout, not against zero.

    Args:
      tiles: ``[N, H, W]`` grey images in [0, 1], dark background.
      threshold: object / background grey level.
      min_pixels: smallest hole counted.

    Returns:
      The fraction of the N images with at least one hole.
    """
    from scipy import ndimage

    count = 0
    for t in np.asarray(tiles):
        obj = t > threshold
        holes, n = ndimage.label(ndimage.binary_fill_holes(obj) & ~obj)
        if n and np.bincount(holes.ravel())[1:].max() >= min_pixels:
            count += 1
    return count / max(len(tiles), 1)


def border_level(tiles: np.ndarray) -> float:
    """Mean grey level of the images' outermost ring of pixels: DiffAugment's fill leak.

    DiffAugment's ``translation`` (and ``cutout``) fill uncovered pixels with 0, mid-grey for
    images in [-1, 1] (the reference's choice). On black-background data (Fashion-MNIST) D then
    sees grey borders on every translated real, and a G that learns them draws grey borders
    and lines at the image edges. Read against the same network trained without DiffAugment.

    Args:
      tiles: ``[N, H, W]`` grey images in [0, 1].

    Returns:
      The mean over images and ring pixels, in [0, 1].
    """
    t = np.asarray(tiles, np.float64)
    ring = np.concatenate([t[:, 0, :], t[:, -1, :], t[:, 1:-1, 0], t[:, 1:-1, -1]], axis=1)
    return float(ring.mean())


def _grid_stats(report: dict, row: dict, size: int, fns) -> list[np.ndarray]:
    """Each of ``fns`` on every run's last sample grid (read once): one ``[runs]`` array each."""
    out = []
    for r in _group_runs(report, row):
        grids = sorted(glob.glob(os.path.join(r["path"], "samples", "step_*.png")))
        if grids:
            tiles = grid_tiles(grids[-1], size)
            out.append([fn(tiles) for fn in fns])
    return [np.asarray(col, np.float64) for col in zip(*out)] if out else \
        [np.zeros(0) for _ in fns]


def compare(better: np.ndarray, worse: np.ndarray, alpha: float = 0.05) -> dict:
    """Tests "``better`` has the lower mean FID than ``worse``" over seeds.

    Args:
      better: FIDs ``[n]`` of the method claimed better (one per seed).
      worse: FIDs ``[m]`` of the method claimed worse.
      alpha: significance level of Welch's two-sided t-test.

    Returns:
      ``{"diff": mean(worse) - mean(better) (> 0: the claim's direction), "p": p-value (nan
      with fewer than 2 values on a side), "verdict"}``.
    """
    from scipy import stats

    diff = float(np.mean(worse) - np.mean(better))
    p = float("nan")
    if len(better) > 1 and len(worse) > 1:
        p = float(stats.ttest_ind(better, worse, equal_var=False).pvalue)
    direction = "holds" if diff > 0 else "reversed"
    if np.isfinite(p) and p < alpha:
        verdict = direction
    else:
        verdict = f"{direction} within the seeds' spread"
    return {"diff": diff, "p": p, "verdict": verdict}


def _sd(a: np.ndarray):
    return a.std(ddof=1) if a.size > 1 else None


def _pm(mean, std, scale=1.0) -> str:
    if mean is None or not np.isfinite(mean):
        return "-"
    s = f"{mean * scale:.2f}"
    return s + (f" ± {std * scale:.2f}" if std is not None and np.isfinite(std) else "")


#: Plots of a study's report copied next to the study page: ``(file, caption)``.
PLOTS = (("samples.png", "last sample grid of each method (first seed)"),
         ("fid_vs_density.png", "FID against G density over the IMP rounds"),
         ("d_overfitting.png", "D accuracy on training reals, held-out reals and fakes"))


def _copy_plots(root: str, out: str) -> list[str]:
    """Copies :data:`PLOTS` of ``root/report`` to ``results/<root name>/`` beside ``out``.

    Returns:
      The Markdown lines that show them (relative links).
    """
    import shutil

    name = os.path.basename(os.path.normpath(root))
    dest = _results_dir(out, name)
    lines = []
    for file, caption in PLOTS:
        src = os.path.join(root, "report", file)
        if os.path.isfile(src):
            os.makedirs(dest, exist_ok=True)
            try:  # a 16-colour palette keeps the committed figures small (~5x)
                from PIL import Image

                with Image.open(src) as im:
                    im.convert("RGB").quantize(16).save(os.path.join(dest, file), optimize=True)
            except OSError:  # not an image PIL reads: copied as it is
                shutil.copyfile(src, os.path.join(dest, file))
            lines += [f"![{caption}](results/{name}/{file})", ""]
    return lines


def wall_times(root: str) -> list[dict]:
    """The invocations of ``launch/study.sh`` on ``root``, in order of their start.

    Completed invocations are the lines of ``root/wall_times.jsonl`` (``seconds``, ``commit``,
    ``loadavg_end``); an interrupted one left its heartbeat ``root/.invocation_START.json``
    (``start``, ``last_seen``, rewritten every 60 s), counted as ``last_seen - start`` seconds.

    Returns:
      ``[{"seconds": int, "commit": str, ...}]``.
    """
    done = io_utils.read_jsonl(os.path.join(root, "wall_times.jsonl"))
    beats = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if name.startswith(".invocation_") and name.endswith(".json"):
            b = io_utils.read_json(os.path.join(root, name)) or {}
            if "start" in b and "last_seen" in b:
                beats.append({**b, "seconds": int(b["last_seen"]) - int(b["start"])})
    return sorted(done + beats, key=lambda t: t.get("start", 0))


def _wall_line(root: str, times: list[dict]) -> str:
    if not times:
        return "Wall time: not recorded (no wall_times.jsonl)."
    return (f"Wall time of `launch/study.sh` (`{root}/wall_times.jsonl`): "
            + " + ".join(f"{t['seconds'] / 60:.1f} min (commit {t.get('commit')}, "
                         + (f"load average at the end {t.get('loadavg_end')})"
                            if "loadavg_end" in t else
                            "not completed: running or killed; to its last heartbeat, to the "
                            "minute)")
                         for t in times)
            + f" = {sum(t['seconds'] for t in times) / 60:.1f} min.")


def _fraction(root: str) -> float:
    cfg = io_utils.read_json(os.path.join(root, "imp", "config.json")) or {}
    return float(cfg.get("data", {}).get("subset_fraction", float("nan")))


#: Version of :func:`digest`'s layout; a digest of another version is refused.
DIGEST_FORMAT = 1
#: The group-row fields of report.json a digest keeps per method.
_ROW_KEYS = ("g_density", "steps", "n", "fid_mean", "fid_std", "kid_mean", "kid_std")


def digest(root: str) -> dict:
    """Everything the study page takes from one finished study folder, as plain JSON data.

    Args:
      root: a study folder of ``launch/study.sh`` with ``report/report.json`` and
        ``imp/config.json``.

    Returns:
      ``{"format", "root", "fraction", "protocol", "wall_times", "methods": {label: {group row
      fields, "fids": [per seed], "border": [per run], "holes": [per run]}}}``; ``border`` and
      ``holes`` are :func:`border_level` and :func:`hole_rate` of each run's last sample grid
      (empty without a resolution in the protocol or without grids).

    Raises:
      ValueError: ``root`` has no ``report/report.json``.
    """
    rep = io_utils.read_json(os.path.join(root, "report", "report.json"))
    if rep is None:
        raise ValueError(f"{root!r} has no report/report.json; run launch/study.sh there "
                         "to the end (it writes the report last), or pass "
                         "--allow-unfinished.")
    size = int((rep.get("protocol") or {}).get("resolution") or 0)
    methods = {}
    for label, row in method_rows(rep).items():
        b, h = (_grid_stats(rep, row, size, (border_level, hole_rate)) if size
                else (np.zeros(0), np.zeros(0)))
        methods[label] = {**{k: row.get(k) for k in _ROW_KEYS},
                          "fids": _fids(rep, row).tolist(), "border": b.tolist(),
                          "holes": h.tolist()}
    return {"format": DIGEST_FORMAT, "root": root, "fraction": _fraction(root),
            "protocol": rep["protocol"], "wall_times": wall_times(root), "methods": methods}


def _read_digest(path: str) -> dict:
    import json

    try:
        d = io_utils.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        d = None
    if not isinstance(d, dict) or d.get("format") != DIGEST_FORMAT:
        raise ValueError(f"{path!r} is not a study digest of format {DIGEST_FORMAT} (written "
                         "by python -m jaxgan_lth.proj.study as results/<root>/digest.json); "
                         f"found format {d.get('format') if isinstance(d, dict) else None!r}.")
    return d


def _results_dir(out: str, name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(out)), "results", name)


def _leak_lines(rows: dict) -> list[str]:
    """The DiffAugment-leak table of one study's method rows (border grey level, holes)."""
    lines = ["", "DiffAugment leaks, read from the last sample grid of every run (64 images of "
             "the EMA generator, fixed noise; mean ± std over seeds): the mean grey level of "
             "the images' outer pixel ring (`study.border_level`: with the reference's mid-grey "
             "fill of translation and cutout, G learns grey borders) and the fraction of images "
             "with a dark hole enclosed by the object (`study.hole_rate`). DiffAugment is "
             "on only in its rows; the other rows are the same networks without it.",
             "", "| method | border grey level | images with a hole |", "|---|---:|---:|"]
    for label, _, _ in METHODS:
        if label in rows and rows[label]["holes"]:
            b = np.asarray(rows[label]["border"], np.float64)
            h = np.asarray(rows[label]["holes"], np.float64)
            lines.append(f"| {label} | {_pm(b.mean(), _sd(b))} | "
                         f"{_pm(h.mean(), _sd(h))} |")
    return lines


def _unfinished_lines(root: str) -> list[str]:
    """The section of a study folder without a report: arms finished so far, wall time."""
    arms = [arm for arm in dict.fromkeys(m[1] for m in METHODS)
            if os.path.isfile(os.path.join(root, arm, "summary.json"))]
    frac = _fraction(root)
    title = (f"{frac:g} of the training split ({frac * 100:g}%)" if np.isfinite(frac)
             else f"`{root}`")
    return [f"## {title}: not finished", "",
             f"`{root}` has no report yet: the study there is still running or was "
             f"interrupted (`launch/study.sh` resumes it). Arms finished: "
             f"{len(arms)} of {len(dict.fromkeys(m[1] for m in METHODS))}"
             + (f" ({', '.join(arms)})" if arms else "") + ".", "",
             _wall_line(root, wall_times(root)), ""]


def write_results(roots: Sequence[str], out: str, preamble: str = "",
                  allow_unfinished: bool = False) -> str:
    """Writes the study page for the fractions in ``roots``; returns its text.

    For every finished study folder among ``roots`` it also writes
    ``results/<root name>/digest.json`` beside ``out`` (see :func:`digest`) and copies the
    report's plots there.

    Args:
      roots: study folders of ``launch/study.sh``, each with ``report/report.json`` and the
        arms' ``config.json`` (the data fraction is read from ``imp/config.json``), or
        ``digest.json`` files written by an earlier call (their plots are already in place).
      out: the Markdown file to write.
      preamble: text put before the tables (commands, machine, wall time).
      allow_unfinished: a root without ``report/report.json`` (a study still running or
        interrupted) gets a section saying so, with the arms finished so far and its wall
        time, instead of an error.

    Raises:
      ValueError: a root without ``report/report.json`` (unless ``allow_unfinished``), a file
        that is not a digest, or reports with different protocols.
    """
    digests, unfinished, plot_lines = [], [], []
    for root in roots:
        if os.path.isfile(root):
            d = _read_digest(root)
            name = os.path.basename(os.path.normpath(d["root"]))
            plots = []
            for file, caption in PLOTS:
                if os.path.isfile(os.path.join(_results_dir(out, name), file)):
                    plots += [f"![{caption}](results/{name}/{file})", ""]
        elif (not os.path.isfile(os.path.join(root, "report", "report.json"))
              and allow_unfinished):
            unfinished.append(root)
            continue
        else:
            d = digest(root)
            name = os.path.basename(os.path.normpath(root))
            plots = _copy_plots(root, out)
            os.makedirs(_results_dir(out, name), exist_ok=True)
            io_utils.write_json(os.path.join(_results_dir(out, name), "digest.json"), d)
        digests.append(d)
        plot_lines.append(plots)
    protocols = [d["protocol"] for d in digests]
    if any(p != protocols[0] for p in protocols):
        raise ValueError(f"the studies in {[d['root'] for d in digests]} used different FID "
                         f"protocols {protocols}; their FIDs are not comparable.")
    p = (protocols[0] if protocols else None) or {}
    lines = [preamble.rstrip(), ""] if preamble else []
    lines += [f"FID/KID protocol of every number: {p.get('generated')} generated images of the "
              f"EMA generator vs {p.get('reference_images')} images of `{p.get('reference')}` "
              f"({p.get('network')}); mean ± sample std (ddof = 1) over n seeds; lower is "
              "better.", ""]
    gains = {}
    for d, plots in zip(digests, plot_lines):
        rows, frac, root = d["methods"], float(d["fraction"]), d["root"]
        lines += [f"## {frac:g} of the training split ({frac * 100:g}%)", "",
                  f"Report with per-run rows and plots: `{os.path.join(root, 'report')}`.", "",
                  _wall_line(root, d["wall_times"]), "",
                  *plots,
                  "| method | G density | G steps | n | FID | KID x 10^3 |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, _, _ in METHODS:
            if label in rows:
                g = rows[label]
                lines.append(f"| {label} | {g['g_density']:.3f} | {g['steps']} | {g['n']} | "
                             f"{_pm(g['fid_mean'], g['fid_std'])} | "
                             f"{_pm(g['kid_mean'], g['kid_std'], 1e3)} |")
        lines += ["", "| claim (lower FID first) | paper | FID difference | Welch p | verdict |",
                  "|---|---|---:|---:|---|"]
        for better, worse, src in CLAIMS:
            if better in rows and worse in rows:
                c = compare(np.asarray(rows[better]["fids"], np.float64),
                            np.asarray(rows[worse]["fids"], np.float64))
                pv = f"{c['p']:.3f}" if np.isfinite(c["p"]) else "-"
                lines.append(f"| {better} < {worse} | {src} | {c['diff']:.2f} | {pv} | "
                             f"{c['verdict']} |")
        if int(p.get("resolution") or 0):
            lines += _leak_lines(rows)
        best = "ticket + DiffAugment + AdvAug"
        if best in rows and "dense" in rows:
            gains[frac] = rows["dense"]["fid_mean"] - rows[best]["fid_mean"]
        lines.append("")
    for root in unfinished:
        lines += _unfinished_lines(root)
    if len(gains) > 1:
        fr = sorted(gains)
        lines += ["## Is the gain largest when data are scarcest?", "",
                  "FID(dense) - FID(ticket + DiffAugment + AdvAug), by fraction: "
                  + ", ".join(f"{f:g}: {gains[f]:.2f}" for f in fr) + ". "
                  + ("The gain is largest at the smallest fraction, as the paper reports."
                     if gains[fr[0]] == max(gains.values()) else
                     "The gain is NOT largest at the smallest fraction here."), ""]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m jaxgan_lth.proj.study ROOT|DIGEST [...] --out FILE [--preamble FILE]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m jaxgan_lth.proj.study",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("roots", nargs="+",
                    help="study folders, or results/<root>/digest.json files of earlier calls")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preamble", default="", help="Markdown file put before the tables")
    ap.add_argument("--allow-unfinished", action="store_true",
                    help="a ROOT without report/report.json gets a 'not finished' section")
    a = ap.parse_args(argv)
    pre = open(a.preamble).read() if a.preamble else ""
    try:
        write_results(a.roots, a.out, pre, allow_unfinished=a.allow_unfinished)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
