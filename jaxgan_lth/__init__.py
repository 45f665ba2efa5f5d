"""jaxgan_lth: data-efficient GAN training with lottery tickets in JAX/Flax.

Data flows one way: data, models and parts -> step -> loop -> pipeline -> main.
  data/        limited-data training sets (tfds, image folders, subsets) kept on device
  models/      generator/discriminator pairs chosen by name (dcgan, sngan, biggan)
  augment/     the maths of DiffAugment and AdvAug
  parts/       methods as parts of the step (augmentations, feature perturbations, loss terms)
  step.py      the composed, jit-compiled D/G steps
  loop.py      the one training loop for K runs of a stage (K = 1: an ordinary run)
  sweep.py     the runs of a swept stage (seeds x traced strengths)
  stages/      the stages behind one interface and a registry: train, imp, ticket, dst and
               slimming (IMP with rewinding, ticket masks and baselines, sparse-to-sparse)
  pipeline.py  whole-config validation, then the stages in order
  sparsity/    masks pytree and magnitude / random pruning
  evaluation/  Inception features, FID/KID, evaluators taking sample functions
  checkpointing.py (the one module using Orbax), parallel.py (the one module building meshes)
"""

__version__ = "0.1.0"
