"""launch/install.sh cuda picks jax[cuda12] or jax[cuda13] from nvidia-smi (issue 31, item 5).

A fake ``nvidia-smi`` on ``PATH`` prints the header of a real one with a chosen "CUDA Version";
launch/cuda_extra.sh (what install.sh cuda runs first) must print ``cuda13`` for a driver of
CUDA >= 13 and ``cuda12`` below, and without a usable nvidia-smi fail with a message naming
both choices. Nothing is installed: install.sh stops at that choice before apt or pip.
"""

import ast
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.65.06              Driver Version: 580.65.06      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash scripts")


def _path(tmp_path, smi=None, smi_rc=0):
    """A PATH with only the tools the scripts use, plus a fake nvidia-smi when ``smi``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("bash", "sed", "head", "dirname", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    if smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!{shutil.which('bash')}\ncat <<'X'\n{smi}X\nexit {smi_rc}\n")
        fake.chmod(0o755)
    return str(bin_dir)


def _extra(tmp_path, **kw):
    return subprocess.run([shutil.which("bash"), "launch/cuda_extra.sh"], cwd=ROOT,
                          env={"PATH": _path(tmp_path, **kw)}, capture_output=True, text=True)


@pytest.mark.parametrize("cuda, want", [("12.2", "cuda12"), ("12.9", "cuda12"),
                                        ("13.0", "cuda13"), ("13.1", "cuda13"),
                                        ("14.0", "cuda13")])
def test_driver_version_picks_extra(tmp_path, cuda, want):
    out = _extra(tmp_path, smi=HEADER.format(cuda=cuda))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want


@pytest.mark.parametrize("kw, why", [({}, "nvidia-smi not found"),
                                     ({"smi": "NVIDIA-SMI has failed\n", "smi_rc": 9},
                                      "nvidia-smi failed"),
                                     ({"smi": "no version here\n"}, "no \"CUDA Version")])
def test_unknown_driver_says_which_to_choose(tmp_path, kw, why):
    out = _extra(tmp_path, **kw)
    assert out.returncode != 0 and out.stdout == ""
    assert why in out.stderr
    assert "install.sh cuda12" in out.stderr and "install.sh cuda13" in out.stderr


def test_install_cuda_stops_before_installing_without_nvidia_smi(tmp_path):
    out = subprocess.run([shutil.which("bash"), "launch/install.sh", "cuda"], cwd=ROOT,
                         env={"PATH": _path(tmp_path)}, capture_output=True, text=True)
    assert out.returncode != 0 and "nvidia-smi not found" in out.stderr, out.stderr
    assert "apt-get" not in out.stderr and "pip" not in out.stdout  # nothing ran after it
    bad = subprocess.run([shutil.which("bash"), "launch/install.sh", "cuda11"], cwd=ROOT,
                         env={"PATH": _path(tmp_path / "b")}, capture_output=True, text=True)
    assert bad.returncode == 2 and "'cuda11'" in bad.stderr and "cuda13" in bad.stderr


def test_setup_extras():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    extras = ast.literal_eval(next(k.value for k in call.keywords
                                   if k.arg == "extras_require"))
    assert extras["cuda12"] == ["jax[cuda12]>=0.10.2"]
    assert extras["cuda13"] == ["jax[cuda13]>=0.10.2"]
    assert extras["cuda"] == extras["cuda12"]  # the old name installs what it did before
