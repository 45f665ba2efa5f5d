"""configs/stylegan2_fewshot.py: the DiffAugment paper's preset and its variants validate."""


import pytest

from configs import stylegan2_fewshot
from jaxgan_lth import pipeline


def _with_folder(config, tmp_path):
    from tests.helpers import make_image_folder

    config.data.folder = make_image_folder(tmp_path / "imgs", n=20, size=32, channels=3)
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
