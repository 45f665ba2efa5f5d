"""Reading image folders (JPEG/PNG) as uint8 arrays for FID/KID."""

from __future__ import annotations

import os
from typing import Iterator, List, Union

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "iter_folder_images", "list_image_files", "load_image_folder"]

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def list_image_files(folder: Union[str, os.PathLike], recursive: bool = True) -> List[str]:
    """Sorted paths of the JPEG/PNG files in ``folder`` (and its sub-folders when ``recursive``).

    Raises:
        FileNotFoundError: when ``folder`` is not a directory.
        ValueError: when it holds no JPEG/PNG file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths.extend(os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        if not recursive:
            break
    if not paths:
        raise ValueError(f"no {'/'.join(IMAGE_EXTENSIONS)} images in {folder!r}")
    return sorted(paths)


def _read(path: str) -> np.ndarray:
    with Image.open(path) as img:
        # Like the reference (PIL convert("RGB")): grayscale repeated, alpha dropped.
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def iter_folder_images(folder: Union[str, os.PathLike], recursive: bool = True
                       ) -> Iterator[np.ndarray]:
    """Yields every image of a folder as uint8 ``[H, W, 3]`` at its native size, in sorted order."""
    for path in list_image_files(folder, recursive):
        yield _read(path)


def load_image_folder(folder: Union[str, os.PathLike], recursive: bool = True) -> np.ndarray:
    """All images of a folder as one uint8 ``[N, H, W, 3]`` array (they must share one size).

    Raises:
        FileNotFoundError / ValueError: see :func:`list_image_files`; ValueError also when the
            images differ in size (use :func:`iter_folder_images` then).
    """
    images = [_read(p) for p in list_image_files(folder, recursive)]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images in {folder!r} have different sizes {sorted(shapes)[:4]}; "
                         "use iter_folder_images")
    return np.stack(images)
