"""The archive of benchmarks/device_check.py: written after every step, unpacked into results/.

``write(run_dir, dest)`` packs the run folder's summary (``device_check.json``, ``.md``), the
machine probe, the result files, the step logs, the sample grids and the training run's
metrics into ``dest/device_check.tar.gz`` (written beside, then renamed over the old one, so a
kill leaves the previous complete archive) and copies the summary beside it.

Unpacking (after a device call, on this machine)::

    python benchmarks/device_archive.py unpack ARCHIVE [--into benchmarks/results] [--force]

extracts it into ``benchmarks/results/<machine>/`` (the machine tag the probe wrote into
``device_check.json``, e.g. ``gpu-NVIDIA_H100_80GB_HBM3x1``), refusing to overwrite files that
are already there unless ``--force``. Only regular files with relative paths are extracted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tarfile

ARCHIVE = "device_check.tar.gz"
SUMMARY = ("device_check.json", "device_check.md")
#: What of the run folder goes into the archive (files or folders).
CONTENT = SUMMARY + ("machine.json", "results", "logs", "grids", "train_fewshot")
TOP = "device_check"
#: Logs longer than this keep only their last bytes in the archive.
LOG_TAIL_BYTES = 256 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _add(tar: tarfile.TarFile, path: str, arcname: str) -> None:
    size = os.path.getsize(path)
    if arcname.endswith(".log") and size > LOG_TAIL_BYTES:
        with open(path, "rb") as f:
            f.seek(size - LOG_TAIL_BYTES)
            data = b"[... log cut to its last %d bytes ...]\n" % LOG_TAIL_BYTES + f.read()
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime = len(data), int(os.path.getmtime(path))
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.add(path, arcname)


def write(run_dir: str, dest: str) -> str:
    """Packs ``run_dir``'s :data:`CONTENT` into ``dest/device_check.tar.gz`` (atomic rename)
    and copies the summary files beside it; returns the archive path."""
    os.makedirs(dest, exist_ok=True)
    final = os.path.join(dest, ARCHIVE)
    part = final + ".part"
    with tarfile.open(part, "w:gz") as tar:
        for name in CONTENT:
            path = os.path.join(run_dir, name)
            if os.path.isfile(path):
                _add(tar, path, f"{TOP}/{name}")
            elif os.path.isdir(path):
                for folder, _, files in sorted(os.walk(path)):
                    for f in sorted(files):
                        full = os.path.join(folder, f)
                        _add(tar, full, f"{TOP}/{os.path.relpath(full, run_dir)}")
    os.replace(part, final)
    for name in SUMMARY:
        src = os.path.join(run_dir, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(dest, name + ".part"))
            os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
    return final


def read_summary(archive: str) -> dict:
    """The ``device_check.json`` inside ``archive``.

    Raises:
        ValueError: the archive has no such file.
    """
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.getmember(f"{TOP}/device_check.json")
        except KeyError:
            raise ValueError(f"{archive}: no {TOP}/device_check.json inside; not an archive "
                             "of benchmarks/device_check.py") from None
        return json.load(tar.extractfile(member))


def unpack(archive: str, into: str, force: bool = False) -> str:
    """Extracts ``archive`` into ``into/<machine tag>/``; returns that folder.

    Raises:
        FileExistsError: a file would be overwritten and ``force`` is False (nothing written).
        ValueError: not an archive of device_check.py, or a member with an unsafe path.
    """
    summary = read_summary(archive)
    slug = summary.get("machine_slug") or "unknown-machine"
    target = os.path.join(into, slug)
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for m in tar.getmembers():
            rel = os.path.relpath(m.name, TOP)
            if (not m.isfile() or os.path.isabs(m.name) or rel.startswith("..")
                    or ".." in rel.split(os.sep)):
                if m.isdir():
                    continue
                raise ValueError(f"{archive}: refusing member {m.name!r} (not a plain file "
                                 f"under {TOP}/)")
            members.append((m, os.path.join(target, rel)))
        clashes = [p for _, p in members if os.path.exists(p)]
        if clashes and not force:
            raise FileExistsError(f"{len(clashes)} file(s) already in {target}, e.g. "
                                  f"{clashes[0]}; pass --force to overwrite them")
        for m, path in members:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tar.extractfile(m) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def main(argv=None) -> int:
    """``unpack ARCHIVE [--into DIR] [--force]``; prints the folder written."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("unpack", help="extract into benchmarks/results/<machine>/")
    u.add_argument("archive")
    u.add_argument("--into", default=os.path.join(ROOT, "benchmarks", "results"))
    u.add_argument("--force", action="store_true", help="overwrite files already there")
    args = p.parse_args(argv)
    try:
        print(unpack(args.archive, args.into, args.force))
    except (FileExistsError, ValueError) as e:
        print(f"device_archive.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
