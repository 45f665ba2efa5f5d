"""launch/install.sh cuda picks jax[cuda12] or jax[cuda13] from nvidia-smi (issue 31, item 5).

A fake ``nvidia-smi`` on ``PATH`` prints the header of a real one with a chosen "CUDA Version";
launch/cuda_extra.sh (what install.sh cuda runs first) must print ``cuda13`` for a driver of
CUDA >= 13 and ``cuda12`` below, and without a usable nvidia-smi fail with a message naming
both choices. Nothing is installed: install.sh stops at that choice before apt or pip.

TensorFlow, tensorflow-datasets and clu are extras of setup.py (``tfds``, ``tensorboard``), not
core requirements; install.sh, run with python3/pip/apt faked, must still install them for the
default run (Fashion-MNIST through tfds) and for every test file that imports them.
"""

import ast
import os
import re
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


# ---- what install.sh installs (TF, tfds and clu are extras since issue 31) ------------------

TF_MODULES = {"tensorflow": "tensorflow-cpu", "tensorflow_datasets": "tensorflow-datasets",
              "clu": "clu", "tensorboard": "tensorboard"}


def _setup_requirements():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and n.targets[0].id == "INSTALL_REQUIRES")
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    extras = ast.literal_eval(next(k.value for k in call.keywords
                                   if k.arg == "extras_require"))
    return ast.literal_eval(assign.value), extras


def _names(requirements):
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in requirements}


def _pip_extras_of_install_sh(tmp_path, arg):
    """Runs install.sh ARG in a copy of launch/ with python3, pip and apt faked; returns the
    extras of its ``pip install -e`` call."""
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "launch"), repo / "launch")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id", "mkdir", "chmod", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    log = tmp_path / "calls.log"
    logger = f"#!{shutil.which('bash')}\necho \"$(basename \"$0\") $*\" >> {log}\n"
    (bin_dir / "basename").symlink_to(shutil.which("basename"))
    for fake in ("apt-get", "sudo"):
        (bin_dir / fake).write_text(logger)
        (bin_dir / fake).chmod(0o755)
    # python3 -m venv .venv makes a .venv/bin/python that only logs its arguments
    (bin_dir / "python3").write_text(
        f"#!{shutil.which('bash')}\nmkdir -p .venv/bin\n"
        f"printf '%s\\n' '#!{shutil.which('bash')}' 'echo \"python $*\" >> {log}' "
        "> .venv/bin/python\nchmod +x .venv/bin/python\n")
    (bin_dir / "python3").chmod(0o755)
    args = [shutil.which("bash"), "launch/install.sh"] + ([arg] if arg else [])
    out = subprocess.run(args, cwd=repo, env={"PATH": str(bin_dir)}, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    editable = [line for line in log.read_text().splitlines() if " -e " in line]
    assert len(editable) == 1, log.read_text()
    return re.search(r'\.\[([^\]]*)\]', editable[0]).group(1).split(",")


def test_core_requirements_have_no_tensorflow_tfds_or_clu():
    core, extras = _setup_requirements()
    assert not _names(core) & set(TF_MODULES.values()), core
    assert {"tensorflow-datasets", "tensorflow-cpu"} <= _names(extras["tfds"])
    assert {"clu", "tensorboard", "tensorflow-cpu"} <= _names(extras["tensorboard"])


@pytest.mark.parametrize("arg, want", [("", {"tfds", "tensorboard"}),
                                       ("test", {"tfds", "tensorboard", "test"}),
                                       ("cuda12", {"tfds", "tensorboard", "cuda12"})])
def test_install_sh_keeps_the_default_run_and_the_tests_working(tmp_path, arg, want):
    chosen = _pip_extras_of_install_sh(tmp_path, arg)
    assert set(chosen) == want
    core, extras = _setup_requirements()
    installed = _names(core).union(*(_names(extras[e]) for e in chosen))
    # the default run's Fashion-MNIST goes through tfds and TensorFlow
    assert {"tensorflow-datasets", "tensorflow-cpu"} <= installed
    if arg == "test":  # every TF-family module a test file imports is installed
        used = set()
        for name in os.listdir(os.path.join(ROOT, "tests")):
            if name.endswith(".py"):
                text = open(os.path.join(ROOT, "tests", name)).read()
                used |= {m for m in TF_MODULES
                         if re.search(rf"^\s*(import|from) {m}\b", text, re.M)}
        assert "tensorflow_datasets" in used  # the scan finds test_data.py's imports
        assert {TF_MODULES[m] for m in used} <= installed
