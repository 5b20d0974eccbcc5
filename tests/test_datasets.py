"""Finding FSDD on a user's machine (specimg.datasets): DATA= / SPECIMG_FSDD, ../shared/datasets/fsdd, the user
cache, or a download of the release, tested against a local file:// mirror of a few real FSDD files; and the
conftest's rule that CI fails (instead of skipping) when the dataset is missing."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from specimg import datasets
from specimg.datasets import FSDD_URL, download_fsdd, fsdd_labels, fsdd_path
from specimg.exceptions import DataError

ROOT = Path(__file__).resolve().parents[1]
#: 12 recordings: 2 digits x 2 speakers x 3 takes.
NAMES = [f"{d}_{s}_{t}.wav" for d in (3, 7) for s in ("jackson", "theo") for t in (0, 1, 2)]


def test_the_release_url_is_pinned_in_one_place():
    assert FSDD_URL == "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
    assert datasets.FSDD_ARCHIVE_SHA256 is None or len(datasets.FSDD_ARCHIVE_SHA256) == 64


def test_labels_are_built_like_the_shared_copy(fsdd_dir):
    """The table a download writes is byte for byte the labels.csv of ../shared/datasets/fsdd."""
    buf = io.StringIO()
    fsdd_labels(fsdd_dir / "recordings").to_csv(buf, index=False)
    assert buf.getvalue() == (fsdd_dir / "labels.csv").read_text()


@pytest.fixture(scope="module")
def mirror(fsdd_dir, tmp_path_factory) -> Path:
    """A tar.gz laid out like GitHub's archive of the release, with 12 real recordings, a file outside
    recordings/ and a member trying to escape the extraction folder."""
    root = tmp_path_factory.mktemp("mirror")
    archive = root / "v1.0.10.tar.gz"
    top = "free-spoken-digit-dataset-1.0.10"
    with tarfile.open(archive, "w:gz") as tar:
        for name in NAMES:
            tar.add(fsdd_dir / "recordings" / name, arcname=f"{top}/recordings/{name}")
        tar.add(fsdd_dir / "recordings" / NAMES[0], arcname=f"{top}/utils/0_notes_0.wav")
        info = tarfile.TarInfo(f"{top}/recordings/../../../evil.wav")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
        readme = b"FSDD"
        info = tarfile.TarInfo(f"{top}/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return archive


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_from_a_file_mirror_builds_the_shared_layout(mirror, fsdd_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    got = fsdd_path(search=[], cache_dir=cache, url=mirror.as_uri(), known_hash=_sha256(mirror))
    assert got == cache / "fsdd-1.0.10"
    assert sorted(p.name for p in (got / "recordings").iterdir()) == sorted(NAMES)
    for name in NAMES:  # the audio, unchanged
        assert (got / "recordings" / name).read_bytes() == (fsdd_dir / "recordings" / name).read_bytes()
    shared = pd.read_csv(fsdd_dir / "labels.csv", dtype=str)
    expected = shared[shared["path"].isin([f"recordings/{n}" for n in NAMES])]
    assert (got / "labels.csv").read_text() == expected.to_csv(index=False)
    assert not (tmp_path / "evil.wav").exists() and not list(cache.glob(".*"))  # nothing escaped, no leftovers
    # once: the next call finds the cache and downloads nothing
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("downloaded twice"))
    assert fsdd_path(search=[], cache_dir=cache) == got


def test_a_wrong_hash_is_refused_and_leaves_nothing(mirror, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"could not be downloaded: downloading file://.* failed \(ValueError: .*hash"):
        fsdd_path(search=[], cache_dir=cache, url=mirror.as_uri(), known_hash="0" * 64)
    assert not cache.exists() or [p.name for p in cache.iterdir()] == ["fsdd-1.0.10.lock"]  # only the (free) lock


def test_without_a_hash_the_contents_are_checked(mirror, tmp_path, caplog):
    with pytest.raises(DataError, match="holds 12 recordings, not the release's 3000"):
        download_fsdd(tmp_path / "fsdd", url=mirror.as_uri())
    assert not (tmp_path / "fsdd").exists() and list(tmp_path.iterdir()) == []
    assert any(_sha256(mirror) in r.getMessage() for r in caplog.records)  # logged, so that it can be pinned


def test_search_order(fsdd_dir, mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("SPECIMG_FSDD", raising=False)
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("no download when a copy exists"))
    # 1. the folder given wins; a given folder that is not FSDD is an error, never a silent fall-back
    assert fsdd_path(fsdd_dir) == fsdd_dir
    with pytest.raises(DataError, match=r"FSDD is not at .*nowhere.*labels\.csv and a recordings/ folder"):
        fsdd_path(tmp_path / "nowhere", search=[fsdd_dir])
    monkeypatch.setenv("SPECIMG_FSDD", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="SPECIMG_FSDD"):
        fsdd_path(search=[fsdd_dir])
    monkeypatch.delenv("SPECIMG_FSDD")
    # 2. the shared copy, seen from the working folder (the docs' FSDD=../shared/datasets/fsdd)
    work = tmp_path / "a" / "work"
    (tmp_path / "a" / "shared" / "datasets").mkdir(parents=True)
    (tmp_path / "a" / "shared" / "datasets" / "fsdd").symlink_to(fsdd_dir)
    work.mkdir()
    monkeypatch.chdir(work)
    assert fsdd_path(cache_dir=tmp_path / "cache") == fsdd_dir.resolve()
    # 3. nowhere and no download: the message lists where it looked
    with pytest.raises(DataError, match=r"looked in .*cache.*fsdd-1\.0\.10\) and download=False"):
        fsdd_path(search=[tmp_path / "none"], cache_dir=tmp_path / "cache", download=False)


def test_fsdd_fixture(fsdd_dir):
    """The probe of the test below (and a real check of the fixture in the normal run)."""
    assert (fsdd_dir / "labels.csv").is_file() and len(list((fsdd_dir / "recordings").glob("*.wav"))) == 3000


@pytest.mark.parametrize("ci", [True, False])
def test_missing_fsdd_fails_ci_and_skips_elsewhere(ci, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env.update(SPECIMG_FSDD=str(tmp_path / "no_fsdd_here"), SPECIMG_CACHE=str(tmp_path / "cache"))
    if ci:
        env["CI"] = "true"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           f"{Path(__file__)}::test_fsdd_fixture"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "FSDD is not at" in out and "no_fsdd_here" in out, out
    if ci:
        assert proc.returncode != 0 and "CI=true and the FSDD tests need the dataset" in out, out
        assert "skipped" not in out
    else:
        assert proc.returncode == 0 and "1 skipped" in out, out


# ----------------------------------------------------------------------------- the checksum of the recordings
def test_the_shared_copy_is_the_release(fsdd_dir):
    """The digest the download checks is the one of ../shared/datasets/fsdd's 3,000 recordings."""
    assert datasets.recordings_digest(fsdd_dir / "recordings") == datasets.FSDD_RECORDINGS_SHA256


@pytest.fixture(scope="module")
def full_mirrors(fsdd_dir, tmp_path_factory) -> dict:
    """Two uncompressed archives of all 3,000 recordings, as GitHub lays them out: the release, and the release
    with one recording's bytes changed."""
    root = tmp_path_factory.mktemp("full_mirror")
    top = "free-spoken-digit-dataset-1.0.10"
    names = sorted(p.name for p in (fsdd_dir / "recordings").glob("*.wav"))
    out = {}
    for kind in ("release", "changed"):
        archive = root / f"{kind}.tar"
        with tarfile.open(archive, "w") as tar:
            for name in names:
                if kind == "changed" and name == "5_lucas_7.wav":
                    data = bytearray((fsdd_dir / "recordings" / name).read_bytes())
                    data[-1] ^= 1  # one sample's last bit
                    info = tarfile.TarInfo(f"{top}/recordings/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(bytes(data)))
                else:
                    tar.add(fsdd_dir / "recordings" / name, arcname=f"{top}/recordings/{name}")
        out[kind] = archive
    return out


def test_a_download_is_checked_against_the_recordings_digest(full_mirrors, fsdd_dir, tmp_path):
    got = download_fsdd(tmp_path / "ok" / "fsdd", url=full_mirrors["release"].as_uri())
    assert (got / "labels.csv").read_text() == (fsdd_dir / "labels.csv").read_text()
    with pytest.raises(DataError, match=r"recordings of the archive at .* differ from the release's"):
        download_fsdd(tmp_path / "bad" / "fsdd", url=full_mirrors["changed"].as_uri())
    assert list((tmp_path / "bad").iterdir()) == []  # nothing half-made is left


FETCH = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from specimg.datasets import fsdd_path
print(fsdd_path(search=[], cache_dir=sys.argv[1], url=sys.argv[2]))
"""


def test_processes_that_need_fsdd_at_once_download_it_once(full_mirrors, tmp_path):
    """make test's workers: one downloads (a lock beside the cache), the other waits and finds it."""
    cmd = [sys.executable, "-c", FETCH, str(tmp_path / "cache"), full_mirrors["release"].as_uri()]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o[0].strip() for o in outs} == {str(tmp_path / "cache" / "fsdd-1.0.10")}
    assert sum(o[1].count("Downloading FSDD") for o in outs) == 1, outs
