"""Install jaxgan_lth: `pip install -e .[test]` (CPU) or `.[cuda12]` / `.[cuda13]` (NVIDIA GPU).

`.[cuda]` is kept as an alias of `.[cuda12]` (what it installed before). `launch/install.sh cuda`
chooses between cuda12 and cuda13 from nvidia-smi's CUDA driver version.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "chex>=0.1.92",
    "clu>=0.0.12",
    "ml_collections>=1.1.0",
    "tensorflow-datasets>=4.9.10",
    # clu.metric_writers / periodic_actions and tfds' file readers import TensorFlow.
    "tensorflow-cpu>=2.21",
    "tensorboard",  # clu's TensorBoard summary writer
    "numpy",
    "scipy",
    "Pillow",
    "matplotlib",  # the report's plots (python -m jaxgan_lth.report)
    "absl-py",
    # tfds 4.9.10 imports it in download_and_prepare without declaring it (tfds#11212).
    "importlib_resources",
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
        # JAX's CUDA plugin wheels: a CUDA 12.x driver needs cuda12, a 13.x driver takes cuda13
        # (jax 0.10.2 declares both extras).
        "cuda12": ["jax[cuda12]>=0.10.2"],
        "cuda13": ["jax[cuda13]>=0.10.2"],
        "cuda": ["jax[cuda12]>=0.10.2"],  # old name of cuda12, kept for existing commands

    },
)
