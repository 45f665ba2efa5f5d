"""Limited-data training sets: tfds sets (Fashion-MNIST offline from Debian), image folders.

Also CIFAR-10/100 from the official python tarballs (`cifar_python`, no TensorFlow), and
`python -m jaxgan_lth.data.fetch` for the DiffAugment paper's few-shot folders.

Public API:
  TrainingSet           frozen dataclass: images float32 [N, H, W, C] in [-1, 1], labels, ...
  load_training_set     `config.data` -> TrainingSet (subset chosen and recorded in a workdir)
  load_split            `config.data`, split -> (images, labels, num_classes) of a whole split
  select_subset         indices of a "first"/"random" limited-data subset
  validate_config       checks `config.data` without loading anything (run before training)
  check_split           checks a split value against the data set (folders: "train" only)
  KNOWN_SPLITS          split names of the named sets (tfds and CIFAR python)
  TFDS_LOADERS          registry of named tfds sets (name -> loader)
  DatasetUnavailableError  a named set is neither prepared locally nor downloadable
"""

from jaxgan_lth.data.datasets import (
    KNOWN_SPLITS,
    TrainingSet,
    check_split,
    load_split,
    load_training_set,
    validate_config,
)
from jaxgan_lth.data.subset import select_subset
from jaxgan_lth.data.tfds_sets import TFDS_LOADERS, DatasetUnavailableError

__all__ = [
    "TrainingSet",
    "load_training_set",
    "load_split",
    "select_subset",
    "validate_config",
    "check_split",
    "KNOWN_SPLITS",
    "TFDS_LOADERS",
    "DatasetUnavailableError",
]
