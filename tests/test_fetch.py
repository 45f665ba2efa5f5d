"""python -m jaxgan_lth.data.fetch (issue 31, item 6) against a tiny zip made here.

The zip is served by a local http.server (the real download path) or read with --archive; the
expected digests are computed here from the bytes put into the zip (hashlib directly, and the
``sha256sum`` pipeline the module docstring gives), not by the module under test.
"""

import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxgan_lth.data import fetch as fetch_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = "/work/shared/data/few-shot"


def _png(seed):
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A 3-image set 'tiny' (one image in a sub-folder, plus macOS junk and a text file)."""
    images = {"0.png": _png(0), "1.png": _png(1), "2.png": _png(2)}
    zip_path = tmp_path / "serve" / "tiny.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("0.png", images["0.png"])
        z.writestr("1.png", images["1.png"])
        z.writestr("sub/2.png", images["2.png"])
        z.writestr("__MACOSX/._0.png", b"\x00\x05\x16\x07 resource fork")
        z.writestr("README.txt", "not an image")
    lines = "".join(f"{hashlib.sha256(images[n]).hexdigest()}  {n}\n" for n in sorted(images))
    content = hashlib.sha256(lines.encode()).hexdigest()
    archive = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    spec = fetch_lib.FewShotSet("tiny", zip_path.as_uri(), 3, None, content, "this test")
    monkeypatch.setitem(fetch_lib.SETS, "tiny", spec)
    return dict(images=images, zip=str(zip_path), content=content, archive=archive, spec=spec)


@pytest.fixture
def http_url(tiny):
    """The tiny zip served over HTTP on localhost."""
    directory = os.path.dirname(tiny["zip"])

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tiny.zip"
    server.shutdown()
    server.server_close()


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny.zip"  # nothing listens there any more


def _folder_files(path):
    return {n: open(os.path.join(path, n), "rb").read() for n in os.listdir(path)
            if n != fetch_lib.RECORD_NAME}


def test_download_over_http_verifies_and_unpacks(tiny, http_url, tmp_path):
    out = tmp_path / "data" / "tiny"
    record = fetch_lib.fetch("tiny", str(out), url=http_url)
    assert _folder_files(out) == tiny["images"]  # flattened, junk and text skipped
    assert record["content_sha256"] == tiny["content"]
    assert record["archive_sha256"] == tiny["archive"]
    assert json.load(open(out / fetch_lib.RECORD_NAME)) == record
    assert record["verified_by"].startswith("pinned content digest")
    assert os.listdir(tmp_path / "data") == ["tiny"]  # no temporary folder left beside it
    assert fetch_lib.folder_digest(out) == tiny["content"]
    if shutil.which("sha256sum"):  # the shell pipeline the docstring gives
        shell = subprocess.run("ls | LC_ALL=C sort | grep -v fetch.json | xargs sha256sum | "
                               "sha256sum", shell=True, cwd=out, capture_output=True, text=True)
        assert shell.stdout.split()[0] == tiny["content"]


def test_archive_sha256_mismatch_unpacks_nothing(tiny, tmp_path):
    out = tmp_path / "d"
    with pytest.raises(fetch_lib.FetchError, match="expected " + "0" * 64):
        fetch_lib.fetch("tiny", str(out), sha256="0" * 64)
    assert not out.exists() and os.listdir(tmp_path) == ["serve"]
    record = fetch_lib.fetch("tiny", str(out), sha256=tiny["archive"])  # the right one passes
    assert record["verified_by"] == "--sha256"


def test_content_digest_mismatch_and_count_are_refused(tiny, tmp_path, monkeypatch):
    bad = fetch_lib.FewShotSet("tiny", tiny["spec"].url, 3, None, "f" * 64, "x")
    monkeypatch.setitem(fetch_lib.SETS, "tiny", bad)
    with pytest.raises(fetch_lib.FetchError, match=f"content digest {tiny['content']}"):
        fetch_lib.fetch("tiny", str(tmp_path / "a"))
    wrong_count = fetch_lib.FewShotSet("tiny", tiny["spec"].url, 4, None, tiny["content"], "x")
    monkeypatch.setitem(fetch_lib.SETS, "tiny", wrong_count)
    with pytest.raises(fetch_lib.FetchError, match="holds 3 JPEG/PNG images; tiny has 4"):
        fetch_lib.fetch("tiny", str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()


def test_offline_error_says_where_to_put_the_folder(tiny, tmp_path):
    out = str(tmp_path / "obama")
    with pytest.raises(fetch_lib.FetchError) as info:
        fetch_lib.fetch("tiny", out, url=_closed_port_url(), timeout=5)
    msg = str(info.value)
    assert "could not download tiny" in msg and "--archive PATH/tiny.zip" in msg
    assert f"--config.data.folder={out}" in msg and "3 JPEG/PNG images" in msg
    assert not os.path.exists(out)
    # the hint works: the same zip from disk
    fetch_lib.fetch("tiny", out, archive=tiny["zip"])
    assert _folder_files(out) == tiny["images"]


def test_never_overwrites_without_force(tiny, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.jpg").write_bytes(b"user data")
    with pytest.raises(fetch_lib.FetchError, match="not empty; nothing was changed"):
        fetch_lib.fetch("tiny", str(out))
    assert os.listdir(out) == ["keep.jpg"] and (out / "keep.jpg").read_bytes() == b"user data"
    fetch_lib.fetch("tiny", str(out), force=True)
    assert _folder_files(out) == tiny["images"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an existing empty folder is filled without --force
    fetch_lib.fetch("tiny", str(empty))
    assert _folder_files(empty) == tiny["images"]


def test_unpinned_set_is_refused_before_downloading(tiny, tmp_path, monkeypatch):
    unpinned = fetch_lib.FewShotSet("tiny", _closed_port_url(), 3)
    monkeypatch.setitem(fetch_lib.SETS, "tiny", unpinned)
    with pytest.raises(fetch_lib.FetchError, match="no pinned SHA-256") as info:
        fetch_lib.fetch("tiny", str(tmp_path / "u"))
    assert "could not download" not in str(info.value)  # refused before the network
    record = fetch_lib.fetch("tiny", str(tmp_path / "u"), archive=tiny["zip"],
                             accept_unverified=True)
    assert record["verified_by"] == "unverified (--accept-unverified)"
    assert record["archive_sha256"] == tiny["archive"]  # recorded for the next user to pin
    assert record["content_sha256"] == tiny["content"]


def test_cli_list_usage_and_errors(tiny, tmp_path):
    run = [sys.executable, "-m", "jaxgan_lth.data.fetch"]
    out = subprocess.run(run + ["--list"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0
    names = [line.split("\t")[0] for line in out.stdout.splitlines()]
    assert names == ["100-shot-obama", "100-shot-grumpy_cat", "100-shot-panda",
                     "AnimalFace-cat", "AnimalFace-dog"]
    assert "https://data-efficient-gans.mit.edu/datasets/100-shot-obama.zip" in out.stdout
    bad = subprocess.run(run + ["100-shot-lena", str(tmp_path / "x")], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown set '100-shot-lena'" in bad.stderr
    assert "100-shot-obama" in bad.stderr
    usage = subprocess.run(run + ["100-shot-obama"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "NAME and DIR are required" in usage.stderr
    assert fetch_lib.main(["tiny", str(tmp_path / "t"), "--archive", tiny["zip"]]) == 0
    assert _folder_files(tmp_path / "t") == tiny["images"]


def test_not_a_zip_is_refused(tiny, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>moved</html>")  # what a dead link's error page looks like
    with pytest.raises(fetch_lib.FetchError, match="not a readable zip"):
        fetch_lib.fetch("tiny", str(tmp_path / "j"), archive=str(junk))


@pytest.mark.parametrize("name", ["100-shot-obama", "100-shot-grumpy_cat"])
def test_pinned_digests_match_the_development_copies(name):
    folder = os.path.join(SHARED, name)
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} is not there")
    if not shutil.which("sha256sum"):
        pytest.skip("no sha256sum")
    shell = subprocess.run("ls | LC_ALL=C sort | xargs sha256sum | sha256sum", shell=True,
                           cwd=folder, capture_output=True, text=True)
    assert fetch_lib.SETS[name].content_sha256 == shell.stdout.split()[0]
    assert fetch_lib.folder_digest(folder) == shell.stdout.split()[0]
    assert len(os.listdir(folder)) == fetch_lib.SETS[name].num_images


def test_dead_link_is_a_fetch_error(tiny, http_url, tmp_path):
    with pytest.raises(fetch_lib.FetchError, match="HTTP Error 404") as info:
        fetch_lib.fetch("tiny", str(tmp_path / "g"), url=http_url.replace("tiny", "gone"))
    assert "--archive PATH/tiny.zip" in str(info.value) and not (tmp_path / "g").exists()
