"""Image folders (JPEG/PNG) for FID/KID: a thin layer over :mod:`jaxgan_lth.data.images`.

The FID side reads folders recursively and at their native size (converted to RGB; the FID
network resizes to 299 itself). Listing, decoding and read errors are those of the training-data
reader, :func:`jaxgan_lth.data.images.list_image_files` and
:func:`jaxgan_lth.data.images.read_image_file`: a truncated JPEG, a non-image file with an image
extension or an unreadable file raises a ``ValueError`` naming the file and the cause.
"""

from __future__ import annotations

import os
from typing import Iterator, List, Union

import numpy as np

from jaxgan_lth.data import images as images_lib

__all__ = ["IMAGE_EXTENSIONS", "iter_folder_images", "list_image_files", "load_image_folder"]

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = images_lib.IMAGE_EXTENSIONS


def list_image_files(folder: Union[str, os.PathLike], recursive: bool = True) -> List[str]:
    """Sorted paths of the JPEG/PNG files in ``folder`` (and its sub-folders when ``recursive``).

    Raises:
        FileNotFoundError: when ``folder`` is not a directory or holds no JPEG/PNG file (the
            message names the folder).
    """
    return images_lib.list_image_files(folder, recursive=recursive)


def iter_folder_images(folder: Union[str, os.PathLike], recursive: bool = True
                       ) -> Iterator[np.ndarray]:
    """Yields every image of a folder as uint8 ``[H, W, 3]`` at its native size, in sorted order.

    Raises:
        FileNotFoundError: see :func:`list_image_files` (raised by the call, before any image).
        ValueError: an unreadable image file (path and cause named), when it is reached.
    """
    return images_lib.iter_image_files(list_image_files(folder, recursive), None, 3)


def load_image_folder(folder: Union[str, os.PathLike], recursive: bool = True) -> np.ndarray:
    """All images of a folder as one uint8 ``[N, H, W, 3]`` array (they must share one size).

    Raises:
        FileNotFoundError: see :func:`list_image_files`.
        ValueError: an unreadable image file (path and cause named), or images that differ in
            size (use :func:`iter_folder_images` then).
    """
    images = list(iter_folder_images(folder, recursive))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images in {os.fspath(folder)!r} have different sizes "
                         f"{sorted(shapes)[:4]}; use iter_folder_images")
    return np.stack(images)
