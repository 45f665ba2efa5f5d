"""BigGAN on CIFAR-10 at 10% data: the lottery-ticket paper's BigGAN setting.

Hyper-parameters of the released StudioGAN-0.2 fork (seed_repos.md sections 1.4, 5.1 and 6):
class-conditional BigGAN (G 384 ch from g_conv_dim 96, D 192 ch, hierarchical z of 80 dims,
shared class embedding 128, self-attention, projection D, SN in G and D, orthogonal init),
hinge loss, Adam lr 2e-4/2e-4 with betas (0.5, 0.999) and eps 1e-6, n_dis 5, batch 64,
100k G iterations, EMA 0.9999 from step 1000, random horizontal flips of reals.
"""

from configs import default


def get_config():
    """BigGAN / CIFAR-10 (10%) config."""
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.resolution = 32
    config.data.channels = 3
    config.data.subset_fraction = 0.1
    config.data.subset_selection = "first"
    config.data.random_flip = True

    config.model.name = "biggan"
    config.model.latent_dim = 80
    config.model.g_channels = 96
    config.model.d_channels = 96
    config.model.conditional = True

    config.train.num_steps = 100_000
    config.train.n_dis = 5
    config.train.g_batch_size = 64
    config.train.d_batch_size = 64
    config.train.loss = "hinge"
    config.train.g_lr = 2e-4
    config.train.d_lr = 2e-4
    config.train.g_betas = (0.5, 0.999)
    config.train.d_betas = (0.5, 0.999)
    config.train.adam_eps = 1e-6
    config.train.lr_decay = False
    config.train.ema_decay = 0.9999
    config.train.ema_start = 1000

    config.log_every = 100
    config.sample_every = 2_000
    config.checkpoint_every = 2_000
    return config
