"""jaxgan_lth: data-efficient GAN training with lottery tickets in JAX/Flax.

Data flows one way: data, models and parts -> step -> loop -> pipeline -> main.
  data/        limited-data training sets (tfds, image folders, subsets) kept on device
  models/      generator/discriminator pairs chosen by name (dcgan, sngan, biggan)
  augment/     the maths of DiffAugment and AdvAug
  parts/       methods as parts of the step (augmentations, feature perturbations, loss terms)
  training/    the step (plain functions of a frozen StepSpec), the one loop for K runs of a
               stage with its periodic actions, sweeps (seeds x traced strengths), schedules
  stages/      the stages behind one interface and a registry: train, imp, ticket, dst and
               slimming (IMP with rewinding, ticket masks and baselines, sparse-to-sparse)
  pipeline.py  whole-config validation, then the stages in order
  sparsity/    masks pytree and magnitude / random pruning
  evaluation/  Inception features, FID/KID, evaluators taking sample functions
  checkpointing.py (the one module using Orbax), parallel.py (the one module building meshes)
  main.py, evaluate.py, report.py, fid.py  the command-line tools
  proj/        project-specific analysis (the study write-up), imported by nothing above
"""

__version__ = "0.1.0"
