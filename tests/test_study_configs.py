"""The study configs of issue 28's limited-data regime: arms, subsets and budgets."""

import pytest

from configs import default
from configs import study_fashion_mnist as fm
from configs import study_fewshot as fs


@pytest.mark.parametrize("arm", fs.ARMS)
def test_fewshot_arms_train_the_same_subset_and_budget(arm):
    c = fs.get_config(f"arm={arm}")
    assert c.model.name == "stylegan2" and c.data.resolution == 32
    assert (c.data.subset_count, c.data.subset_fraction) == (25, 0.0)
    assert c.data.subset_selection == "random" and c.data.subset_seed == 0
    assert c.data.allow_folder_subset and c.data.heldout_split == "rest"
    assert c.train.num_steps == c.imp.num_steps == c.ticket.num_steps == 3000
    assert c.eval.every == 500 and c.eval.reference_split == "train"
    assert c.sweep.seeds == "0,1,2" and c.sweep.stages == c.stages
    policy = "color,translation,cutout"
    # (stage, D augmentation of train/imp, ADA, ticket's AdvAug); the ticket section's
    # DiffAugment is the policy in every arm (only the ticket stage reads it)
    expected = {"baseline": ("imp", "", "", "none"),
                "diffaug": ("train", policy, "", "none"),
                "ada": ("train", "", "bgc", "none"),
                "ticket_da": ("ticket", "", "", "none"),
                "ticket_da_adv": ("ticket", "", "", "pgd")}[arm]
    got = (c.stages, c.diffaug.policy, c.ada.pipeline, c.ticket.advaug.mode)
    assert c.ticket.diffaug.policy == policy
    assert got == expected
    assert c.imp.rounds == 1 and c.sparsity.prune == "g"  # the ticket: one round, density 0.8
    if arm == "ada":
        assert c.ada.kimg == fs.ADA_KIMG and c.ada.target == 0.6


def test_fewshot_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'nope'"):
        fs.get_config("arm=nope")
    with pytest.raises(ValueError, match="shots=0"):
        fs.get_config("arm=ada,shots=0")
    with pytest.raises(ValueError, match="'size'"):
        fs.get_config("size=3")


@pytest.mark.parametrize("arm", fm.ARMS)
def test_fashion_mnist_regime_is_the_recipe_on_n_images(arm):
    c = fm.get_config(f"shots=100,arm={arm}")
    recipe = default.get_config()
    for key in ("g_channels", "d_channels", "d_pooling"):
        assert c.model[key] == recipe.model[key]
    assert (c.train.d_lr, c.train.g_lr, c.train.ema_decay) == (4e-4, 2e-4, 0.995)
    assert (c.data.subset_fraction, c.data.subset_count) == (0.0, 100)
    assert c.train.num_steps == c.imp.num_steps == c.ticket.num_steps == fm.REGIME_STEPS
    assert c.eval.every == fm.REGIME_EVAL_EVERY and c.data.heldout_split == "test"
    assert c.imp.rounds == fm.ROUNDS and c.sweep.seeds == fm.SEEDS
    # the fraction study is unchanged: the old base config at 600 steps
    old = fm.get_config(f"fraction=0.01,arm={arm}")
    assert old.model.g_channels == 64 and old.train.num_steps == 600
    assert old.eval.every == 0 and old.data.subset_fraction == 0.01
