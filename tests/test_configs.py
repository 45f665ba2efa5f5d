"""Every shipped config loads, validates and names a registered model that builds."""

import importlib

import jax
import jax.numpy as jnp
import pytest

from jaxgan_lth import config_lib, models, pipeline
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.stages import lottery_config
from jaxgan_lth.training import sweep


@pytest.mark.parametrize("name", ["default", "sngan_cifar10", "biggan_cifar10", "advaug_sweep"])
def test_config_validates_and_model_builds(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    config_lib.validate(config)
    lottery_config.validate_lottery(config)
    stage_cfgs = pipeline.validate_config(config)  # the whole config, every part and the sweep
    assert list(stage_cfgs) == stages_lib.parse_stages(config)
    r, c = config.data.resolution, config.data.channels
    ncls = 10 if config.model.conditional else 0
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    pair = models.get_model(config.model.name, resolution=r, channels=c, num_classes=ncls,
                            **kwargs)
    z = jnp.zeros((2, pair.generator.latent_dim))
    y = jnp.zeros((2,), jnp.int32) if ncls else None
    shapes = jax.eval_shape(lambda: pair.generator.init(jax.random.key(0), z, y, train=False))
    assert shapes["params"]


def test_advaug_sweep_config_describes_eight_runs_of_the_dense_stage():
    config = importlib.import_module("configs.advaug_sweep").get_config()
    stage_cfgs = pipeline.validate_config(config)
    runs = sweep.parse_runs(config, stage_cfgs["train"])
    assert len(runs) == 8 and {r.seed for r in runs} == {0, 1}
    assert sorted({r.hparams["adv_step_size"] for r in runs}) == [0.0, 0.01, 0.05, 0.1]


def test_unknown_stage_is_named():
    config = importlib.import_module("configs.default").get_config()
    config.stages = "imp,finetune"
    with pytest.raises(ValueError, match="finetune"):
        stages_lib.parse_stages(config)


def test_default_recipe_is_base_config_plus_the_documented_changes():
    from configs import default

    base = config_lib.to_dict(default.base_config())
    assert config_lib.to_dict(default.get_config("base")) == base
    recipe = config_lib.to_dict(default.get_config())

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    fb, fr = flat(base), flat(recipe)
    changed = {k for k in fr if fb.get(k, "absent") != fr[k]}
    assert changed == {
        "model.g_channels", "model.d_channels", "model.d_pooling", "train.num_steps",
        "train.d_lr", "train.g_betas", "train.d_betas", "train.ema_decay",
        "imp.rounds", "imp.num_steps", "ticket.num_steps", "ticket.diffaug.policy",
        "ticket.diffaug.fill", "ticket.advaug.networks", "eval.num_samples", "sample_every",
        "checkpoint_every", "log_every"}
    # the dense round and the ticket train at the same budget; FID on >= 500 samples
    assert fr["imp.num_steps"] == fr["ticket.num_steps"] == 3000
    assert fr["eval.num_samples"] >= 500 and fr["eval.coverage_samples"] == 1000
    assert "d_pooling" not in base["model"]  # the paper configs build on base_config()
    with pytest.raises(ValueError, match=r"variant 'fast' is not accepted.*'base'"):
        default.get_config("fast")
