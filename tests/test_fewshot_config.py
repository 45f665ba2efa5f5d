"""configs/stylegan2_fewshot.py: the DiffAugment paper's preset and its variants validate."""


import pytest

from configs import stylegan2_fewshot
from jaxgan_lth import pipeline


def _with_folder(config, tmp_path):
    from tests.helpers import make_image_folder

    # 64 images: the ada preset's D batch
    config.data.folder = make_image_folder(tmp_path / "imgs", n=64, size=32, channels=3)
    return config


def test_paper_preset_values(tmp_path):
    c = _with_folder(stylegan2_fewshot.get_config(), tmp_path)
    assert pipeline.validate_config(c).keys() == {"train"}
    # DiffAugment-stylegan2 run_low_shot.py (fewshot_sparse_regularisers.md 1.1)
    assert (c.data.resolution, c.train.g_batch_size, c.train.d_batch_size) == (256, 16, 16)
    assert c.train.num_steps * 16 == 300_000  # 300 kimg
    assert (c.model.mapping_layers, c.r1.gamma, c.r1.interval, c.pathlen.weight) == (8, 10, 1, 0)
    assert (c.train.ema_kimg, c.train.ema_start * 16) == (10, 10_000)
    assert c.diffaug.policy == "color,translation,cutout" and c.data.random_flip
    assert (c.eval.num_samples, c.eval.reference_split) == (5000, "train")  # fid5k-train
    assert tuple(c.train.g_betas) == (0.0, 0.99) and c.train.g_lr == 0.002


@pytest.mark.parametrize("variant", stylegan2_fewshot.VARIANTS)
def test_every_variant_validates(variant, tmp_path):
    c = _with_folder(stylegan2_fewshot.get_config(variant), tmp_path)
    stages = pipeline.validate_config(c)
    assert set(stages) == ({"imp", "ticket"} if variant == "ticket" else {"train"})
    if variant == "ada":
        assert c.ada.pipeline == "bgc" and not c.diffaug.policy
    with pytest.raises(ValueError, match="variant 'nope'"):
        stylegan2_fewshot.get_config("nope")


def _train_py_auto(res, gpus=1):
    """stylegan2-ada-pytorch train.py lines 164-172 (cfg 'auto'), transcribed."""
    mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    return dict(batch=mb, mbstd=min(mb // gpus, 4), channel_base=int((1 if res >= 512 else 0.5)
                * 32768), lr=0.002 if res >= 1024 else 0.0025, gamma=0.0002 * res ** 2 / mb,
                ema_kimg=mb * 10 / 32, ema_rampup=0.05, mapping_layers=2)


# train.py cfg_specs['paper256'] (line 157): mb 64, mbstd 8, fmaps 0.5, lrate 0.0025, gamma 1,
# ema 20, ramp None, map 8
PAPER256 = dict(batch=64, mbstd=8, channel_base=16384, lr=0.0025, gamma=1.0, ema_kimg=20.0,
                ema_rampup=0.0, mapping_layers=8)


@pytest.mark.parametrize("variant,want", [("ada", PAPER256), ("ada_auto", _train_py_auto(256))])
def test_ada_presets_are_stylegan2_ada_train_py(variant, want, tmp_path):
    from jaxgan_lth import parts
    from jaxgan_lth.training import lazy_reg

    assert _train_py_auto(256)["gamma"] == pytest.approx(0.8192)
    assert (_train_py_auto(256)["batch"], _train_py_auto(256)["ema_kimg"]) == (16, 5.0)
    c = _with_folder(stylegan2_fewshot.get_config(variant), tmp_path)
    got = dict(batch=c.train.d_batch_size, mbstd=c.model.mbstd_group,
               channel_base=c.model.channel_base, lr=c.train.d_lr, gamma=c.r1.gamma,
               ema_kimg=c.train.ema_kimg, ema_rampup=c.train.ema_rampup,
               mapping_layers=c.model.mapping_layers)
    assert got == pytest.approx(want)
    assert c.train.g_batch_size == c.train.d_batch_size and c.train.g_lr == c.train.d_lr
    assert tuple(c.train.g_betas) == tuple(c.train.d_betas) == (0.0, 0.99)
    assert (c.model.g_channels, c.model.d_channels, c.train.ema_start) == (512, 512, 0)
    # training_loop.py: G_reg_interval 4, D_reg_interval 16; loss.py pl_weight 2, decay 0.01,
    # batch_shrink 2; --aug=ada: bgc, target 0.6, ada_interval 4, ada_kimg 500
    assert (c.r1.interval, c.r1.lazy, c.r1.augment) == (16, "separate_step", "redrawn")
    assert (c.pathlen.weight, c.pathlen.interval, c.pathlen.lazy) == (2.0, 4, "separate_step")
    assert (c.pathlen.decay, c.pathlen.batch_shrink, c.model.style_mixing_prob) == (0.01, 2, 0.9)
    assert (c.ada.pipeline, c.ada.target, c.ada.interval, c.ada.kimg) == ("bgc", 0.6, 4, 500)
    assert c.ada.p_init == 0.0 and not c.diffaug.policy
    pipeline.validate_config(c)
    terms = [p for p in parts.build(c) if p.kind == "loss"]
    assert lazy_reg.phase_terms(terms, "d")[1] == 16 and lazy_reg.phase_terms(terms, "g")[1] == 4
    # the reference's Adam for the lazy phases: lr * k / (k + 1), betas ** (k / (k + 1))
    lr_d, betas_d, _ = lazy_reg.adam_settings(c.train.d_lr, c.train.d_betas, None, 16)
    assert lr_d == pytest.approx(want["lr"] * 16 / 17)
    assert betas_d == pytest.approx((0.0, 0.99 ** (16 / 17)))


def test_diffaug_ada_is_the_old_ada_variant_and_cpu_keeps_its_measured_behaviour(tmp_path):
    from jaxgan_lth import parts
    from jaxgan_lth.training import lazy_reg

    old = stylegan2_fewshot.get_config("diffaug_ada")
    base = stylegan2_fewshot.get_config("diffaug")
    base.diffaug.policy, base.ada.pipeline = "", "bgc"
    assert old.to_dict() == base.to_dict()
    cpu = _with_folder(stylegan2_fewshot.get_config("cpu"), tmp_path)
    pipeline.validate_config(cpu)
    assert (cpu.r1.interval, cpu.r1.lazy, cpu.r1.augment) == (16, "loss_gain", "redrawn")
    terms = [p for p in parts.build(cpu) if p.kind == "loss"]
    assert lazy_reg.phase_terms(terms, "d") == ([], None)  # penalty x 16 in the main D loss


def test_ticket_preset_and_lecam_form(tmp_path):
    c = _with_folder(stylegan2_fewshot.get_config("ticket"), tmp_path)
    assert c.ticket.advaug.direction == "reference_code"  # as configs/sngan_cifar10.py
    assert (c.ticket.advaug.mode, c.ticket.advaug.num_steps) == ("pgd", 1)  # PGD-1
    assert "lucidrains" in stylegan2_fewshot._ticket.__doc__
    for variant in stylegan2_fewshot.VARIANTS:  # lecam_loss.py: 0.99, zero-debiased, no delay
        v = stylegan2_fewshot.get_config(variant)
        for sec in (v.lecam, v.ticket.lecam):
            assert (sec.weight, sec.decay, sec.zero_debias, sec.start) == (0.0, 0.99, True, 0)
    c.lecam.weight = c.ticket.lecam.weight = 3e-7  # run_train_ffhq.sh
    pipeline.validate_config(c)
