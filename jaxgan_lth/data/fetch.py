r"""Downloads the public few-shot sets of the DiffAugment paper into an image folder.

Usage::

    python -m jaxgan_lth.data.fetch --list
    python -m jaxgan_lth.data.fetch 100-shot-obama data/100-shot-obama
    python -m jaxgan_lth.main --config=configs/stylegan2_fewshot.py \
        --config.data.folder=data/100-shot-obama --workdir=workdirs/obama

Options: ``--archive PATH`` unpacks a zip downloaded elsewhere instead of downloading,
``--url URL`` downloads from a mirror, ``--sha256 HEX`` pins the archive's SHA-256,
``--accept-unverified`` unpacks a set that has no pinned digest (and records the digests it
got), ``--force`` replaces a non-empty DIR.

The sets (`SETS`) are those of Zhao et al., "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS 2020, which the lottery-ticket paper's Table 5 also uses: 100-shot Obama,
Grumpy Cat and Panda (100 images each) and AnimalFace cat (160) and dog (389), 256x256.
Their URLs are the ones the authors' code downloads (mit-han-lab/data-efficient-gans,
``DiffAugment-stylegan2/training/dataset_tool.py``: ``https://data-efficient-gans.mit.edu/
datasets/<name>.zip``, since commit 6858275 of 2021; before it ``hanlab.mit.edu/projects/
data-efficient-gans/datasets/``). Since September 2024 that repository's README links a single
Dropbox archive ``data-efficient-gans.zip`` for the data sets instead; whether the per-set URLs
still answer could not be checked from here (no internet). A per-set zip obtained any other way
goes through the same checks with ``--archive``.

Integrity. The authors publish no checksums, so:

* ``archive_sha256`` (SHA-256 of the zip) is None for every set: nobody has pinned one.
  ``--sha256 HEX`` pins it for one call.
* ``content_sha256`` is a digest of the images themselves, independent of how the zip was
  packed: the SHA-256 of the lines ``"<sha256 of file>  <file name>\n"`` sorted by name, i.e.
  ``cd DIR && ls | LC_ALL=C sort | xargs sha256sum | sha256sum`` (`folder_digest`). It is pinned
  for Obama and Grumpy Cat, computed from the copies of these folders the project was developed
  with (``../shared/data/few-shot``, described there as the DiffAugment paper's sets), NOT from a
  download of the archives, which was impossible here.
* A set with neither digest pinned (Panda, AnimalFace cat/dog) is refused before any download
  unless ``--sha256`` or ``--accept-unverified`` is given; with the latter its digests are
  computed and written to ``DIR/fetch.json`` so the next user can pin them.

Every fetch also checks the image count and writes ``DIR/fetch.json`` (source, both digests,
how it was verified). DIR is filled atomically: the images are unpacked into a temporary sibling
folder that is renamed to DIR at the end, so a failure leaves no half-filled DIR. Only the JPEG
and PNG members of the zip are written, flattened to their base names (no path from the archive
is used; macOS ``__MACOSX`` / ``._*`` members are skipped).

Why the standard library (urllib, hashlib, zipfile) and not a download library: the job is one
HTTPS GET of a few MB, a hash and an unzip; the data-set libraries at hand (tfds, torchvision)
do not know these sets and would pull TensorFlow or PyTorch, which this step does not need.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable

#: Images are these extensions (lower case), as `jaxgan_lth.data.images.IMAGE_EXTENSIONS`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: Largest archive downloaded and largest total of unpacked images (bytes): the sets are 2-30 MB.
MAX_BYTES = 512 * 2**20

#: Base of the authors' per-set URLs (DiffAugment-stylegan2/training/dataset_tool.py).
OFFICIAL_BASE = "https://data-efficient-gans.mit.edu/datasets/"

#: Record written into every fetched folder.
RECORD_NAME = "fetch.json"

_SHARED = "the project's development copy (../shared/data/few-shot), not a download"


@dataclasses.dataclass(frozen=True)
class FewShotSet:
    """One downloadable set.

    Attributes:
        name: the set's name in the authors' code (also the zip's base name).
        url: where the zip is downloaded from.
        num_images: images in the set (DiffAugment paper, Sec. 5 / slides: 100, 160 cats, 389
            dogs); a different count is refused.
        archive_sha256: pinned SHA-256 of the zip (hex), None when unknown.
        content_sha256: pinned `folder_digest` of the images (hex), None when unknown.
        content_source: where ``content_sha256`` comes from ("" when None).
    """

    name: str
    url: str
    num_images: int
    archive_sha256: str | None = None
    content_sha256: str | None = None
    content_source: str = ""


def _official(name: str, num_images: int, content: str | None = None) -> FewShotSet:
    return FewShotSet(name, f"{OFFICIAL_BASE}{name}.zip", num_images, None, content,
                      _SHARED if content else "")


#: The sets, by name. Pinned digests: see the module docstring for where each comes from.
SETS: dict[str, FewShotSet] = {s.name: s for s in (
    _official("100-shot-obama", 100,
              "a37eba02917bff2af4992a3425b0aeca962a07f2f2a87d3c6ccf028fa894ff70"),
    _official("100-shot-grumpy_cat", 100,
              "73c3ca26c48abef75472b523f6e0e7b0786b80029bcb7d5365a9375edc082764"),
    _official("100-shot-panda", 100),
    _official("AnimalFace-cat", 160),
    _official("AnimalFace-dog", 389),
)}


class FetchError(RuntimeError):
    """A set could not be fetched: unknown name, offline, digest mismatch, DIR not empty, ..."""


def content_digest(file_hashes: Iterable[tuple[str, str]]) -> str:
    r"""SHA-256 (hex) of ``"<file sha256>  <name>\n"`` lines sorted by name (``sha256sum`` format).

    Args:
        file_hashes: (file name, hex SHA-256 of its bytes) pairs, in any order.

    Returns:
        64 hex digits; equal to ``ls | LC_ALL=C sort | xargs sha256sum | sha256sum`` in a folder
        holding exactly those files.
    """
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(file_hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def folder_digest(folder: str | os.PathLike) -> str:
    """`content_digest` of the JPEG/PNG files directly inside `folder` (what a fetch pins).

    Raises:
        FileNotFoundError: `folder` does not exist.
    """
    pairs = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if _is_image(name) and os.path.isfile(path):
            with open(path, "rb") as f:
                pairs.append((name, hashlib.sha256(f.read()).hexdigest()))
    return content_digest(pairs)


def _offline_hint(spec: FewShotSet, directory: str) -> str:
    return (f"Without internet (or if that URL is gone): download {spec.url} (or the "
            "data-efficient-gans.zip bundle linked from the README of "
            "github.com/mit-han-lab/data-efficient-gans) on another machine "
            f"and run `python -m jaxgan_lth.data.fetch {spec.name} {directory} --archive "
            f"PATH/{spec.name}.zip`, or put the set's {spec.num_images} JPEG/PNG images into "
            f"{directory} yourself and train with --config.data.folder={directory}.")


def download(url: str, dest: str, *, timeout: float = 60.0, max_bytes: int = MAX_BYTES) -> str:
    """Streams `url` into the file `dest` and returns the SHA-256 (hex) of what was written.

    Args:
        url: http(s):// or file:// URL.
        dest: file to write (created or truncated).
        timeout: seconds to wait for the connection and for each read.
        max_bytes: larger downloads are stopped.

    Returns:
        The SHA-256 of the downloaded bytes.

    Raises:
        OSError: network failure (``urllib.error.URLError``, timeouts) or write failure.
        FetchError: more than `max_bytes`.
    """
    sha = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"{url} is larger than {max_bytes} bytes; refused.")
            sha.update(chunk)
            out.write(chunk)
    return sha.hexdigest()


def _file_sha256(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def read_images(zip_path: str, max_bytes: int = MAX_BYTES) -> dict[str, bytes]:
    """The JPEG/PNG members of a zip, by base name (``__MACOSX`` and ``._*`` skipped).

    Raises:
        FetchError: not a zip, a corrupt member (CRC), two images with the same base name, or
            more than `max_bytes` of images.
    """
    images: dict[str, bytes] = {}
    total = 0
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                parts = info.filename.replace("\\", "/").split("/")
                base = parts[-1]
                if info.is_dir() or not _is_image(base) or "__MACOSX" in parts:
                    continue
                if base.startswith("._"):
                    continue
                total += info.file_size
                if total > max_bytes:
                    raise FetchError(f"{zip_path} unpacks to more than {max_bytes} bytes; refused.")
                if base in images:
                    raise FetchError(f"{zip_path} holds two images named {base!r}.")
                images[base] = archive.read(info)  # checks the member's CRC-32
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise FetchError(f"{zip_path} is not a readable zip archive ({error}).") from error
    return images


def _check_target(directory: str, force: bool) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise FetchError(f"{directory!r} exists and is not a folder; choose another DIR.")
    if os.path.isdir(directory) and os.listdir(directory) and not force:
        raise FetchError(f"{directory!r} exists and is not empty; nothing was changed. Choose "
                         "another DIR, or pass --force to replace its contents.")


def _verify(spec: FewShotSet, images: dict[str, bytes], archive_sha: str,
            expected_archive: str | None, source: str) -> str:
    """Checks count and digests; returns the content digest."""
    if expected_archive and archive_sha != expected_archive.lower():
        raise FetchError(f"SHA-256 of {source} is {archive_sha}, expected {expected_archive}: "
                         "the archive is corrupt or not the published one; nothing was unpacked.")
    if len(images) != spec.num_images:
        raise FetchError(f"{source} holds {len(images)} JPEG/PNG images; {spec.name} has "
                         f"{spec.num_images}. Nothing was unpacked.")
    digest = content_digest((n, hashlib.sha256(b).hexdigest()) for n, b in images.items())
    if spec.content_sha256 and digest != spec.content_sha256:
        raise FetchError(f"the images of {source} have content digest {digest}, expected "
                         f"{spec.content_sha256} ({spec.content_source}); nothing was unpacked.")
    return digest


def _write_folder(directory: str, images: dict[str, bytes], record: dict, force: bool) -> None:
    """Writes the images and the record into a temporary sibling, then renames it to DIR."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(directory))}.", dir=parent)
    try:
        for name, data in images.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        with open(os.path.join(tmp, RECORD_NAME), "w") as f:
            json.dump(record, f, indent=1)
        _check_target(directory, force)  # again: DIR may have changed during the download
        if os.path.isdir(directory):
            (shutil.rmtree if os.listdir(directory) else os.rmdir)(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fetch(name: str, directory: str, *, archive: str | None = None, url: str | None = None,
          sha256: str | None = None, accept_unverified: bool = False, force: bool = False,
          timeout: float = 60.0) -> dict:
    """Downloads (or takes `archive`), verifies and unpacks one set into `directory`.

    Args:
        name: a key of `SETS`.
        directory: the image folder to create (train with ``--config.data.folder=directory``).
        archive: a local zip of the set; nothing is downloaded.
        url: download from here instead of the set's URL (a mirror; file:// works).
        sha256: expected SHA-256 (hex) of the zip; overrides the pinned one.
        accept_unverified: unpack a set with no pinned digest and no `sha256`.
        force: replace a non-empty `directory` (its files are deleted).
        timeout: network timeout in seconds.

    Returns:
        The record written to ``directory/fetch.json``: name, source, archive_sha256,
        content_sha256, num_images, verified_by, fetched_utc.

    Raises:
        FetchError: unknown name (names listed), non-empty `directory` without `force`, no
            pinned digest without `sha256`/`accept_unverified`, download failure (the message says
            how to fetch it by hand), digest or image-count mismatch, unreadable zip.
    """
    spec = SETS.get(name)
    if spec is None:
        raise FetchError(f"unknown set {name!r}; accepted: {sorted(SETS)}.")
    _check_target(directory, force)
    expected = sha256 or spec.archive_sha256
    verified_by = ("--sha256" if sha256 else "pinned archive SHA-256" if expected
                   else f"pinned content digest ({spec.content_source})" if spec.content_sha256
                   else "")
    if not verified_by and not accept_unverified:
        raise FetchError(
            f"{name} has no pinned SHA-256 (its authors publish none, and no copy was checked "
            "for this project). Pass --sha256 HEX of a copy you trust, or --accept-unverified "
            f"to unpack it unchecked; its digests are then recorded in {directory}/{RECORD_NAME}.")
    with tempfile.TemporaryDirectory() as scratch:
        if archive is None:
            source = url or spec.url
            zip_path = os.path.join(scratch, f"{name}.zip")
            try:
                archive_sha = download(source, zip_path, timeout=timeout)
            except OSError as error:  # URLError/HTTPError, timeouts, refused connections
                raise FetchError(f"could not download {name} from {source} "
                                 f"({type(error).__name__}: {error}). "
                                 f"{_offline_hint(spec, directory)}") from error
        else:
            if not os.path.isfile(archive):
                raise FetchError(f"--archive {archive!r} is not a file.")
            source, zip_path, archive_sha = archive, archive, _file_sha256(archive)
        images = read_images(zip_path)
        digest = _verify(spec, images, archive_sha, expected, source)
    record = {"name": name, "source": source, "archive_sha256": archive_sha,
              "content_sha256": digest, "num_images": len(images),
              "verified_by": verified_by or "unverified (--accept-unverified)",
              "fetched_utc": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    _write_folder(directory, images, record, force)
    return record


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan_lth.data.fetch",
        description="Download, verify (SHA-256) and unpack a 100-shot or AnimalFace set of the "
                    "DiffAugment paper into an image folder.")
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(SETS)}")
    parser.add_argument("dir", nargs="?", help="folder to create (must not exist or be empty)")
    parser.add_argument("--list", action="store_true", help="list the sets and exit")
    parser.add_argument("--archive", help="unpack this local zip instead of downloading")
    parser.add_argument("--url", help="download from this URL instead (a mirror)")
    parser.add_argument("--sha256", help="expected SHA-256 of the zip (hex)")
    parser.add_argument("--accept-unverified", action="store_true",
                        help="unpack a set without a pinned digest; its digests are recorded")
    parser.add_argument("--force", action="store_true", help="replace a non-empty DIR")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    args = parser.parse_args(argv)
    if not args.list and (args.name is None or args.dir is None):
        parser.error("NAME and DIR are required (or --list)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 ok, 1 fetch error, 2 usage)."""
    args = _parse(argv)
    if args.list:
        for spec in SETS.values():
            pinned = ("content digest pinned" if spec.content_sha256 else
                      "archive SHA-256 pinned" if spec.archive_sha256 else "no pinned digest")
            print(f"{spec.name}\t{spec.num_images} images\t{pinned}\t{spec.url}")
        return 0
    try:
        record = fetch(args.name, args.dir, archive=args.archive, url=args.url,
                       sha256=args.sha256, accept_unverified=args.accept_unverified,
                       force=args.force, timeout=args.timeout)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{record['num_images']} images of {args.name} in {args.dir} (verified by "
          f"{record['verified_by']}; archive SHA-256 {record['archive_sha256']}); train with "
          f"--config.data.folder={args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
