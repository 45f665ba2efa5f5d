"""Sweeps: K runs of a stage over seeds and traced strengths (jaxgan_lth/training/sweep.py),
trained by
the one loop (jaxgan_lth/training/loop.py) vmapped or run by run; whole-config validation;
layering."""

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import helpers
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import advaug_sweep
from jaxgan_lth import checkpointing, config_lib, parallel, pipeline
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.sparsity import pruning
from jaxgan_lth.stages import lottery
from jaxgan_lth.training import loop, run_axis, sweep
from jaxgan_lth.training import step as step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "jaxgan_lth")


def _config(folder, seeds="0,1", hparams="", product=False, stage="train", **advaug):
    config = helpers.tiny_config(folder)
    config.stages = stage
    config.train.n_dis = 1  # quicker compile
    # See test_parallel: keeps rounding noise of zero gradients out of Adam's steps.
    config.train.adam_eps = 1e-4
    for k, v in advaug.items():
        config.advaug[k] = v
    config.sweep.stages = stage
    config.sweep.seeds = seeds
    config.sweep.hparams = hparams
    config.sweep.product = product
    return config


def _set(config, key, value):
    node = config
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    node[last] = value


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=10, size=20, channels=1)


# ---- the sweep section ----------------------------------------------------------------------


def test_zip_broadcast_product_and_names():
    config = _config("/x", seeds="0,1,2,3", hparams="adv_step_size=0.0,0.01,0.05,0.1",
                     mode="pgd")
    runs = sweep.parse_runs(config)
    assert [r.name for r in runs] == [
        "seed0_adv_step_size0", "seed1_adv_step_size0.01", "seed2_adv_step_size0.05",
        "seed3_adv_step_size0.1",
    ]
    assert runs[1].seed == 1 and runs[1].hparams == {"adv_step_size": 0.01}
    # One seed (or one value) is shared by all runs.
    config = _config("/x", seeds="5", hparams="adv_step_size=0.01,0.05; adv_lam=0.3",
                     mode="pgd")
    runs = sweep.parse_runs(config)
    assert [(r.seed, r.hparams) for r in runs] == [
        (5, {"adv_step_size": 0.01, "adv_lam": 0.3}),
        (5, {"adv_step_size": 0.05, "adv_lam": 0.3}),
    ]
    config = _config("/x", seeds="0,1", hparams="adv_step_size=0.0,0.1", product=True,
                     mode="pgd")
    runs = sweep.parse_runs(config)
    assert [r.name for r in runs] == [
        "seed0_adv_step_size0", "seed0_adv_step_size0.1",
        "seed1_adv_step_size0", "seed1_adv_step_size0.1",
    ]
    # no seeds: config.seed; no sweep: one run named by its seed
    config = _config("/x", seeds="")
    config.seed = 3
    assert [r.name for r in sweep.parse_runs(config)] == ["seed3"]
    assert [r.name for r in sweep.single_run(config)] == ["seed3"]
    # a swept imp stage: one run per distinct seed, strengths left to the ticket
    config = _config("/x", seeds="2,2,7", hparams="ema_decay=0.5,0.9", product=True)
    assert [(r.name, r.hparams) for r in sweep.seed_runs(config)] == [
        ("seed2", {}), ("seed7", {})]


def test_mismatched_run_lists_name_both_lengths():
    config = _config("/x", seeds="0,1,2", hparams="adv_step_size=0.0,0.01,0.05,0.1", mode="pgd")
    with pytest.raises(ValueError, match="seeds has 3 entries but adv_step_size has 4"):
        sweep.parse_runs(config)
    config = _config("/x", seeds="0", hparams="adv_step_size=0.0,0.01; adv_lam=0.1,0.2,0.3",
                     mode="pgd")
    with pytest.raises(ValueError, match="adv_step_size has 2 entries but adv_lam has 3"):
        sweep.parse_runs(config)


@pytest.mark.parametrize(
    "section,match",
    [
        ({"hparams": "adv_stepsize=0.1"},
         r"unknown or inactive strength 'adv_stepsize'; accepted here: \(.*'adv_step_size'"),
        ({"hparams": "adv_step_size 0.1"}, "must look like 'name=v1,v2"),
        ({"hparams": "adv_step_size=0.1,abc"}, "not a number"),
        ({"hparams": "adv_step_size=0.1,inf"}, "finite numbers"),
        ({"hparams": "adv_step_size=0.1;adv_step_size=0.2"}, "twice"),
        ({"seeds": "0,0"}, "identical runs"),
        ({"strategy": "pmap"}, r"config.sweep.strategy = 'pmap'; accepted: \('vmap', 'loop'\)"),
    ],
)
def test_bad_sweep_sections_are_named(section, match):
    config = _config("/x", mode="pgd")
    config.sweep.update(section)
    with pytest.raises(ValueError, match=match):
        sweep.parse_runs(config)


def test_bad_seeds_are_named():
    assert sweep.parse_seeds("0, 2", 9) == [0, 2] and sweep.parse_seeds(3, 9) == [3]
    assert sweep.parse_seeds([4, 5], 9) == [4, 5] and sweep.parse_seeds("", 9) == [9]
    with pytest.raises(ValueError, match="'x' is not an integer seed"):
        sweep.parse_seeds("0,x", 0)
    with pytest.raises(ValueError, match="0.5 is not an integer seed"):
        sweep.parse_seeds((0, 0.5), 0)
    with pytest.raises(ValueError, match="True is not an integer seed"):
        sweep.parse_seeds([True], 0)


def _with_python_values(config, **section):
    """``config.sweep`` keys set to Python lists / dicts, as a config file may write them."""
    with config.sweep.ignore_type():
        for k, v in section.items():
            config.sweep[k] = v
    return config


def test_hparams_as_a_dict_and_seeds_as_a_list(folder, tmp_path):
    config = _config(folder, mode="pgd")
    _with_python_values(config, seeds=[0, 1],
                        hparams={"adv_step_size": [0.0, 0.05], "adv_lam": 0.3})
    runs = sweep.parse_runs(config)
    # (a ConfigDict keeps its keys sorted: the names list the strengths alphabetically)
    assert [(r.name, r.seed, r.hparams) for r in runs] == [
        ("seed0_adv_lam0.3_adv_step_size0", 0, {"adv_step_size": 0.0, "adv_lam": 0.3}),
        ("seed1_adv_lam0.3_adv_step_size0.05", 1, {"adv_step_size": 0.05, "adv_lam": 0.3}),
    ]
    # the same section as a string gives the same runs
    assert runs == sweep.parse_runs(_config(
        folder, seeds="0,1", hparams="adv_lam=0.3; adv_step_size=0,0.05", mode="pgd"))
    # a whole section replaced by a dict (what a config file can write) validates, and its
    # config.json is stable (a rerun is no config change)
    config.sweep = ml_collections.ConfigDict({
        "stages": "train", "seeds": (0, 1), "product": True, "strategy": "loop",
        "hparams": {"adv_step_size": (0.0, 0.05)}})
    stage_cfgs = pipeline.validate_config(config)
    assert [r.name for r in stages_lib.runs_of(config, "train", stage_cfgs["train"])] == [
        "seed0_adv_step_size0", "seed0_adv_step_size0.05",
        "seed1_adv_step_size0", "seed1_adv_step_size0.05"]
    config_lib.write_or_check(config, str(tmp_path))
    config_lib.write_or_check(config, str(tmp_path))
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["sweep"]["hparams"] == {"adv_step_size": [0.0, 0.05]}


@pytest.mark.parametrize(
    "section,advaug,match",
    [
        # unknown name: the accepted names are listed
        ({"hparams": {"adv_stepsize": [0.1]}}, {"mode": "pgd"},
         r"unknown or inactive strength 'adv_stepsize'; accepted here: "
         r"\('ema_decay', 'adv_step_size', 'adv_radius', 'adv_lam'\)"),
        # strength of a part the stage does not switch on (AdvAug off, LeCam off)
        ({"hparams": {"adv_step_size": [0.0, 0.1]}}, {"mode": "none"},
         r"inactive strength 'adv_step_size'; accepted here: \('ema_decay',\)"),
        ({"hparams": {"lecam_weight": [0.1, 0.3]}}, {"mode": "pgd"},
         "inactive strength 'lecam_weight'"),
        # a strength the configured AdvAug mode does not read
        ({"hparams": {"adv_noise_scale": [0.1, 0.2]}}, {"mode": "pgd"},
         "inactive strength 'adv_noise_scale'"),
        ({"hparams": {"adv_radius": [0.1, 0.2]}}, {"mode": "pgd"}, "advaug.radius = 0"),
        # zipped lists of different lengths
        ({"seeds": [0, 1, 2], "hparams": {"adv_step_size": [0.0, 0.1]}}, {"mode": "pgd"},
         "seeds has 3 entries but adv_step_size has 2"),
        # out of range: the key and the accepted range are named
        ({"hparams": {"ema_decay": [0.9, 1.0]}}, {},
         r"config.sweep.hparams: ema_decay = 1.0 must be in \[0.0, 1.0\)"),
        ({"hparams": {"adv_lam": [0.5, 1.5]}}, {"mode": "pgd"},
         r"adv_lam = 1.5 must be in \[0.0, 1.0\]"),
        ({"hparams": {"adv_step_size": [-0.1]}}, {"mode": "pgd"},
         r"adv_step_size = -0.1 must be in \[0.0, inf\)"),
        ({"hparams": {"adv_step_size": ["a"]}}, {"mode": "pgd"}, "not a number"),
        ({"seeds": [0, 1.5]}, {}, r"1.5 is not an integer seed"),
    ],
)
def test_bad_python_sweep_values_are_named(folder, tmp_path, section, advaug, match):
    config = _config(folder, seeds="0", **advaug)
    _with_python_values(config, **section)
    with pytest.raises(ValueError, match=match):
        sweep.parse_runs(config)
    workdir = tmp_path / "w"
    with pytest.raises(ValueError, match=match):
        pipeline.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()


def test_strengths_are_checked_against_the_swept_stage(folder):
    """The ticket has its own parts: AdvAug on for the ticket only makes adv_* sweepable
    there, and LeCam's strengths only where its weight is > 0."""
    config = _config(folder, seeds="0", hparams="adv_step_size=0,0.1", stage="imp,ticket")
    config.sweep.stages = "ticket"
    config.ticket.advaug.mode = "pgd"
    stage_cfgs = pipeline.validate_config(config)
    assert len(stages_lib.runs_of(config, "ticket", stage_cfgs["ticket"])) == 2
    assert len(stages_lib.runs_of(config, "imp", stage_cfgs["imp"])) == 1
    config.ticket.advaug.mode = "none"
    with pytest.raises(ValueError, match="inactive strength 'adv_step_size'"):
        pipeline.validate_config(config)
    config.sweep.hparams = "lecam_weight=0.1,0.3"
    with pytest.raises(ValueError, match="inactive strength 'lecam_weight'"):
        pipeline.validate_config(config)
    config.ticket.lecam.weight = 0.3
    assert [r.hparams for r in sweep.parse_runs(config, stages_lib.stage_config(
        config, "ticket"))] == [{"lecam_weight": 0.1}, {"lecam_weight": 0.3}]
    # a swept imp stage needs its ticket swept too (one mask per IMP run)
    config.sweep.stages = "imp"
    config.sweep.hparams = ""
    config.sweep.seeds = "0,1"
    with pytest.raises(ValueError, match="sweeps 'imp'.*not 'ticket'"):
        pipeline.validate_config(config)
    # seeds and strategy of a swept imp stage are checked before anything runs
    config.stages = "imp"
    config.sweep.seeds = "0,x"
    with pytest.raises(ValueError, match="'x' is not an integer seed"):
        pipeline.validate_config(config)
    config.sweep.seeds = "0,1"
    config.sweep.strategy = "pmap"
    with pytest.raises(ValueError, match="config.sweep.strategy = 'pmap'"):
        pipeline.validate_config(config)


def test_advaug_sweep_config_describes_eight_runs():
    config = advaug_sweep.get_config()
    assert config.stages == "train" and config.advaug.mode == "pgd"
    stage_cfgs = pipeline.validate_config(config)
    runs = stages_lib.runs_of(config, "train", stage_cfgs["train"])
    assert len(runs) == 8 and runs[0].name == "seed0_adv_step_size0"
    assert runs[-1].name == "seed1_adv_step_size0.1"


# ---- whole-config validation: nothing is written before the config is known to be good -----


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("stages", "imp,finetune", r"config.stages = 'imp,finetune'.*'finetune'"),
        ("train.loss", "wgan", r"config.train.loss = 'wgan'.*'hinge', 'nonsaturating'"),
        ("train.n_dis", 0, "config.train.n_dis = 0"),
        ("train.ema_decay", 1.0, r"config.train.ema_decay = 1.0 must be in \[0, 1\)"),
        ("train.ema_buffers", "mean", "config.train.ema_buffers = 'mean'"),
        ("train.g_batch_size", 10, "train.g_batch_size 10 is not divisible by the 4 devices"),
        ("data.channels", 2, r"config.data.channels = 2.*\(1, 3\)"),
        ("data.name", "mnist", "data.name='mnist'"),
        ("data.split", "test", "data.split='test'"),
        ("eval.reference_split", "test[:500]", "eval.reference_split='test\\[:500\\]'"),
        ("eval.num_samples", 1, "eval.num_samples=1"),
        ("model.name", "resnet", r"config.model.name = 'resnet'; accepted: \("),
        ("model.latent_dim", 0, "latent_dim"),
        ("sparsity.g_ratio", 1.5, r"config.sparsity.g_ratio = 1.5 must be in \(0, 1\)"),
        ("sparsity.prune", "x", "config.sparsity.prune = 'x'"),
        ("imp.rounds", -1, "config.imp.rounds = -1"),
        ("imp.rewind_step", 99, "config.imp.rewind_step = 99"),
        ("ticket.mask_type", "magic", r"config.ticket.mask_type = 'magic'; accepted: \('imp'"),
        ("ticket.num_steps", 0, "config.ticket.num_steps = 0"),
        ("diffaug.policy", "zoom", "config.diffaug.policy: .*'zoom'.*color, translation"),
        ("ticket.diffaug.policy", "zoom", "config.ticket.diffaug.policy"),
        ("advaug.mode", "fgsm", r"config.advaug.mode = 'fgsm'.*'none', 'pgd', 'noise'"),
        ("advaug.num_steps", 0, "config.advaug.num_steps = 0"),
        ("ticket.advaug.lam", 2.0, r"config.ticket.advaug.lam: adv_lam = 2.0 must be in \[0.0"),
        ("ticket.advaug.networks", "x", "config.ticket.advaug.networks = 'x'"),
        ("lecam.decay", 1.0, r"config.lecam.decay: lecam_decay = 1.0 must be in \[0.0, 1.0\)"),
        ("ticket.lecam.start", -1, "config.ticket.lecam.start = -1"),
        ("sweep.stages", "train", "config.sweep.stages names 'train' but config.stages"),
        ("sweep.stages", "eval", "'eval' cannot be swept"),
        ("sweep.hparams", "adv_lam=0.1,0.2", "inactive strength 'adv_lam'"),
    ],
)
def test_a_bad_value_in_any_section_fails_before_any_folder_exists(
        folder, tmp_path, key, value, match):
    config = helpers.tiny_config(folder)
    config.stages = "imp,ticket"
    config.sweep.stages = "ticket"
    config.sweep.seeds = "0,1"
    config.ticket.advaug.mode = "none"
    if key.startswith("eval."):
        config.eval.enabled = True
        config.eval.reference_split = "train"
    _set(config, key, value)
    workdir = tmp_path / "run" / "w"
    with pytest.raises(ValueError, match=match):
        pipeline.train_and_evaluate(config, str(workdir))
    assert not (tmp_path / "run").exists()


def test_a_missing_data_folder_fails_before_any_folder_exists(folder, tmp_path):
    config = helpers.tiny_config(str(tmp_path / "no_images"))
    with pytest.raises(FileNotFoundError, match="no_images"):
        pipeline.train_and_evaluate(config, str(tmp_path / "w"))
    assert sorted(os.listdir(tmp_path)) == []


# ---- the run axis -----------------------------------------------------------------------------


@pytest.mark.slow
def test_vmapped_runs_equal_separate_runs(folder, tmp_path):
    config = _config(folder, seeds="0,1,2", hparams="adv_step_size=0.0,0.02,0.1",
                     mode="pgd", networks="gd")
    engine = loop.build_engine(config, str(tmp_path / "w"))  # 4-device data mesh
    assert engine.mesh.devices.size == 4
    runs = sweep.parse_runs(config)
    base = {n: float(v) for n, v in engine.fns.hparams.items()}
    hparams = [{n: jnp.float32(r.hparams.get(n, base[n])) for n in base} for r in runs]
    starts = [loop.initial_state(engine, r.seed) for r in runs]
    masks = [loop.dense_masks(s) for s in starts]
    # "vmap": one batched program of the 3 runs
    vmapped = run_axis.RunAxis(engine.fns, 3, "vmap")
    states = vmapped.join([jax.tree.map(jnp.copy, s) for s in starts])
    metrics = []
    for _ in range(3):
        states, m = vmapped(states, run_axis.stack(masks), engine.data, run_axis.stack(hparams))
        metrics.append(m)
    states = jax.device_get(vmapped.split(states))
    # "loop": each run on its own, the single-run compiled iteration on its own state
    looped = run_axis.RunAxis(engine.fns, 3, "loop")
    separate = looped.join([jax.tree.map(jnp.copy, s) for s in starts])
    for t in range(3):
        separate, m = looped(separate, masks, engine.data, hparams)
        for k, v in run_axis.host_metrics(m).items():
            np.testing.assert_allclose(metrics[t][k], v, rtol=1e-5, atol=1e-6,
                                       err_msg=f"step {t} {k}")
    separate = jax.device_get(looped.split(separate))
    for i, r in enumerate(runs):
        flat = jax.tree_util.tree_flatten_with_path(separate[i])[0]
        for (path, x), y in zip(flat, jax.tree.leaves(states[i])):
            np.testing.assert_allclose(
                np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6,
                err_msg=f"run {r.name} {jax.tree_util.keystr(path)}")
    # the runs differ by seed and step size; AdvAug's adversarial loss grows with gamma
    assert np.any(np.asarray(jax.tree.leaves(states[0]["d"])[0])
                  != np.asarray(jax.tree.leaves(states[1]["d"])[0]))
    adv = metrics[0]["d_loss_adv"] - metrics[0]["d_loss_clean"]
    assert adv[0] == pytest.approx(0.0, abs=1e-6) and adv[2] > adv[1] > 0


@pytest.mark.slow
def test_run_axis_errors_are_named(folder, tmp_path):
    config = _config(folder)
    engine = loop.build_engine(config, str(tmp_path / "w"))
    with pytest.raises(ValueError, match=r"run-axis strategy 'pmap'; accepted: \('vmap', 'loop'\)"):
        run_axis.RunAxis(engine.fns, 2, "pmap")
    runs = sweep.parse_runs(config)
    like = jax.eval_shape(engine.fns.init, jax.random.key(0))
    with pytest.raises(ValueError, match=r"2 runs \['seed0', 'seed1'\] but 1 mask trees"):
        loop.train_runs(engine, str(tmp_path / "a"), runs=runs, init_states=lambda: [],
                        masks=[loop.dense_masks(like)], num_steps=1)
    with pytest.raises(ValueError, match=r"2 runs .* but init_states\(\) gave 1 states"):
        loop.train_runs(engine, str(tmp_path / "b"), runs=runs,
                        init_states=lambda: [loop.initial_state(engine, 0)],
                        masks=[loop.dense_masks(like)] * 2, num_steps=1)
    # checkpoints of other runs in the stage folder are refused
    loop.train_runs(engine, str(tmp_path / "c"), runs=runs,
                    init_states=lambda: [loop.initial_state(engine, r.seed) for r in runs],
                    masks=[loop.dense_masks(like)] * 2, num_steps=1)
    other = [sweep.RunSpec("seed0", 0, {}), sweep.RunSpec("seed5", 5, {})]
    with pytest.raises(ValueError, match=r"holds checkpoints of runs \['seed0', 'seed1'\]"):
        loop.train_runs(engine, str(tmp_path / "c"), runs=other, init_states=lambda: [],
                        masks=[loop.dense_masks(like)] * 2, num_steps=2)


def test_a_batch_not_divisible_by_the_devices_is_refused(folder, tmp_path):
    config = _config(folder)
    config.train.g_batch_size = 10
    with pytest.raises(ValueError, match=r"g_batch_size 10 is not divisible by the 4 devices"):
        loop.build_engine(config, str(tmp_path / "w"))
    config.train.g_batch_size = 8
    with parallel.use_devices(jax.devices()[:3]):
        with pytest.raises(ValueError, match="by the 3 devices"):
            pipeline.validate_config(config)
    assert parallel.create_mesh().devices.size == 4  # the device scope ended


# ---- a swept stage end to end ------------------------------------------------------------------


class _FakeEvaluator:
    """Stands in for the Inception FID (minutes on this CPU): 'FID' = mean |EMA sample|."""

    def evaluate(self, sample_fn, raw_sample_fn=None):
        z = jax.random.normal(jax.random.key(0), (4, 8))
        value = float(np.mean(np.abs(np.asarray(sample_fn(z, None, jax.random.key(1))))))
        return {"fid": value, "kid": 0.0, "kid_std": 0.0}

    def protocol(self):
        return {"generated": 4, "reference": "fake"}


def _final_states(engine, stage_dir, k, step):
    ck = checkpointing.Checkpointer(os.path.join(stage_dir, "checkpoints"))
    stacked, meta = ck.restore(step, loop.abstract_state(engine, k))
    ck.close()
    return jax.device_get(stacked), meta


@pytest.mark.slow
def test_swept_train_stage_writes_every_run_and_resumes(folder, tmp_path, monkeypatch):
    config = _config(folder, seeds="0,1", hparams="ema_decay=0.5,0.9")
    config.keep_checkpoints = 2
    config.eval.enabled = True
    config.eval.reference_split = "train"  # an image folder is its own FID reference
    config.eval.diagnostic = False
    monkeypatch.setattr(loop, "make_evaluator", lambda *a: _FakeEvaluator())
    full = str(tmp_path / "full")
    summary = pipeline.train_and_evaluate(config, full)["stages"]["train"]
    names = ["seed0_ema_decay0.5", "seed1_ema_decay0.9"]
    assert summary["num_runs"] == 2 and summary["strategy"] == "loop"
    assert sorted(summary["runs"]) == names
    stage = os.path.join(full, "train")
    for name in names:
        run_dir = os.path.join(stage, "runs", name)
        assert sorted(os.listdir(os.path.join(run_dir, "samples"))) == [
            "step_000002.png", "step_000004.png"]
        assert any("tfevents" in f for f in os.listdir(run_dir))
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        assert s["steps"] == 4 and s["diverged_at_step"] is None
        assert np.isfinite(s["last_metrics"]["g_loss"])
    assert summary["runs"][names[1]]["swept"] == {"ema_decay": pytest.approx(0.9)}
    fids = [summary["runs"][n]["final_fid"] for n in names]  # one evaluation per run
    assert fids[0] != fids[1] and all(summary["runs"][n]["best_step"] == 4 for n in names)
    with open(os.path.join(stage, "sweep.json")) as f:
        assert sorted(json.load(f)) == names
    with open(os.path.join(stage, "sweep.md")) as f:
        table = f.read()
    assert "| run | seed | ema_decay |" in table and "| seed1_ema_decay0.9 | 1 | 0.9 |" in table
    ck = checkpointing.Checkpointer(os.path.join(stage, "checkpoints"))
    assert ck.all_steps() == [0, 2, 4] and ck.metadata(4)["runs"] == names
    ck.close()
    # one run of the sweep, by name, as the evaluation CLI restores it
    engine = loop.build_engine(stages_lib.stage_config(config, "train"), full)
    one, step = loop.load_run_state(engine, stage, run=names[1])
    stacked, _ = _final_states(engine, stage, 2, 4)
    assert step == 4
    for x, y in zip(jax.tree.leaves(jax.device_get(one)), jax.tree.leaves(stacked)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y)[1])

    # A sweep killed after the step-2 checkpoint: the same command continues from step 2.
    killed = str(tmp_path / "killed")
    shutil.copytree(full, killed)
    shutil.rmtree(os.path.join(killed, "train", "checkpoints", "4"))
    again = pipeline.train_and_evaluate(config, killed)["stages"]["train"]
    assert all(again["runs"][n]["steps_this_session"] == 2 for n in names)
    a = _final_states(engine, stage, 2, 4)[0]
    b = _final_states(engine, os.path.join(killed, "train"), 2, 4)[0]
    assert list(np.asarray(a["step"])) == [4, 4]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    # Another sweep in the same workdir is refused (config.json guard).
    config.sweep.hparams = "ema_decay=0.5,0.8"
    with pytest.raises(ValueError, match="sweep.hparams"):
        pipeline.train_and_evaluate(config, full)


# ---- a swept ticket: vmapped = separate runs, resume after a kill ------------------------------

TICKET_SEEDS = (0, 1, 2)
TICKET_STEP_SIZES = (0.0, 0.02, 0.1)


def _ticket_sweep_config(folder):
    """IMP (one round, seed 0), then 3 tickets zipped over seeds x AdvAug step sizes, vmapped."""
    config = _config(folder, stage="imp,ticket")
    config.imp.rounds = 1
    config.imp.num_steps = 2
    config.ticket.num_steps = 4
    # AdvAug PGD on G and D, no DiffAugment: the programs of
    # test_vmapped_runs_equal_separate_runs (the compilation cache then serves them)
    config.ticket.diffaug.policy = ""
    config.ticket.advaug.mode = "pgd"
    config.ticket.advaug.networks = "gd"
    config.sweep.stages = "ticket"
    config.sweep.seeds = ",".join(map(str, TICKET_SEEDS))
    config.sweep.hparams = "adv_step_size=" + ",".join(map(str, TICKET_STEP_SIZES))
    config.sweep.product = False
    config.sweep.strategy = "vmap"
    config.sample_every = 100
    config.checkpoint_every = 2
    return config


@pytest.fixture(scope="module")
def ticket_sweep(folder, tmp_path_factory):
    """An uninterrupted imp + vmapped 3-run ticket sweep (shared by the tests below)."""
    workdir = str(tmp_path_factory.mktemp("ticket_sweep"))
    config = _ticket_sweep_config(folder)
    summary = pipeline.train_and_evaluate(config, workdir)
    return config, workdir, summary


def _ticket_engine(config, workdir):
    return loop.build_engine(stages_lib.stage_config(config, "ticket"), workdir)


@pytest.mark.slow
def test_vmapped_ticket_sweep_equals_separate_ticket_runs(ticket_sweep, tmp_path):
    config, workdir, summary = ticket_sweep
    ticket = summary["stages"]["ticket"]
    names = ["seed0_adv_step_size0", "seed1_adv_step_size0.02", "seed2_adv_step_size0.1"]
    assert ticket["num_runs"] == 3 and sorted(ticket["runs"]) == names
    assert ticket["round"] == 1 and abs(ticket["g_density"] - 0.8) < 1e-3
    stage = os.path.join(workdir, "ticket")
    assert os.path.exists(os.path.join(stage, "sweep.md"))
    engine = _ticket_engine(config, workdir)
    swept, meta = _final_states(engine, stage, 3, config.ticket.num_steps)
    assert meta["runs"] == names
    finals = []
    for i, (seed, size) in enumerate(zip(TICKET_SEEDS, TICKET_STEP_SIZES)):
        # One plain ticket run: its own workdir holding the same IMP (theta_0 and masks),
        # config.seed and ticket.advaug.step_size set as the run's, no sweep.
        single = str(tmp_path / f"single{i}")
        os.makedirs(single)
        for sub in ("imp", "masks"):
            shutil.copytree(os.path.join(workdir, sub), os.path.join(single, sub))
        cfg = _ticket_sweep_config(config.data.folder)
        cfg.stages = "ticket"
        cfg.seed = seed
        cfg.ticket.advaug.step_size = size
        cfg.sweep.stages = ""
        row = pipeline.train_and_evaluate(cfg, single)["stages"]["ticket"]
        assert "runs" not in row and row["round"] == 1
        state, step = loop.load_run_state(engine, os.path.join(single, "ticket"))
        assert step == config.ticket.num_steps
        state = jax.device_get(state)
        finals.append(state)
        for n in ("g", "d", "ema"):  # the networks' parameters and buffers
            flat = jax.tree_util.tree_flatten_with_path(state[n])[0]
            for (path, x), y in zip(flat, jax.tree.leaves(swept[n])):
                np.testing.assert_allclose(
                    np.asarray(x), np.asarray(y)[i], rtol=1e-5, atol=1e-6,
                    err_msg=f"run {names[i]} {n}{jax.tree_util.keystr(path)}")
        assert int(state["step"]) == int(swept["step"][i]) == config.ticket.num_steps
    # the runs differ (so the comparison above is not vacuous), G's pruned weights are 0
    g = [jax.tree.leaves(s["g"]["params"]) for s in finals]
    assert all(any(np.any(a != b) for a, b in zip(g[0], g[j])) for j in (1, 2))
    lot = lottery.Lottery(config, workdir, pipeline.validate_config(config))
    mask = lot.load_masks(1, jax.eval_shape(engine.fns.init, jax.random.key(0)))[0]
    assert pruning.density(mask["g"]) < 1.0
    for m, p in zip(jax.tree.leaves(mask["g"]), jax.tree.leaves(swept["g"]["params"])):
        assert np.all(np.asarray(p)[:, ~np.asarray(m)] == 0)


@pytest.mark.slow
def test_ticket_sweep_killed_mid_run_resumes_to_the_same_result(
        ticket_sweep, tmp_path, monkeypatch):
    config, full, _ = ticket_sweep
    killed = str(tmp_path / "killed")
    real_call = run_axis.RunAxis.__call__
    calls = []

    def call_with_kill(self, *args):
        calls.append(self.strategy)
        # imp takes 2 iterations (one run); the vmapped ticket dies in its 3rd iteration,
        # after its step-2 checkpoint
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated kill")
        return real_call(self, *args)

    monkeypatch.setattr(run_axis.RunAxis, "__call__", call_with_kill)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_and_evaluate(config, killed)
    monkeypatch.setattr(run_axis.RunAxis, "__call__", real_call)
    assert calls == ["loop", "loop", "vmap", "vmap", "vmap"]
    ck = checkpointing.Checkpointer(os.path.join(killed, "ticket", "checkpoints"))
    assert ck.all_steps() == [0, 2]
    ck.close()
    again = pipeline.train_and_evaluate(config, killed)["stages"]["ticket"]
    with open(os.path.join(killed, "ticket", "sweep.json")) as f:
        assert [r["steps_this_session"] for r in json.load(f).values()] == [2, 2, 2]
    assert again["num_runs"] == 3
    engine = _ticket_engine(config, full)
    a, _ = _final_states(engine, os.path.join(full, "ticket"), 3, 4)
    b, _ = _final_states(engine, os.path.join(killed, "ticket"), 3, 4)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---- no import cycles; one direction data/models/parts -> step -> loop -> pipeline -> main -------


def import_graph(package_dir):
    """``{module: {imported modules of the package}}`` from the AST of every file, imports
    inside functions included (a lazy import is still a dependency)."""
    root = os.path.dirname(package_dir)
    files = {}
    for d, _, fs in os.walk(package_dir):
        for f in fs:
            if f.endswith(".py"):
                p = os.path.join(d, f)
                m = os.path.relpath(p, root)[:-3].replace(os.sep, ".")
                files[m[: -len(".__init__")] if m.endswith(".__init__") else m] = p
    top = os.path.basename(package_dir)
    graph = {m: set() for m in files}
    for m, p in files.items():
        pkg = m if p.endswith("__init__.py") else m.rpartition(".")[0]
        with open(p) as fh:
            tree = ast.parse(fh.read(), p)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # "from pkg import name": the submodule pkg.name when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                if not (t == top or t.startswith(top + ".")):
                    continue
                while t not in files:
                    t = t.rpartition(".")[0]
                # a package and its own submodules (package __init__ re-exports) are one unit
                if t != m and not m.startswith(t + ".") and not t.startswith(m + "."):
                    graph[m].add(t)
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(v, stack):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w, stack)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v, [])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(str(pkg))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("")
    assert find_cycle(import_graph(str(pkg))) is None


def test_no_import_cycle_inside_the_package():
    graph = import_graph(PACKAGE)
    step, loop = "jaxgan_lth.training.step", "jaxgan_lth.training.loop"
    assert {step, loop, "jaxgan_lth.pipeline"} <= set(graph)
    assert step in graph[loop]  # the graph sees real imports
    assert "jaxgan_lth.evaluation.evaluator" in graph["jaxgan_lth.training.loop"]  # function-level
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


#: Layers, lowest first: a module imports only modules of lower layers. ``sweep`` (run specs)
#: and ``step`` sit side by side between the parts and the loop; the run axis (``run_axis``,
#: K runs of the step's iteration) sits between the step and the loop; the stage interface
#: (``stages.base``) and the ticket baselines sit on the loop; the stages on the interface (the
#: lottery's machinery below the stages that share it); the stage registry (the ``stages``
#: package) on all stages, the pipeline and the report on the registry; CLIs on top.
LAYERS = [
    None,  # every other module: data, models, parts, augment, sparsity, evaluation, ...
    {"jaxgan_lth.training.sweep", "jaxgan_lth.training.step"},
    {"jaxgan_lth.training.run_axis"},
    {"jaxgan_lth.training.loop"},
    {"jaxgan_lth.stages.base", "jaxgan_lth.stages.baselines"},
    {"jaxgan_lth.stages.train", "jaxgan_lth.stages.dst", "jaxgan_lth.stages.lottery_config"},
    {"jaxgan_lth.stages.lottery"},
    {"jaxgan_lth.stages.imp", "jaxgan_lth.stages.ticket", "jaxgan_lth.stages.slimming"},
    {"jaxgan_lth.stages"},
    {"jaxgan_lth.pipeline", "jaxgan_lth.report"},
    {"jaxgan_lth.main", "jaxgan_lth.evaluate", "jaxgan_lth.proj.study"},
]


def test_layout_keeps_the_top_level_short_and_project_analysis_out_of_the_core():
    top = sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py") and f != "__init__.py")
    assert len(top) <= 10, top  # issue 30: the rest lives in subpackages (training/, stages/, ...)
    graph = import_graph(PACKAGE)
    into_proj = sorted((m, t) for m, ts in graph.items() for t in ts
                       if t.startswith("jaxgan_lth.proj") and not m.startswith("jaxgan_lth.proj"))
    assert not into_proj, f"the core imports project analysis: {into_proj}"


def _layer(module):
    for i, layer in enumerate(LAYERS[1:], 1):
        if module in layer:
            return i
    return 0


def test_imports_go_one_way_from_parts_to_step_loop_pipeline_and_main():
    graph = import_graph(PACKAGE)
    for layer in LAYERS[1:]:
        assert layer <= set(graph), layer
    bad = sorted((m, t) for m, ts in graph.items() for t in ts
                 if _layer(t) > 0 and _layer(t) >= _layer(m))
    assert not bad, f"imports against the layering {LAYERS[1:]}: {bad}"
    # the documented chain is really there
    assert {"jaxgan_lth.parts", "jaxgan_lth.models"} <= graph["jaxgan_lth.training.step"]
    assert {"jaxgan_lth.training.step", "jaxgan_lth.training.sweep"} <= graph[
        "jaxgan_lth.training.loop"]
    assert "jaxgan_lth.training.loop" in graph["jaxgan_lth.stages.base"]
    assert "jaxgan_lth.stages" in graph["jaxgan_lth.pipeline"]
    assert "jaxgan_lth.pipeline" in graph["jaxgan_lth.main"]


def test_shared_import_cycle_tool_finds_none():
    tool = os.path.join(os.path.dirname(REPO), "shared", "tools", "import_cycles.py")
    if not os.path.exists(tool):
        pytest.skip(f"{tool} is not there (no ../shared beside the repository)")
    out = subprocess.run([sys.executable, tool, "jaxgan_lth"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 import cycles" in out.stdout


# ---- rewinding reads theta_0 back, it never recomputes it ----------------------------------


@pytest.mark.slow
def test_rewinding_returns_the_step0_checkpoint_even_when_init_changes(
        folder, tmp_path, monkeypatch):
    config = _config(folder, seeds="", stage="imp")
    config.sweep.stages = ""
    config.sparsity.prune = "gd"
    config.ticket.diffaug.policy = ""  # the ticket program of test_vmapped_ticket_* (cached)
    config.imp.rounds = 1
    config.imp.num_steps = 2
    config.ticket.num_steps = 2
    workdir = str(tmp_path / "w")
    pipeline.train_and_evaluate(config, workdir)  # round 0 and m_1
    lot = lottery.Lottery(config, workdir, pipeline.validate_config(config))
    engine = lot.engine("imp")
    theta0, _ = _final_states(engine, lot.round_dir(0), 1, 0)
    theta0 = run_axis.unstack(theta0, 1)[0]

    # From now on the model's init gives other numbers (another seed's, shifted by 0.5).
    real = step_lib.make_step_fns

    def shifted_init(*args, **kwargs):
        fns = real(*args, **kwargs)

        def init(key):
            s = fns.init(jax.random.fold_in(key, 1))
            for n in ("g", "d", "ema"):
                s[n] = dict(s[n], params=jax.tree.map(lambda p: p + 0.5, s[n]["params"]))
            return s

        return dataclasses.replace(fns, init=init)

    monkeypatch.setattr(step_lib, "make_step_fns", shifted_init)
    lot = lottery.Lottery(config, workdir, pipeline.validate_config(config))
    changed = jax.device_get(loop.initial_state(lot.engine("imp"), config.seed))
    assert all(np.all(np.asarray(a) != np.asarray(b)) for a, b in zip(
        jax.tree.leaves(changed["g"]["params"]), jax.tree.leaves(theta0["g"]["params"])))
    rewound = jax.device_get(lot.rewind_states())
    assert len(rewound) == 1
    for n in ("g", "d", "ema"):
        for x, y in zip(jax.tree.leaves(rewound[0][n]), jax.tree.leaves(theta0[n])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # Round 1 and the ticket start from theta_0 under their masks, not from the new init.
    config.imp.rounds = 2
    config.stages = "imp,ticket"
    pipeline.train_and_evaluate(config, workdir, allow_config_change=True)
    lot = lottery.Lottery(config, workdir, pipeline.validate_config(config))
    like = jax.eval_shape(lot.engine("imp").fns.init, jax.random.key(0))
    for stage_dir, r in ((lot.round_dir(1), 1), (os.path.join(workdir, "ticket"), 2)):
        start = run_axis.unstack(_final_states(engine, stage_dir, 1, 0)[0], 1)[0]
        mask = lot.load_masks(r, like)[0]
        assert pruning.density(mask["g"]) < 1.0
        for n, m in (("g", "g"), ("d", "d"), ("ema", "g")):
            for x, y, keep in zip(jax.tree.leaves(start[n]["params"]),
                                  jax.tree.leaves(theta0[n]["params"]),
                                  jax.tree.leaves(mask[m])):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y) * np.asarray(keep),
                                              err_msg=f"{stage_dir} {n}")
