"""Install jaxgan_lth: `pip install -e .[tfds,tensorboard,test]` (CPU) or `.[cuda12]` / `.[cuda13]`.

The core (training on image folders or the CIFAR python tarballs, checkpoints, metrics, FID,
report) needs neither TensorFlow, tensorflow-datasets nor clu. Extras:
  tfds         the tfds data sets: `fashion_mnist` (the default run; built offline from Debian's
               files, but tfds reads and writes through TensorFlow), `cifar10`, `cifar100`;
  tensorboard  TensorBoard event files through clu (clu's writers import TensorFlow);
  test         pytest, pytest-xdist, ruff (the tests also need tfds: `launch/install.sh test`);
  cuda12/13    JAX's CUDA plugin wheels.
`launch/install.sh` installs tfds and tensorboard with every choice, so its commands behave as
before these became extras. `.[cuda]` is kept as an alias of `.[cuda12]` (what it installed
before). `launch/install.sh cuda` chooses between cuda12 and cuda13 from nvidia-smi's CUDA
driver version.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "chex>=0.1.92",
    "ml_collections>=1.1.0",
    "numpy",
    "scipy",
    "Pillow",
    "matplotlib",  # the report's plots (python -m jaxgan_lth.report)
    "absl-py",
]

setup(
    name="jaxgan_lth",
    version="0.1.0",
    description=(
        "Data-efficient GAN training in JAX/Flax: lottery tickets (IMP with rewinding), "
        "DiffAugment, AdvAug, FID/KID."
    ),
    packages=find_packages(include=["jaxgan_lth", "jaxgan_lth.*"]),
    # the class-coverage diagnostic's Fashion-MNIST classifier (jaxgan_lth/evaluation/coverage.py)
    package_data={"jaxgan_lth.evaluation": ["fashion_mnist_classifier.npz"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # ruff: the lint step of .ci/run; pytest-xdist: the suite runs in 2 worker processes
        "test": ["pytest>=8", "pytest-xdist==3.8.0", "ruff==0.17.6"],
        # tfds' file readers and its download_and_prepare import TensorFlow; tfds 4.9.10 imports
        # importlib_resources there without declaring it (tensorflow/datasets#11212).
        "tfds": ["tensorflow-datasets>=4.9.10", "tensorflow-cpu>=2.21", "importlib_resources"],
        # clu's TensorBoard writer (jaxgan_lth/training/summaries.py); clu.metric_writers imports
        # TF.
        "tensorboard": ["clu>=0.0.12", "tensorboard", "tensorflow-cpu>=2.21"],
        # JAX's CUDA plugin wheels: a CUDA 12.x driver needs cuda12, a 13.x driver takes cuda13
        # (jax 0.10.2 declares both extras).
        "cuda12": ["jax[cuda12]>=0.10.2"],
        "cuda13": ["jax[cuda13]>=0.10.2"],
        "cuda": ["jax[cuda12]>=0.10.2"],  # old name of cuda12, kept for existing commands
    },
)
