"""Image decoding, resizing, channel conversion and scaling to [-1, 1].

Everything here works on host numpy arrays in NHWC layout and uses Pillow for decoding and
resampling, so image folders and tfds data sets go through the same code. This is also the one
image-folder reader of the project: training data (`load_image_folder`, non-recursive, resized)
and FID (`jaxgan_lth.evaluation.folders`, ``python -m jaxgan_lth.fid``: recursive, native size)
both list files with `list_image_files` and decode them with `read_image_file`, so every read
error (truncated JPEG, non-image file with an image extension, unreadable file) is the same
`ValueError` naming the file and the cause.

Conventions:

* Resampling filter: `PIL.Image.Resampling.LANCZOS` (windowed sinc, a = 3; Pillow's
  antialiasing filter: when shrinking, its support widens with the scale factor, so it
  low-pass filters instead of aliasing). It is also the filter the DiffAugment/StyleGAN2 dataset
  tools use to prepare the few-shot sets. Non-square images are stretched to
  `resolution x resolution` (no cropping).
* RGB -> grayscale: Pillow's `convert("L")`, ITU-R 601-2 luma
  (L = R * 299/1000 + G * 587/1000 + B * 114/1000, rounded). Grayscale -> RGB repeats the channel.
* Values: uint8 x -> float32 x / 127.5 - 1, so 0 -> -1.0 and 255 -> 1.0 exactly.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile

#: File name extensions (lower case) read from image folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: Pillow resampling filter used for every resize (see module docstring).
RESAMPLE = Image.Resampling.LANCZOS

_PIL_MODES = {1: "L", 3: "RGB"}


def _check_channels(channels) -> None:
    if isinstance(channels, bool) or channels not in _PIL_MODES:
        raise ValueError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")


def check_image_format(resolution, channels) -> None:
    """Validates the requested image format.

    Args:
        resolution: output height and width in pixels; an int >= 8.
        channels: 1 (grayscale) or 3 (RGB).

    Raises:
        ValueError: if `channels` is not 1 or 3, or `resolution` is not an integer >= 8.
    """
    _check_channels(channels)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, np.integer))
        or resolution < 8
    ):
        raise ValueError(f"data.resolution must be an integer >= 8, got {resolution!r}.")


def to_float(images: np.ndarray) -> np.ndarray:
    """Scales uint8 images to float32 in [-1, 1].

    Args:
        images: uint8 array of any shape (normally [N, H, W, C]).

    Returns:
        float32 array of the same shape: x / 127.5 - 1 (0 -> -1.0, 255 -> 1.0).

    Raises:
        TypeError: if `images` is not uint8 (other ranges would be silently mis-scaled).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got dtype {images.dtype}.")
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _to_pil(image: np.ndarray) -> Image.Image:
    """One uint8 [H, W, C] array (C = 1 or 3) -> Pillow image ("L" or "RGB")."""
    if image.shape[-1] == 1:
        return Image.fromarray(image[..., 0], mode="L")
    return Image.fromarray(image, mode="RGB")


def _from_pil(image: Image.Image) -> np.ndarray:
    """Pillow "L"/"RGB" image -> uint8 [H, W, C] array."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    return array


def convert_pil(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Converts one Pillow image to the training format, still uint8.

    Args:
        image: any Pillow image (mode is converted with `Image.convert`; an alpha channel is
            dropped, palette images are expanded).
        resolution: output height and width.
        channels: 1 ("L") or 3 ("RGB").

    Returns:
        uint8 array [resolution, resolution, channels].
    """
    mode = _PIL_MODES[channels]
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), resample=RESAMPLE)
    return _from_pil(image)


def convert_images(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """Resizes and converts a uint8 image batch to `resolution` x `resolution` x `channels`.

    Images already in the requested format are returned unchanged (no resampling). Grayscale ->
    RGB is a vectorised channel repeat; resizing and RGB -> grayscale go image by image through
    Pillow (see the module docstring for the filter and the luma formula).

    Args:
        images: uint8 [N, H, W, C] with C in {1, 3}.
        resolution: output height and width (>= 8).
        channels: output channels, 1 or 3.

    Returns:
        uint8 [N, resolution, resolution, channels].

    Raises:
        ValueError: for a bad layout, a channel count other than 1/3, or a bad target format.
    """
    check_image_format(resolution, channels)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            "expected uint8 images [N, H, W, C] with C in {1, 3}, got "
            f"dtype {images.dtype} and shape {images.shape}."
        )
    in_channels = images.shape[-1]
    same_size = images.shape[1:3] == (resolution, resolution)
    if same_size and in_channels == channels:
        return images
    if (in_channels == 3 and channels == 1) or not same_size:
        # Per image through Pillow. Gray -> RGB is deferred to the cheap repeat below.
        work_channels = 1 if in_channels == 1 else channels
        out = np.empty((images.shape[0], resolution, resolution, work_channels), np.uint8)
        for i, image in enumerate(images):
            out[i] = convert_pil(_to_pil(image), resolution, work_channels)
        images = out
    if images.shape[-1] == 1 and channels == 3:
        images = np.repeat(images, 3, axis=-1)
    return images


def list_image_files(folder: str | os.PathLike, recursive: bool = False) -> list[str]:
    """Lists the JPEG/PNG files of `folder`, sorted by path.

    Extensions are matched case-insensitively against `IMAGE_EXTENSIONS`; directories with an
    image-like name are skipped (a broken link is listed, and reading it fails with the file
    named). Sorting keeps image indices stable across runs.

    Args:
        folder: directory path.
        recursive: also search its sub-folders (the FID CLI does; training data does not).

    Returns:
        Sorted list of full file paths (non-recursive: sorted by file name).

    Raises:
        FileNotFoundError: if `folder` is empty, does not exist, is not a directory, or holds no
            JPEG/PNG file (the message names the folder and the accepted extensions).
    """
    folder = os.fspath(folder)
    if not folder:
        raise FileNotFoundError(
            "data.folder is empty: set it to a directory of JPEG/PNG images when "
            'data.name == "folder".'
        )
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist or is not a directory.")
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            if name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(path):
                paths.append(path)
        if not recursive:
            break
    if not paths:
        where = " (searched with its sub-folders)" if recursive else ""
        raise FileNotFoundError(
            f"image folder {folder!r} holds no image files{where}; accepted extensions "
            f"(case-insensitive): {', '.join(IMAGE_EXTENSIONS)}."
        )
    return sorted(paths)


_STRICT_LOCK = threading.Lock()


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Decodes with Pillow's truncated-image tolerance off, whatever the global setting.

    tensorflow-datasets sets the process-wide ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True``
    when it converts images while preparing a set; a truncated JPEG would then decode silently
    with grey fill. The flag is restored afterwards (under a lock: it is a module global).
    """
    with _STRICT_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _read_error(path: str, error: Exception) -> ValueError:
    """The ValueError of an undecodable file: the path, the likely cause and Pillow's message."""
    text = str(error)
    if isinstance(error, Image.UnidentifiedImageError):
        cause = "not a decodable image (not a JPEG/PNG file, or its header is corrupt)"
    elif isinstance(error, Image.DecompressionBombError):
        cause = "too many pixels (Pillow's decompression-bomb limit)"
    elif "truncated" in text.lower():
        cause = "the file is truncated (incomplete image data)"
    elif isinstance(error, OSError) and error.errno is not None:
        cause = "the file cannot be opened"
    else:
        cause = "corrupt or unsupported image data"
    return ValueError(f"cannot read image file {path!r}: {cause} ({type(error).__name__}: {text}).")


#: an image upscaled by more than this factor (e.g. a 1x1 file to 256 px) is warned about
MAX_UPSCALE = 4


def read_image_file(path: str, resolution: int | None = None, channels: int = 3) -> np.ndarray:
    """Decodes one image file with Pillow (fully, so truncated data is detected).

    A file whose shorter side is upscaled more than :data:`MAX_UPSCALE` times to
    ``resolution`` (a 1x1 image becomes a flat square) gives a ``UserWarning`` naming it.

    Truncated data is an error even when another library has set Pillow's global
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` (tensorflow-datasets does).

    Args:
        path: JPEG/PNG file path.
        resolution: output height and width (>= 8, Lanczos, see the module docstring); None =
            the file's native size (the FID CLI; the FID network resizes to 299 itself).
        channels: 1 (grayscale, "L") or 3 (RGB: grayscale repeated, alpha dropped, palettes
            expanded, as Pillow's ``convert("RGB")``).

    Returns:
        uint8 [H, W, channels] (H = W = `resolution` when given).

    Raises:
        ValueError: for any decoding or file error: a truncated file, a non-image file with an
            image extension, a missing or unreadable file; the message names the file, the cause
            and Pillow's error. Also for a bad `resolution` / `channels`.
    """
    if resolution is None:
        _check_channels(channels)
    else:
        check_image_format(resolution, channels)
    try:
        with _strict_decoding(), Image.open(path) as image:
            image.load()
            if resolution is not None:
                if min(image.size) * MAX_UPSCALE < resolution:
                    warnings.warn(
                        f"image file {os.fspath(path)!r} is {image.size[0]}x{image.size[1]} px "
                        f"and is upscaled to {resolution}x{resolution} (more than "
                        f"{MAX_UPSCALE}x): it trains as a blurred or flat square. Remove it or "
                        "lower data.resolution.", stacklevel=2)
                return convert_pil(image, resolution, channels)
            mode = _PIL_MODES[channels]
            return _from_pil(image if image.mode == mode else image.convert(mode))
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many types.
        raise _read_error(os.fspath(path), error) from error


def iter_image_files(
    paths: Sequence[str], resolution: int | None = None, channels: int = 3
) -> Iterator[np.ndarray]:
    """Yields `read_image_file(path, resolution, channels)` for each path, in order.

    Returns:
        Iterator of uint8 [H, W, channels] arrays (native sizes when `resolution` is None).

    Raises:
        ValueError: on the first unreadable file, as `read_image_file`.
    """
    for path in paths:
        yield read_image_file(path, resolution, channels)


def load_image_files(paths: Sequence[str], resolution: int, channels: int) -> np.ndarray:
    """Decodes image files with Pillow into one uint8 batch.

    Args:
        paths: image file paths; the output keeps their order.
        resolution: output height and width (>= 8).
        channels: 1 (grayscale, "L") or 3 (RGB).

    Returns:
        uint8 [len(paths), resolution, resolution, channels].

    Raises:
        ValueError: if a file cannot be read (the message names the file and the cause, see
            `read_image_file`) or the format is bad.
    """
    check_image_format(resolution, channels)
    out = np.empty((len(paths), resolution, resolution, channels), np.uint8)
    for i, path in enumerate(paths):
        out[i] = read_image_file(path, resolution, channels)
    return out


def load_image_folder(folder: str, resolution: int, channels: int) -> np.ndarray:
    """Loads every JPEG/PNG directly inside `folder` (sorted names) as float32 in [-1, 1].

    Args:
        folder: directory of images (not searched recursively).
        resolution: output height and width (>= 8), Lanczos resampling.
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        float32 [N, resolution, resolution, channels] in [-1, 1], in sorted file-name order.

    Raises:
        FileNotFoundError: folder missing or without images (folder named).
        ValueError: unreadable image (file and cause named) or bad `resolution`/`channels`.
    """
    check_image_format(resolution, channels)
    return to_float(load_image_files(list_image_files(folder), resolution, channels))
