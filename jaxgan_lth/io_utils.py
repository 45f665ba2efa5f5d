"""Small host-side I/O helpers shared by the loop, the pipeline and the CLIs.

Own code where no listed library fits: atomic JSON files (tmp file + rename, so a kill never
leaves half a file) and tiling a batch of images into one grid (numpy; Pillow writes the PNG).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np


def write_json(path: str, obj: Any) -> None:
    """Atomically writes ``obj`` as indented JSON with sorted keys (tmp file + rename).

    The tmp name is per process, as several hosts may share the workdir.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: str, default: Any = None) -> Any:
    """The JSON content of ``path``, or ``default`` when the file does not exist."""
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def image_grid(images: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` images in [-1, 1] into one uint8 ``[rows*H, cols*W, C]`` grid.

    Empty cells are black (-1). Own code (a few lines of numpy): no listed library tiles image
    batches without pulling in torchvision or matplotlib.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * h, ncols * w, c), -1.0, np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    return np.clip(np.round((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str) -> None:
    """Writes a uint8 ``[H, W, C]`` array (C = 1 or 3) as PNG with Pillow."""
    from PIL import Image

    img = array[..., 0] if array.shape[-1] == 1 else array
    Image.fromarray(img).save(path)


def fmt_eta(seconds: float) -> str:
    """``h:mm:ss`` of a duration in seconds."""
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def append_jsonl(path: str, record: dict) -> None:
    """Appends ``record`` as one JSON line to ``path`` (the per-run ``metrics.jsonl``).

    Own code: clu's writers go to TensorBoard event files, which need TensorFlow to read back;
    a JSON-lines file is readable by the report (and by anyone) with the standard library.
    """
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[dict]:
    """The records of a JSON-lines file (``[]`` when it does not exist).

    A torn last line (a kill while writing) is skipped.
    """
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def truncate_jsonl(path: str, max_step: int) -> None:
    """Keeps the records of ``path`` with ``record["step"] <= max_step`` (atomically).

    A resumed run first drops what it logged after its last checkpoint, so the log holds each
    step once, as an uninterrupted run's would.
    """
    if not os.path.exists(path):
        return
    keep = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= max_step]
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        for r in keep:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    os.replace(tmp, path)


def exit_with_error(error: BaseException) -> None:
    """Prints ``error``'s traceback, then the error itself as the LAST line, and exits (1).

    The exit is immediate (``os._exit``): after a failed checkpoint write, TensorStore's
    threads go on completing futures into Orbax's closed event loops, and their tracebacks
    ("Event loop is closed", "sys.meta_path is None") printed after the error during the
    interpreter's shutdown, 50-160 lines below the cause (issue 29); after the report, other
    threads' writes to stderr are dropped. The checkpoints are closed and Orbax's threads waited
    for by the pipeline before (``checkpointing.close_all``).
    """
    time.sleep(0.5)  # let in-flight background callbacks print before the report
    sys.stdout.flush()
    sys.stderr.flush()
    # from here on, other threads' writes to stderr (Python's and C++'s) are dropped: the report
    # goes to a private copy of the stderr file descriptor and is the last output
    report = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    text = "".join(traceback.format_exception(error))
    os.write(report, f"{text}error: {type(error).__name__}: {error}\n".encode())
    os._exit(130 if isinstance(error, KeyboardInterrupt) else 1)
