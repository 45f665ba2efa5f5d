"""jaxgan_lth: data-efficient GAN training with lottery tickets in JAX/Flax.

Pipeline, one sub-package per stage:
  data/        limited-data training sets (tfds, image folders, subsets) kept on device
  models/      generator/discriminator pairs chosen by name (dcgan, sngan, biggan)
  augment/     DiffAugment and AdvAug, applied inside the compiled steps
  train.py     jit-compiled D/G steps and the `train_and_evaluate` loop
  sparsity/    masks pytree, magnitude pruning, IMP with rewinding
  evaluation/  Inception features, FID/KID, evaluation during training
  multirun.py  K runs (seeds / traced strengths) trained together with jax.vmap
  checkpointing.py (the one module using Orbax), parallel.py (the one module building meshes)
"""

__version__ = "0.1.0"
