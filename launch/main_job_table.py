"""Prints README's main-job table from a finished workdir's files (nothing is typed by hand).

    python launch/main_job_table.py workdirs/default [--time=time_v.txt]

Reads ``DIR/summary.json`` (the stages' results, written by the pipeline) and, when given, the
output of ``/usr/bin/time -v`` for the whole command. One row per stage: G density, G steps,
FID, KID, classes holding >= 2% of the EMA samples (the class-coverage diagnostic), their mean
confidence, and the stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import re


def rows(summary: dict) -> list[dict]:
    """The stages of a workdir summary in pipeline order, each a flat dict."""
    out = []
    for r in summary["stages"].get("imp", {}).get("rounds", []):
        out.append({**r, "stage": f"IMP round {r['round']}"
                    + (" (dense)" if r["round"] == 0 else "")})
    if "ticket" in summary["stages"]:
        t = summary["stages"]["ticket"]
        out.append({**t, "stage": "ticket" + (f" (mask m_{t['round']})" if "round" in t else "")})
    if "train" in summary["stages"]:
        out.append({**summary["stages"]["train"], "stage": "train"})
    return out


def table(summary: dict) -> str:
    """Markdown table of :func:`rows`."""
    lines = ["| stage | G density | G steps | FID | KID x 10^3 | classes >= 2% | confidence | "
             "wall time (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows(summary):
        lines.append(
            f"| {r['stage']} | {r.get('g_density', 1.0):.3f} | {r['steps']} | "
            f"{r['final_fid']:.1f} | {1e3 * r['final_kid']:.1f} | "
            f"{r.get('final_coverage_classes', '-')}/10 | "
            f"{r.get('final_coverage_confidence', float('nan')):.3f} | "
            f"{r['wall_time_s']:.0f} |")
    return "\n".join(lines)


def wall_clock(path: str) -> str:
    """``Elapsed (wall clock) time`` and peak memory from a ``/usr/bin/time -v`` output."""
    text = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return (f"whole command: {wall.group(1) if wall else '?'} (m:ss), peak memory "
            f"{int(rss.group(1)) / 1e6:.1f} GB" if rss else "")


def main() -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--time", default="", help="file holding /usr/bin/time -v's output")
    args = ap.parse_args()
    summary = json.load(open(os.path.join(args.workdir, "summary.json")))
    print(table(summary))
    print(f"\nstages: {summary['wall_time_s']:.0f} s")
    if args.time:
        print(wall_clock(args.time))


if __name__ == "__main__":
    main()
