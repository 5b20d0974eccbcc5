"""The worker pools: one item whose process dies (SIGKILL, as the out-of-memory killer sends) costs that item only."""

from __future__ import annotations

import os
import signal

from specimg._parallel import WORKER_DIED, pool_map


def _job(i: int, kill: int) -> str:
    if i == kill:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"ok {i}"


def test_pool_map_isolates_a_dead_worker_and_keeps_order():
    out = list(pool_map(_job, [(i, 3) for i in range(9)], workers=2))
    assert [i for i, _ in out] == list(range(9))
    assert [r for _, r in out] == [f"ok {i}" if i != 3 else WORKER_DIED for i in range(9)]


def test_pool_map_without_deaths_is_a_plain_ordered_map():
    assert list(pool_map(_job, [(i, -1) for i in range(5)], workers=2)) == [(i, f"ok {i}") for i in range(5)]
    assert list(pool_map(_job, [(i, -1) for i in range(3)], workers=1)) == [(i, f"ok {i}") for i in range(3)]


def test_render_pool_names_the_file_whose_worker_died(fsdd_subset_csv, small_config, tmp_path, monkeypatch):
    """A render worker killed while it holds a file: that file goes to errors.csv, the rest are rendered."""
    import pandas as pd

    from specimg.spectrogram import _render as _cache, render_dataset

    table = pd.read_csv(fsdd_subset_csv).iloc[:8]
    victim = table["path"].iloc[2]
    original = _cache._load

    def load(abspath, config):  # runs in the forked render workers
        if abspath == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(abspath, config)

    monkeypatch.setattr(_cache, "_load", load)
    cache = render_dataset(table, tmp_path / "cache", small_config, workers=2, progress=False)
    assert cache.errors["path"].tolist() == [victim]
    assert "worker process preparing it died" in cache.errors["error"].iat[0]
    assert sorted(cache.files["path"]) == sorted(p for p in table["path"] if p != victim)
    assert (tmp_path / "cache" / "errors.csv").is_file()
