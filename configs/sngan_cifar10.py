"""SNGAN on CIFAR-10 at 10% data: the lottery-ticket paper's SNGAN setting.

Hyper-parameters of the released code (seed_repos.md sections 1.4 and 6; Chen et al., NeurIPS
2021): ResNet G (256 ch, BN) / D (128 ch, SN), hinge loss, Adam lr 2e-4, betas (0.0, 0.9),
n_dis 5, G batch 128, D batch 64, 50k G iterations, EMA 0.999, first 10% of the training split.
CIFAR-10 needs internet (or a prepared tfds copy) on first use.
"""

from configs import default


def get_config():
    """SNGAN / CIFAR-10 (10%) config."""
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.resolution = 32
    config.data.channels = 3
    config.data.subset_fraction = 0.1
    config.data.subset_selection = "first"

    config.model.name = "sngan"
    config.model.latent_dim = 128
    config.model.g_channels = 256
    config.model.d_channels = 128
    config.model.conditional = False

    config.train.num_steps = 50_000
    config.train.n_dis = 5
    config.train.g_batch_size = 128
    config.train.d_batch_size = 64
    config.train.loss = "hinge"
    config.train.g_lr = 2e-4
    config.train.d_lr = 2e-4
    config.train.g_betas = (0.0, 0.9)
    config.train.d_betas = (0.0, 0.9)
    config.train.lr_decay = False
    config.train.ema_decay = 0.999
    config.train.ema_start = 0

    config.log_every = 100
    config.sample_every = 2_000
    config.checkpoint_every = 2_000
    return config
