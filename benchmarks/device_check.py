"""One prepared check of an accelerator host within a hard wall-clock budget (issue 31).

Run through ``bash benchmarks/device_check.sh [--cpu-smoke] [options]``; see that script and
README "Benchmarks" for the device command. In order:

1. Installs the carried wheels (``--wheels``, default ``wheels/``: ml_collections, which a
   bare accelerator image lacks) that are not installed yet, with
   ``pip install --no-index --no-deps --target RUN/site``, and puts that folder on the steps'
   ``PYTHONPATH``. Nothing is fetched from a network.
2. ``probe``: ``benchmarks/device_probe.py`` (``jax.devices()``, versions, nvidia-smi). On an
   accelerator run, a CPU-only JAX stops the check there (every other step is listed as
   skipped).
3. The steps of :mod:`benchmarks.device_steps`, most valuable first. Each runs in its own
   process group under ``timeout = min(step cap, budget left)`` and is killed (SIGTERM, then
   SIGKILL after 5 s) when it runs over, so it loses only itself; a step is not started when
   less than its ``need_s`` is left. Exit status 4 of a step = skipped, with its last stderr
   line as the reason. SIGTERM or Ctrl-C to the driver kills the running step, writes the
   summary (``interrupted``) and exits with 130.
4. After every step: ``device_check.json`` / ``.md`` (each step's status, wall and CPU seconds,
   cap, reason, command) and the archive ``device_check.tar.gz`` (summary, probe, result
   files, logs, sample grids) are rewritten in the destination: ``$OUT`` when set (never
   reassigned), else ``workdirs/device_check/<UTC time>/`` (the run folder is then kept in its
   ``run/``; with ``$OUT`` it is a temporary folder, removed at the end).

The driver imports no JAX (it would take GPU memory from the steps) and only the standard
library. Exit status: 0 when no step failed or timed out (skipped steps are fine), else 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import device_archive, device_steps  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_S = {"gpu": 420, "smoke": 230}  # 7 minutes on a device; < 4 minutes for the CI smoke
RESERVE_S = 5  # kept for the final archive
EXIT_SKIP = 4
DEFAULT_FOLDER = os.path.join(ROOT, "device_data", "100-shot-obama")


def destination() -> str:
    """``$OUT`` when set and non-empty, else a new ``workdirs/device_check/<UTC time>/``."""
    out = os.environ.get("OUT")
    if out:
        return out
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return os.path.join(ROOT, "workdirs", "device_check", stamp)


def install_wheels(wheels: str, site: str, py: str) -> list[dict]:
    """Installs each wheel in ``wheels`` whose distribution is not installed into ``site``.

    Returns one ``{"wheel", "status"}`` per wheel (``installed``, ``present <version>`` or
    ``failed: ...``). A missing folder gives an empty list.
    """
    if not os.path.isdir(wheels):
        return []
    rows, todo = [], []
    for name in sorted(f for f in os.listdir(wheels) if f.endswith(".whl")):
        dist = name.split("-")[0]
        try:
            rows.append({"wheel": name, "status": f"present {importlib.metadata.version(dist)}"})
        except importlib.metadata.PackageNotFoundError:
            todo.append(name)
    if todo:
        cmd = [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--target", site]
        out = subprocess.run(cmd + [os.path.join(wheels, n) for n in todo], capture_output=True,
                             text=True)
        status = "installed" if out.returncode == 0 else \
            f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}"
        rows += [{"wheel": n, "status": status} for n in todo]
    return rows


def make_folder(path: str, n: int = 16, size: int = 64) -> str:
    """Writes ``n`` random ``size``x``size`` RGB PNGs into ``path`` (the smoke's stand-in for
    the carried 100-shot folder); returns ``path``."""
    import numpy as np
    from PIL import Image

    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            os.path.join(path, f"{i:03d}.png"))
    return path


# A new process group in the same session: killpg reaches the step's children, and a device
# call's end still ends them (it spares only processes that started a session of their own).
_NEW_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _kill(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group, SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(log: str) -> str:
    try:
        with open(log, errors="replace") as f:
            lines = [x.strip() for x in f.read()[-4000:].splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_step(step: device_steps.Step, timeout: float, env: dict, log: str) -> dict:
    """Runs ``step.cmd`` (its own process group, output to ``log``) for at most ``timeout`` s.

    Returns ``{"status", "seconds", "reason"}``; status ``ok``, ``skipped`` (exit 4),
    ``timed out`` or ``failed (exit N)``.
    """
    t0, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as f:
        f.write("$ " + " ".join(step.cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(step.cmd, cwd=ROOT, env={**env, **step.env}, stdout=f,
                                stderr=subprocess.STDOUT, **_NEW_GROUP)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc = None
        except BaseException:  # the driver itself is stopped: take the step down with it
            _kill(proc)
            raise
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the step's waited-for processes: far below `seconds` x cores on a loaded
    # machine (other jobs had the cores)
    times = {"seconds": round(time.monotonic() - t0, 1),
             "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)}
    if rc is None:
        return {"status": "timed out", **times,
                "reason": f"killed after {timeout:.0f} s (cap {step.cap_s} s)"}
    if rc == 0:
        return {"status": "ok", **times, "reason": ""}
    status = "skipped" if rc == EXIT_SKIP else f"failed (exit {rc})"
    return {"status": status, **times, "reason": _last_line(log)}


def _importable(name: str) -> bool:
    """Whether module ``name`` has a file to import (found without importing it; an import
    blocker's spec has no origin)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None


def _table(summary: dict) -> str:
    lines = [f"# device_check ({summary['mode']})", "",
             f"- machine: {summary.get('machine_slug', '?')}; started {summary['started_utc']}; "
             f"budget {summary['budget_s']} s; elapsed {summary['elapsed_s']} s",
             f"- data: {summary['data']}", f"- wheels: {summary['wheels']}", "",
             "| step | status | seconds | CPU s | cap | what / reason |",
             "|---|---|---|---|---|---|"]
    for r in summary["steps"]:
        text = r["what"] + (f" -- {r['reason']}" if r.get("reason") else "")
        lines.append(f"| {r['name']} | {r['status']} | {r.get('seconds', 0)} | "
                     f"{r.get('cpu_s', '')} | {r.get('cap_s', '')} | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


class Check:
    """The run folder, the summary and the budget of one device check."""

    def __init__(self, args, run_dir: str, dest: str):
        self.args, self.run_dir, self.dest = args, run_dir, dest
        self.start = time.monotonic()
        self.budget = args.budget or BUDGET_S["smoke" if args.cpu_smoke else "gpu"]
        for sub in ("results", "logs", "site"):
            os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
        self.summary = {
            "mode": "cpu-smoke" if args.cpu_smoke else "accelerator", "budget_s": self.budget,
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "destination": dest, "argv": sys.argv[1:], "data": "", "wheels": [], "steps": []}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start) - RESERVE_S

    def record(self, step: device_steps.Step, result: dict) -> None:
        """Adds a step's row, collects its artefacts, rewrites summary and archive."""
        if step.collect is not None:
            try:
                step.collect(self.run_dir)
            except OSError as e:
                result["reason"] = (result.get("reason", "") + f" (collect: {e})").strip()
        self.summary["steps"].append({"name": step.name, "what": step.what, "cap_s": step.cap_s,
                                      "cmd": " ".join(step.cmd), **result})
        self.flush()

    def flush(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.start, 1)
        probe = os.path.join(self.run_dir, "machine.json")
        if os.path.exists(probe) and "machine_slug" not in self.summary:
            with open(probe) as f:
                info = json.load(f)
            self.summary["machine_slug"], self.summary["machine"] = info["slug"], info
        with open(os.path.join(self.run_dir, "device_check.json"), "w") as f:
            json.dump(self.summary, f, indent=2)
        with open(os.path.join(self.run_dir, "device_check.md"), "w") as f:
            f.write(_table(self.summary))
        device_archive.write(self.run_dir, self.dest)

    def run(self, steps: list, env: dict) -> None:
        """Runs ``steps`` in order within the budget (see the module docstring)."""
        stop = ""
        for step in steps:
            missing = [m for m in step.requires if not _importable(m)]
            left = self.left()
            if stop or step.skip or missing:
                reason = stop or step.skip or f"not installed: {', '.join(missing)}"
                self.record(step, {"status": "skipped", "seconds": 0, "reason": reason})
                continue
            if left < step.need_s:
                self.record(step, {"status": "skipped", "seconds": 0,
                                   "reason": f"time budget: {left:.0f} s left, needs "
                                             f"{step.need_s} s"})
                continue
            print(f"== {step.name} ({left:.0f} s left, cap {step.cap_s} s)", flush=True)
            log = os.path.join(self.run_dir, "logs", step.name + ".log")
            result = run_step(step, min(step.cap_s, left), env, log)
            print(f"   {result['status']} in {result['seconds']} s {result['reason']}",
                  flush=True)
            self.record(step, result)
            if step.name == "probe" and result["status"] != "ok":
                stop = f"probe {result['status']}: {result['reason']}"


def _env(run_dir: str, smoke: bool) -> dict:
    env = dict(os.environ)
    path = [os.path.join(run_dir, "site"), ROOT]
    env["PYTHONPATH"] = os.pathsep.join(path + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(JAXGAN_BENCH_RESULTS=os.path.join(run_dir, "results"), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONUNBUFFERED="1")
    if smoke:
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
        env.pop("XLA_FLAGS", None)  # one CPU device, as a single-device host
    else:  # a rerun on the same (warm) machine reuses the compiled programs
        env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".jax_cache"))
    return env


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true",
                   help="CPU, tiny sizes, accelerator-only rows skipped (CI)")
    p.add_argument("--budget", type=int, default=0,
                   help=f"wall-clock seconds (default {BUDGET_S['gpu']}; "
                        f"{BUDGET_S['smoke']} with --cpu-smoke)")
    p.add_argument("--data", default=DEFAULT_FOLDER, help="image folder of train_fewshot")
    p.add_argument("--wheels", default=os.path.join(ROOT, "wheels"), help="carried wheels")
    p.add_argument("--only", default="", help="comma list of step names (default: all)")
    p.add_argument("--cap-scale", type=float, default=1.0,
                   help="multiplies every step's cap and need (a slower or loaded machine; "
                        "with a larger --budget)")
    p.add_argument("--python", default=sys.executable, help="interpreter of the steps")
    args = p.parse_args(argv)
    if args.budget < 0:
        p.error(f"--budget {args.budget}: must be >= 0 (0 = the default)")
    if args.cap_scale <= 0:
        p.error(f"--cap-scale {args.cap_scale}: must be > 0")
    return args


def _probe_step(args, run_dir: str) -> device_steps.Step:
    return device_steps.Step(
        "probe", "jax.devices(), versions, nvidia-smi",
        [args.python, "benchmarks/device_probe.py", os.path.join(run_dir, "machine.json")]
        + ([] if args.cpu_smoke else ["--require-accelerator"]), 60, 5)


def main(argv=None) -> int:
    args = parse_args(argv)
    names = set(filter(None, args.only.split(",")))
    known = [s.name for s in [_probe_step(args, "")] + device_steps.plan(
        args.python, args.cpu_smoke, "", "", "")]
    if names - set(known):  # before anything is written
        print(f"--only: unknown steps {sorted(names - set(known))}; accepted: {known}",
              file=sys.stderr)
        return 2
    dest = destination()
    # with $OUT the run folder (wheels, training workdir) stays out of it: only the archive
    # and the summary go there (few files come back from a device call)
    run_dir = tempfile.mkdtemp(prefix="device_check_") if os.environ.get("OUT") else \
        os.path.join(dest, "run")
    check = Check(args, run_dir, dest)
    check.summary["wheels"] = install_wheels(args.wheels, os.path.join(run_dir, "site"),
                                             args.python)
    folder = args.data
    if os.path.isdir(folder):
        check.summary["data"] = folder
    else:
        folder = make_folder(os.path.join(run_dir, "data"))
        check.summary["data"] = (f"synthetic: 16 random 64x64 PNGs ({args.data} not found; "
                                 "the grids show noise-trained samples)")
    results = os.path.join(run_dir, "results")
    steps = [_probe_step(args, run_dir)] + device_steps.plan(args.python, args.cpu_smoke,
                                                             results, folder, run_dir)
    if names:
        steps = [s for s in steps if s.name == "probe" or s.name in names]
    for s in steps:
        s.cap_s, s.need_s = round(s.cap_s * args.cap_scale), round(s.need_s * args.cap_scale)
    signal.signal(signal.SIGTERM, _stop)
    try:
        check.run(steps, _env(run_dir, args.cpu_smoke))
    except KeyboardInterrupt as e:  # SIGTERM or Ctrl-C: the running step was killed
        check.summary["interrupted"] = str(e) or "KeyboardInterrupt"
        check.flush()
        return 130
    check.flush()
    print(_table(check.summary))
    print(f"archive: {os.path.join(dest, device_archive.ARCHIVE)}")
    if os.environ.get("OUT"):  # everything of value is in the archive
        shutil.rmtree(run_dir, ignore_errors=True)
    bad = [s for s in check.summary["steps"] if s["status"] not in ("ok", "skipped")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
