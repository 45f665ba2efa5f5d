"""Every shipped config loads, validates and names a registered model that builds."""

import importlib

import jax
import jax.numpy as jnp
import ml_collections
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


# ---- the parts' sections: declared once (Part.default_config), built from the registry --------

#: keyword arguments that switch each registered part on (a new part must be added here).
_SWITCH_ON = {
    "diffaug": {"policy": "translation"}, "advaug": {"mode": "pgd"}, "ada": {"pipeline": "bgc"},
    "lecam": {"weight": 0.3}, "nice": {"enabled": True}, "maskedgan": {"ops": "spatial"},
    "r1": {"gamma": 10.0}, "pathlen": {"weight": 2.0},
}


def test_default_config_sections_are_the_parts_default_configs():
    from configs import default
    from jaxgan_lth import parts

    assert set(_SWITCH_ON) == set(parts.REGISTRY)
    base, recipe = default.base_config(), default.get_config()
    for cls in parts.REGISTRY.values():
        want = config_lib.to_dict(cls.default_config())
        assert config_lib.to_dict(base[cls.section]) == want, cls.name
        assert config_lib.to_dict(recipe[cls.section]) == want, cls.name
    # the ticket's copies: exactly the parts with ticket_copy (by hand: not R1, path length)
    copied = {n for n, cls in parts.REGISTRY.items() if cls.ticket_copy}
    assert copied == {"diffaug", "advaug", "ada", "lecam", "nice", "maskedgan"}
    assert {k for k in base.ticket.keys() if k in parts.REGISTRY} == copied
    # ... equal to default_config() but for the ticket's own switches (DiffAugment + AdvAug)
    for name in copied:
        got = config_lib.flatten(config_lib.to_dict(base.ticket[name]))
        want = config_lib.flatten(config_lib.to_dict(parts.REGISTRY[name].default_config()))
        changed = {k for k in want if got[k] != want[k]}
        assert set(got) == set(want)
        assert changed == {"diffaug": {"policy"}, "advaug": {"mode"}}.get(name, set()), name
    assert base.ticket.diffaug.policy == "translation,cutout" and base.ticket.advaug.mode == "pgd"


@pytest.mark.parametrize("name", sorted(_SWITCH_ON))
def test_part_default_config_validates_and_is_off_until_switched_on(name):
    from configs import default
    from jaxgan_lth import parts
    from tests.helpers import use_model

    cls = parts.REGISTRY[name]
    section = cls.default_config()
    assert isinstance(section, ml_collections.ConfigDict)
    assert {hp.key for hp in cls.HPARAMS.values()} <= set(section.keys())
    # a fresh section each call: changing one leaves the next untouched
    keys = set(section.keys())
    del section[next(iter(keys))]
    assert set(cls.default_config().keys()) == keys
    config = default.base_config()
    config[cls.section] = cls.default_config()
    cls.validate(config)  # unchanged, accepted
    assert not cls.enabled(config)  # the default switches the part off
    config[cls.section] = cls.default_config(**_SWITCH_ON[name])
    if name == "pathlen":
        use_model(config, "stylegan2")  # path length needs a style-based generator
    cls.validate(config)
    assert cls.enabled(config)
    assert {p.name for p in parts.build(config)} == {name}
    if cls.ticket_copy:  # the ticket's copy, validated with its prefix
        config.ticket[cls.section] = cls.default_config(**_SWITCH_ON[name])
        parts.validate_config(config.ticket, prefix="ticket.")


def test_every_key_of_a_part_default_config_is_read_by_the_part():
    """No dead keys: each section key is named in the part's code outside default_config."""
    import ast
    import inspect

    from jaxgan_lth import parts

    for cls in parts.REGISTRY.values():
        code = ""
        for klass in cls.__mro__:
            if not klass.__module__.startswith("jaxgan_lth.parts"):
                continue
            tree = ast.parse(inspect.getsource(inspect.getmodule(klass)))
            for node in ast.walk(tree):  # drop the section builders themselves
                if isinstance(node, ast.ClassDef):
                    node.body = [n for n in node.body if not (
                        isinstance(n, ast.FunctionDef)
                        and n.name in ("default_config", "stylegan2_config"))] or [ast.Pass()]
            code += ast.unparse(tree)
        unread = [k for k in cls.default_config().keys()
                  if f".{k}" not in code and f"'{k}'" not in code]
        assert not unread, (cls.name, unread)


def test_lecam_stylegan2_config_is_the_zero_debiased_form():
    from configs import default
    from jaxgan_lth import parts

    sg2 = parts.LeCam.stylegan2_config(1e-6)
    bigan = parts.LeCam.default_config(1e-6)
    assert set(sg2.keys()) == set(bigan.keys())
    assert (sg2.weight, sg2.decay, sg2.start, sg2.zero_debias) == (1e-6, 0.99, 0, True)
    assert (bigan.decay, bigan.start, bigan.zero_debias) == (0.9, 1000, False)
    config = default.base_config()
    config.lecam = sg2
    parts.LeCam.validate(config)
    config.lecam.start = 1000  # zero-debiased anchors refuse a start delay
    with pytest.raises(ValueError, match="lecam.start"):
        parts.LeCam.validate(config)
