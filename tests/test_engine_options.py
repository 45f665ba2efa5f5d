"""Options the paper configs need: AdvAug's un-augmented G branch, masks from the EMA G."""

import helpers
import jax
import numpy as np
import pytest

from jaxgan_lth import models, pipeline
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.sparsity import pruning
from jaxgan_lth.stages import lottery
from jaxgan_lth.training import step as step_lib


def _fns(config):
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    pair = models.get_model(config.model.name, resolution=28, channels=1, num_classes=0,
                            **kwargs)
    return step_lib.make_step_fns(config, pair.generator, pair.discriminator,
                                  image_shape=(28, 28, 1), num_classes=0)


def _g_metrics(config):
    fns = _fns(config)
    state = fns.init(jax.random.key(0))
    masks = {n: masks_lib.ones_like(state[n]["params"]) for n in ("g", "d")}
    _, metrics = jax.jit(fns.g_step)(state, masks, None, jax.random.key(3), fns.hparams)
    return jax.device_get(metrics)


@pytest.mark.slow
def test_adv_branch_without_augmentation_sees_plain_fakes(tmp_path):
    """augment_adv_branch=False (UDEG BigGAN): the perturbed branch's fakes reach D
    un-augmented, so its loss equals that of the same step with no DiffAugment at all, while
    the clean branch is still augmented."""
    config = helpers.tiny_config(tmp_path)
    config.advaug.mode = "pgd"
    config.advaug.networks = "g"
    config.diffaug.policy = "cutout,translation"
    config.advaug.augment_adv_branch = False
    off = _g_metrics(config)
    config.advaug.augment_adv_branch = True
    on = _g_metrics(config)
    config.diffaug.policy = ""
    plain = _g_metrics(config)
    assert off["g_loss_adv"] == plain["g_loss_adv"]
    assert off["g_loss_clean"] == on["g_loss_clean"] != plain["g_loss_clean"]
    assert on["g_loss_adv"] != plain["g_loss_adv"]


@pytest.mark.slow
def test_masks_from_ema_generator_magnitudes(tmp_path):
    """sparsity.magnitudes="ema" (UDEG SNGAN stage 2 reads avg_gen_state_dict) prunes by the
    EMA G's weights, "g" by the trained G's."""
    config = helpers.tiny_config(helpers.make_image_folder(tmp_path / "imgs", n=8, size=20,
                                                           channels=1))
    config.stages = "imp"
    fns = _fns(config)
    state = jax.device_get(fns.init(jax.random.key(0)))
    rng = np.random.default_rng(0)
    trained = dict(state)
    for n in ("g", "ema"):
        params = jax.tree.map(lambda p: rng.normal(size=p.shape), state["g"]["params"])
        trained[n] = {"params": params, "batch_stats": state["g"]["batch_stats"]}
    masks = {n: masks_lib.ones_like(state[n]["params"]) for n in ("g", "d")}
    patterns = tuple(config.sparsity.prunable)
    out = {}
    for source in ("g", "ema"):
        config.sparsity.magnitudes = source
        lot = lottery.Lottery(config, str(tmp_path / source), pipeline.validate_config(config))
        out[source] = lot.prune(trained, masks)["g"]
        want = pruning.global_magnitude_prune(trained[source]["params"], masks["g"],
                                              config.sparsity.g_ratio, patterns)
        for a, b in zip(jax.tree.leaves(out[source]), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any((np.asarray(a) != np.asarray(b)).any()
               for a, b in zip(jax.tree.leaves(out["g"]), jax.tree.leaves(out["ema"])))
