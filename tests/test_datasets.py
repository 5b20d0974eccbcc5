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
    assert not cache.exists() or list(cache.iterdir()) == []


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
