"""The paper configs' variants: each builds, validates and carries the released protocol."""

import importlib
import os

import pytest

from jaxgan_lth import config_lib, pipeline
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.stages import lottery_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("sngan_cifar10", "biggan_cifar10")


def _module(name):
    return importlib.import_module(f"configs.{name}")


def _all_variants():
    return [(f, v) for f in FILES for v in _module(f).VARIANTS]


@pytest.mark.parametrize("name,variant", _all_variants())
def test_variant_builds_and_validates(name, variant):
    module = _module(name)
    config = module.get_config(variant)
    config_lib.validate(config)
    lottery_config.validate_lottery(config)
    stages = stages_lib.parse_stages(config)
    assert stages == (["imp"] if variant == "imp" else
                      ["train"] if variant.startswith("dense") else ["imp", "ticket"])
    # the keys being added to configs/default.py exist either way
    assert config.train.ema_buffers in ("copy", "average")
    assert config.sparsity.magnitudes in ("g", "ema")
    assert isinstance(config.advaug.augment_adv_branch, bool)
    assert isinstance(config.ticket.advaug.augment_adv_branch, bool)
    # each variant cites the released script(s) it follows
    assert ".py" in module.VARIANTS[variant]
    # the ticket trained by the ticket stage is an IMP round this config produces
    assert 0 <= config.ticket.round <= config.imp.rounds


@pytest.mark.parametrize("name", FILES)
def test_default_variant(name):
    module = _module(name)
    assert module.DEFAULT_VARIANT in module.VARIANTS
    default = config_lib.to_dict(module.get_config())
    assert default == config_lib.to_dict(module.get_config(module.DEFAULT_VARIANT))
    assert default == config_lib.to_dict(module.get_config(""))


@pytest.mark.parametrize("name", FILES)
def test_unknown_variant_names_the_accepted_ones(name):
    module = _module(name)
    with pytest.raises(ValueError) as info:
        module.get_config("ticket_cutmix")
    message = str(info.value)
    assert "ticket_cutmix" in message
    for variant in module.VARIANTS:
        assert variant in message


def test_sngan_protocol():
    module = _module("sngan_cifar10")
    for variant in module.VARIANTS:
        c = module.get_config(variant)
        # model / optimiser of SNGAN/cfg.py
        assert (c.model.name, c.model.g_channels, c.model.d_channels) == ("sngan", 256, 128)
        assert (c.train.g_batch_size, c.train.d_batch_size, c.train.n_dis) == (128, 64, 5)
        assert tuple(c.train.g_betas) == tuple(c.train.d_betas) == (0.0, 0.9)
        assert c.train.ema_decay == 0.999 and c.train.ema_buffers == "copy"
        assert (c.data.subset_fraction, c.data.subset_selection) == (0.1, "first")
        # FID protocol: 50k samples vs the whole train split every 20 epochs (316 G steps)
        assert c.eval.num_samples == 50_000
        assert c.eval.reference_split == "train"
        assert c.eval.every == 316
        # 50k G steps for every training run; G-only global IMP, 20% per round, EMA mask
        assert c.train.num_steps == c.imp.num_steps == c.ticket.num_steps == 50_000
        assert (c.sparsity.prune, c.sparsity.method, c.sparsity.g_ratio) == ("g", "global", 0.2)
        # two mask chains as released: rounds on G's magnitudes, the ticket's on the EMA's
        assert (c.sparsity.mask_chains, c.sparsity.magnitudes) == ("two", "g")
        assert c.ticket.round == 10  # 0.8^10 = 10.74% remaining (released checkpoint)
        assert c.diffaug.policy == "" and c.ticket.diffaug.policy == ""

    t = module.get_config("ticket_advaug")
    assert t.stages == "imp,ticket" and t.imp.rounds == 10
    assert t.advaug.mode == "none"  # IMP rounds train plainly
    a = t.ticket.advaug
    assert (a.mode, a.networks, a.num_steps, a.step_size) == ("pgd", "gd", 1, 0.01)
    assert (a.radius, a.random_start, a.lam) == (0.0, False, 0.5)
    assert a.direction == "reference_code"
    assert t.ticket.diffaug.policy == ""  # the released SNGAN ticket has no DiffAugment

    assert module.get_config("ticket").ticket.advaug.mode == "none"
    assert module.get_config("imp").imp.rounds == 11  # `for ro in range(10 + 1)`
    d = module.get_config("dense_advaug")
    assert (d.advaug.mode, d.advaug.step_size, d.advaug.direction) == (
        "pgd", 0.01, "reference_code")
    assert module.get_config("dense").advaug.mode == "none"


def test_biggan_protocol():
    module = _module("biggan_cifar10")
    for variant in module.VARIANTS:
        c = module.get_config(variant)
        assert (c.model.name, c.model.latent_dim, c.model.conditional) == ("biggan", 80, True)
        assert tuple(c.train.g_betas) == (0.5, 0.999) and c.train.adam_eps == 1e-6
        assert (c.train.ema_decay, c.train.ema_start, c.train.ema_buffers) == (
            0.9999, 1000, "average")
        assert c.data.random_flip and c.data.subset_selection == "first"
        # FID protocol: 10k samples vs the 10k test images every 2,000 steps
        assert c.eval.num_samples == 10_000
        assert c.eval.reference_split == "test"
        assert c.eval.every == 2_000
        assert c.sparsity.magnitudes == "g" and c.sparsity.g_ratio == 0.2
        assert c.imp.num_steps == 100_000 and c.ticket.round == 9  # 0.8^9 = 13.42%
        assert c.diffaug.policy in ("", "color,translation,cutout")
        # DiffAugment doubles the iterations (paper section 4); the released JSONs: 100k
        doubled = "diffaug" in variant and not variant.endswith("_released")
        if variant.startswith("dense"):
            assert c.train.num_steps == (200_000 if doubled else 100_000)
        elif variant.startswith("ticket"):
            assert c.ticket.num_steps == (200_000 if doubled else 100_000)

    t = module.get_config("ticket_diffaug_advaug")
    assert t.stages == "imp,ticket" and t.imp.rounds == 9
    assert t.diffaug.policy == "" and t.advaug.mode == "none"  # plain IMP rounds
    assert t.ticket.diffaug.policy == "color,translation,cutout"
    assert t.ticket.num_steps == 200_000
    a = t.ticket.advaug
    assert (a.mode, a.networks, a.num_steps, a.step_size, a.lam) == ("pgd", "gd", 1, 0.01, 0.5)
    assert a.direction == "reference_code"
    assert a.augment_adv_branch is False

    p = module.get_config("ticket")
    assert (p.ticket.diffaug.policy, p.ticket.advaug.mode, p.ticket.num_steps) == (
        "", "none", 100_000)
    assert module.get_config("ticket_advaug").ticket.diffaug.policy == ""
    assert module.get_config("ticket_diffaug").ticket.advaug.mode == "none"
    assert module.get_config("imp").imp.rounds == 10  # `for round_ in range(start_round, 10)`
    d = module.get_config("dense_diffaug_advaug")
    assert d.diffaug.policy == "color,translation,cutout"
    assert (d.advaug.mode, d.advaug.augment_adv_branch) == ("pgd", False)
    assert module.get_config("dense").diffaug.policy == ""


def test_biggan_released_and_paper_variants_differ_only_where_the_release_does():
    """Issue 27 item 6: the ``_released`` variants against the released files' values.

    main_ompg.py: --steps 0 (PGD loop runs 0 times = step size 0 here), the CIFAR10_less
    DiffAugGAN*.json: "total_step": 100000; main.py: --gamma 1/255 --steps 1 (dense AdvAug).
    Everything else equals the paper-reading variant of the same name.
    """
    module = _module("biggan_cifar10")
    released = [v for v in module.VARIANTS if v.endswith("_released")]
    assert sorted(released) == sorted([
        "dense_advaug_released", "dense_diffaug_released", "dense_diffaug_advaug_released",
        "ticket_advaug_released", "ticket_diffaug_released", "ticket_diffaug_advaug_released"])
    changed = {  # (flat key, released value, paper-reading value)
        "ticket_diffaug_advaug": [("ticket.num_steps", 100_000, 200_000),
                                  ("ticket.advaug.step_size", 0.0, 0.01)],
        "ticket_advaug": [("ticket.advaug.step_size", 0.0, 0.01)],
        "ticket_diffaug": [("ticket.num_steps", 100_000, 200_000)],
        "dense_diffaug": [("train.num_steps", 100_000, 200_000)],
        "dense_advaug": [("advaug.step_size", 1 / 255, 0.01)],
        "dense_diffaug_advaug": [("train.num_steps", 100_000, 200_000),
                                 ("advaug.step_size", 1 / 255, 0.01)],
    }
    for paper, diffs in changed.items():
        a = _flat_config(module.get_config(paper + "_released"))
        b = _flat_config(module.get_config(paper))
        assert {k for k in a if a[k] != b[k]} == {k for k, _, _ in diffs}, paper
        for key, rel, pap in diffs:
            assert (a[key], b[key]) == (pytest.approx(rel), pytest.approx(pap)), (paper, key)
    # PGD-0 as released: with step size 0 the perturbed features equal the clean ones
    t = module.get_config("ticket_diffaug_advaug_released").ticket.advaug
    assert (t.mode, t.num_steps, t.step_size, t.random_start, t.radius) == (
        "pgd", 1, 0.0, False, 0.0)
    assert module.DEFAULT_VARIANT == "ticket_diffaug_advaug"  # the default did not move


def test_biggan_lecam_variants_have_lecam_gans_biggan_cifar_setting():
    """Issue 27 item 7: --LC 0.3 (lc-*.sh), ema_losses decay 0.9 and start_itr 1000."""
    module = _module("biggan_cifar10")
    for variant, section in (("dense_lecam", "lecam"), ("dense_diffaug_lecam", "lecam"),
                             ("ticket_diffaug_lecam", "ticket.lecam")):
        c = _flat_config(module.get_config(variant))
        assert (c[f"{section}.weight"], c[f"{section}.decay"], c[f"{section}.start"]) == (
            0.3, 0.9, 1000), variant
        plain = _flat_config(module.get_config(variant.removesuffix("_lecam")))
        assert plain[f"{section}.weight"] == 0.0
        assert {k for k in c if c[k] != plain[k]} == {f"{section}.weight"}, variant
    assert _flat_config(module.get_config("ticket_diffaug_lecam"))["lecam.weight"] == 0.0


def _flat_config(config):
    out = {}
    for k, v in config.items():
        if hasattr(v, "items"):
            out.update({f"{k}.{kk}": vv for kk, vv in _flat_config(v).items()})
        else:
            out[k] = tuple(v) if isinstance(v, list) else v
    return out


def test_variant_from_the_command_line():
    """``--config=configs/X.py:variant`` reaches get_config(variant) (ml_collections)."""
    from absl import flags
    from ml_collections import config_flags

    path = os.path.join(ROOT, "configs", "sngan_cifar10.py")
    argv = ["prog", f"--config={path}:dense", "--config.eval.every=0"]
    fv = flags.FlagValues()
    # the override flags (--config.x.y) are declared from sys_argv at definition time
    config_flags.DEFINE_config_file(
        "config", None, "config", flag_values=fv, lock_config=True, sys_argv=argv
    )
    fv(argv)
    assert fv.config.stages == "train"  # the "dense" variant, not the default
    assert fv.config.eval.every == 0


@pytest.mark.parametrize("name,variant", _all_variants())
def test_pipeline_validate_config(name, variant):
    pipeline.validate_config(_module(name).get_config(variant))
