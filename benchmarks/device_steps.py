"""The steps of benchmarks/device_check.py, most valuable first, for a GPU or ``--cpu-smoke``.

Each :class:`Step` is one command run from the repository root in its own process (so a step
killed at its time cap, or out of memory, loses only itself). Order on an accelerator:

1. ``vs_pytorch_fp32``: the SNGAN D step, G step and iteration against the PyTorch reference
   on the same GPU, TF32 off on both sides; ``vs_pytorch_tf32`` and ``vs_pytorch_bf16``: the
   iteration with TF32, and with bfloat16 compute (float32 parameters) on both sides.
2. ``fid_vs_pytorch``: the FID Inception network against PyTorch's (torchvision's Inception-v3)
   with random weights on both sides, same cost (the 87 MB weight file cannot travel).
3. ``stylegan2_256`` and ``stylegan2_256_ada``: s/kimg and fraction of peak of the DiffAugment
   paper's 256 px StyleGAN2 (configs/stylegan2_fewshot.py ``baseline``: no augmentation) and
   of the same network with ADA (``diffaug_ada`` at p = 0.5; its cost does not depend on p:
   the per-sample ops are selected with ``jnp.where``).
4. ``train_fewshot``: a short real training run (``python -m jaxgan_lth.main``, the paper's
   StyleGAN2 preset, 200 steps) on the carried 100-shot folder; its sample grids and metrics
   go into the archive.
5. The other benchmarks: ours alone on the FID network at batches 50 and 200 (random
   weights), train throughput of the CIFAR configs, the SNGAN components,
   augmentation and masking cost, StyleGAN2's modulated conv, multi-run vmap (last: the
   largest memory).

``--cpu-smoke`` runs the same list with tiny sizes (the SNGAN iteration alone at widths 16,
n_dis 1; the training run with the main job's dcgan at 32 px for 2 steps); the rows that only
mean something on an accelerator (TF32, bf16, 256 px StyleGAN2, StyleGAN2's cost, multi-run
vmap) are listed as skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil

ACCEL_ONLY = "accelerator-only row (skipped by --cpu-smoke)"
NOTE = "benchmarks/device_check.sh"


@dataclasses.dataclass
class Step:
    """One step: ``cmd`` run from the repository root under a wall-clock cap.

    ``need_s``: skipped (not started) when less time than this is left in the budget.
    ``skip``: a reason not to run it at all in this mode. ``requires``: importable modules the
    step needs (checked with ``importlib.util.find_spec``, nothing imported). ``collect``:
    ``collect(run_dir)`` copies the step's artefacts into the archived folders, also after a
    timeout.
    """

    name: str
    what: str
    cmd: list[str]
    cap_s: int
    need_s: int
    env: dict = dataclasses.field(default_factory=dict)
    skip: str = ""
    requires: tuple = ()
    collect: object = None


def _collect_training(workdir: str, keep_grids: int = 2):
    """Copies the last ``keep_grids`` sample grids to ``grids/`` and the metrics, summary and
    config of ``workdir/train`` to ``train_fewshot/`` of the run folder."""
    def collect(run_dir: str) -> None:
        stage = os.path.join(workdir, "train")
        grids = sorted(glob.glob(os.path.join(stage, "samples", "*.png")))[-keep_grids:]
        os.makedirs(os.path.join(run_dir, "grids"), exist_ok=True)
        for g in grids:
            shutil.copyfile(g, os.path.join(run_dir, "grids", "train_fewshot_" +
                                            os.path.basename(g)))
        out = os.path.join(run_dir, "train_fewshot")
        os.makedirs(out, exist_ok=True)
        for name in ("metrics.jsonl", "summary.json"):
            if os.path.exists(os.path.join(stage, name)):
                shutil.copyfile(os.path.join(stage, name), os.path.join(out, name))
        if os.path.exists(os.path.join(workdir, "config.json")):
            shutil.copyfile(os.path.join(workdir, "config.json"),
                            os.path.join(out, "config.json"))
    return collect


def _training_cmd(py: str, smoke: bool, folder: str, workdir: str) -> list[str]:
    if smoke:  # the main job's dcgan on the folder at 32 px, 2 steps: StyleGAN2's smallest
        # (32 px) compiles for over a minute of CPU time, more than this whole step may take
        config, sets = "configs/default.py", {
            "stages": "train", "data.name": "folder", "data.resolution": 32,
            "data.channels": 3, "data.subset_fraction": 0.0, "train.num_steps": 2,
            "train.d_batch_size": 8, "train.g_batch_size": 8,
            "sample_every": 1, "checkpoint_every": 2, "log_every": 1, "num_samples": 4}
    else:  # the paper preset (256 px, batch 16, DiffAugment), 200 steps = 3.2 kimg
        config, sets = "configs/stylegan2_fewshot.py", {
            "train.num_steps": 200, "sample_every": 100, "checkpoint_every": 200,
            "log_every": 20, "num_samples": 16}
    sets.update({"data.folder": folder, "eval.enabled": False})
    return [py, "-m", "jaxgan_lth.main", f"--config={config}", f"--workdir={workdir}"] + [
        f"--config.{k}={v}" for k, v in sets.items()]


def _priority(py: str, smoke: bool, folder: str, run_dir: str) -> list[Step]:
    vs = [py, "benchmarks/vs_pytorch.py", "--note", NOTE]
    vs += ["--smoke"] if smoke else ["--repeats", "5"]
    both = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.4"}  # PyTorch shares the GPU in that process
    tt = [py, "benchmarks/train_throughput.py", "--warmup", "1", "--iters", "5", "--repeats", "3"]
    workdir = os.path.join(run_dir, "runs", "train_fewshot")
    accel = ACCEL_ONLY if smoke else ""
    return [
        Step("vs_pytorch_fp32", "SNGAN D/G step and iteration vs PyTorch, TF32 off on both",
             vs + ["--only", "sngan", "--precision", "fp32", "--out-tag", "fp32"]
             + (["--sngan-rows", "iteration"] if smoke else []), 100, 45 if not smoke else 20,
             both, requires=("torch",)),
        Step("vs_pytorch_tf32", "SNGAN iteration vs PyTorch, TF32 on both",
             vs + ["--only", "sngan", "--sngan-rows", "iteration", "--precision", "tf32",
                   "--out-tag", "tf32"], 60, 30, both, accel, ("torch",)),
        Step("vs_pytorch_bf16", "SNGAN iteration vs PyTorch, bf16 compute on both",
             vs + ["--only", "sngan", "--sngan-rows", "iteration", "--precision", "bf16",
                   "--out-tag", "bf16"], 60, 30, both, accel, ("torch",)),
        Step("fid_vs_pytorch", "FID Inception vs torchvision Inception-v3, random weights",
             vs + ["--only", "fid", "--fid-random-weights", "--precision", "fp32",
                   "--out-tag", "fid_random"], 60, 30, both, requires=("torch", "torchvision")),
        Step("stylegan2_256", "StyleGAN2 256 px s/kimg, no augmentation (baseline preset)",
             tt + ["--configs", "stylegan2_fewshot:baseline"], 110, 60, skip=accel),
        Step("stylegan2_256_ada", "StyleGAN2 256 px s/kimg with ADA (diffaug_ada preset)",
             tt + ["--configs", "stylegan2_fewshot:diffaug_ada", "--set", "ada.p_init=0.5"],
             110, 60, skip=accel),
        Step("train_fewshot", "short training on the 100-shot folder (GPU: StyleGAN2 256 px; "
             "--cpu-smoke: dcgan 32 px), sample grids",
             _training_cmd(py, smoke, folder, workdir), 120 if smoke else 150,
             30 if smoke else 70, collect=_collect_training(workdir)),
    ]


def _fid_throughput(py: str, smoke: bool, results: str) -> Step:
    fid = [py, "benchmarks/inception_throughput.py", "--random_weights", "--out_dir", results]
    fid += (["--batch_sizes", "2", "--num_batches", "1", "--input_size", "64"] if smoke else
            ["--batch_sizes", "50", "200", "--num_batches", "4"])
    return Step("fid_throughput", "FID Inception images/s alone, random weights (same cost)",
                fid, 60, 25 if not smoke else 15)


def _others(py: str, smoke: bool, results: str) -> list[Step]:
    b = f"{py} benchmarks/"
    if smoke:
        one = ["--warmup", "0", "--iters", "1", "--repeats", "1"]
        return [
            _fid_throughput(py, smoke, results),
            Step("train_throughput", "train throughput, default config",
                 f"{b}train_throughput.py --configs default".split() + one, 60, 15),
            Step("sngan_components", "SNGAN step components (tiny widths)",
                 f"{b}sngan_components.py --batch 4 --g_channels 16 --d_channels 16 "
                 "--iters 1".split(), 60, 15),
            Step("augment_cost", "augmentation cost (plain, DiffAugment)",
                 f"{b}augment_cost.py --configs default --variants plain,diffaug".split()
                 + one, 60, 15),
            Step("masking_cost", "masking cost", f"{b}masking_cost.py --configs default".split()
                 + one, 60, 15),
            Step("stylegan2_cost", "StyleGAN2 modconv and 32 px iteration", [], 0, 0,
                 skip=ACCEL_ONLY),
            Step("multirun_throughput", "K runs vmapped vs sequential", [], 0, 0,
                 skip=ACCEL_ONLY),
        ]
    return [
        _fid_throughput(py, smoke, results),
        Step("train_throughput", "train throughput of default, SNGAN and BigGAN",
             f"{b}train_throughput.py --configs default,sngan_cifar10,biggan_cifar10".split(),
             120, 45),
        Step("sngan_components", "SNGAN step components",
             f"{b}sngan_components.py --iters 10".split() + ["--note", NOTE], 60, 30),
        Step("augment_cost", "augmentation cost, SNGAN",
             f"{b}augment_cost.py --configs sngan_cifar10 --iters 3 --repeats 3".split(),
             90, 40),
        Step("masking_cost", "masking cost, SNGAN",
             f"{b}masking_cost.py --configs sngan_cifar10 --iters 5 --repeats 3".split(),
             60, 30),
        Step("stylegan2_cost", "StyleGAN2 modconv and 32 px iteration",
             f"{b}stylegan2_cost.py".split() + ["--note", NOTE], 60, 30),
        Step("multirun_throughput", "K = 1, 4, 8, 16 runs vmapped vs sequential",
             f"{b}multirun_throughput.py --configs default,sngan_cifar10 --ks 1,4,8,16 "
             "--modes sequential,vmap --iters 2 --repeats 3".split() + ["--note", NOTE],
             120, 60),
    ]


def plan(py: str, smoke: bool, results: str, folder: str, run_dir: str) -> list[Step]:
    """Every step in order (see the module docstring).

    Args:
        py: the Python interpreter the steps run with.
        smoke: ``--cpu-smoke`` sizes and skips.
        results: folder of the benchmark result files (``$JAXGAN_BENCH_RESULTS``).
        folder: the image folder of ``train_fewshot``.
        run_dir: the run folder (step work folders go to ``run_dir/runs``).
    """
    return _priority(py, smoke, folder, run_dir) + _others(py, smoke, results)
