"""benchmarks/accelerator_suite.sh runs without TensorFlow, tensorflow-datasets and clu.

A bare GPU host has JAX, Flax, Optax, Orbax, chex and PyTorch but none of TF, tfds or clu
(issue 15). Both tests run in a subprocess whose ``sitecustomize`` puts a meta-path finder in
front that raises ``ImportError`` for those three packages, so any import of them on the
benchmark path fails the test: first every benchmark module and the step / loop / pipeline /
evaluation modules they use are imported, then ``accelerator_suite.sh --smoke`` runs end to end
(tiny sizes, results to a temporary folder) and every result file must be written.
"""

import os
import subprocess
import sys

import helpers
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu")
BENCHMARKS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "benchmarks"))
                    if f.endswith(".py") and f != "__init__.py")

BLOCKER = helpers.import_blocker_source(BLOCKED)


def _env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env.update(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", JAXGAN_SUITE_NO_PIP="1",
               PYTHON=sys.executable, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               JAXGAN_BENCH_RESULTS=str(tmp_path / "results"))
    env.pop("XLA_FLAGS", None)  # one CPU device, as a real host
    return env


def test_blocker_blocks(tmp_path):
    """The blocker itself works (else the tests below could not fail)."""
    out = subprocess.run([sys.executable, "-c", "import clu"], env=_env(tmp_path), cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr and "blocked" in out.stderr


@pytest.mark.slow
def test_every_benchmark_imports_without_tf(tmp_path):
    modules = [f"benchmarks.{b}" for b in BENCHMARKS] + [
        "jaxgan_lth.step", "jaxgan_lth.loop", "jaxgan_lth.pipeline", "jaxgan_lth.evaluation",
        "jaxgan_lth.parallel", "jaxgan_lth.checkpointing"]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]\n"
            "assert not bad, bad\nprint('ok', len(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "vs_pytorch" in BENCHMARKS and "train_throughput" in BENCHMARKS


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="bash script, Linux CI")
def test_smoke_suite_runs_without_tf(tmp_path):
    out_dir = tmp_path / "results"
    out = subprocess.run(["bash", "benchmarks/accelerator_suite.sh", "--smoke", "--out",
                          str(out_dir)], env=_env(tmp_path), cwd=ROOT, capture_output=True,
                         text=True, timeout=1500)
    log = (out_dir / "suite_log.md").read_text() if (out_dir / "suite_log.md").exists() else ""
    assert out.returncode == 0, log + out.stdout[-3000:] + out.stderr[-3000:]
    files = set(os.listdir(out_dir))
    for name in ("train_throughput", "multirun_throughput", "masking_cost", "augment_cost",
                 "sngan_components"):
        assert any(f.startswith(name + "_") and f.endswith(".json") for f in files), (name, files)
    assert any(f.startswith("inception_throughput_") for f in files), files
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        assert any(f.startswith("vs_pytorch_smoke_") for f in files), files
    assert "| failed" not in log and "timed out" not in log, log
