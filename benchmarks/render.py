"""Render throughput: specimg's cache vs the seed solution's per-window PNG loop.

Workload (issue "Foundation"): N long files of 120 s at 22.05 kHz made of real
FSDD speech (concatenated and resampled), 20 s windows at hop 10 s and 5 s,
512x512x3 images.

- baseline (seed-style, measured in the same run): every window is loaded on
  its own with ``librosa.load(offset=, duration=)``, turned into a mel
  spectrogram, scaled, resized and saved as a PNG, one process;
- specimg: ``render_dataset`` (one spectrogram per file, windows sliced,
  uint8 shards merged into a memmap) with ``--workers`` processes.

Both are timed from after ``import librosa`` (the baseline runs in this process,
where it is imported before its clock starts; specimg in a fresh subprocess that
imports it before its clock starts too); the first calls' warm-up counts for both.

Peak memory is read per run in a fresh subprocess (ru_maxrss of the process
and of its worker children) for 1/4 and all of the files, to show it does not
grow with the number of files. Also times the whole FSDD render at the demo
settings.

``--thread-ab`` instead times specimg's render workers with one BLAS/OpenMP thread each
(``specimg._parallel.single_threaded_worker``) against the libraries' default of a thread per
core in every worker, alternated in one run.

Run: ``.venv/bin/python benchmarks/render.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd"
SR = 22050


def make_long_files(folder: Path, n: int, seconds: float, seed: int = 0) -> Path:
    """N files of real speech: random FSDD recordings concatenated to ``seconds``, at 22.05 kHz."""
    import librosa
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(seed)
    table = pd.read_csv(FSDD / "labels.csv", dtype={"label": str})
    clips = [librosa.resample(sf.read(FSDD / p, dtype="float32")[0], orig_sr=8000, target_sr=SR)
             for p in table["path"].sample(300, random_state=seed)]
    rows = []
    for i in range(n):
        parts, total = [], 0
        while total < seconds * SR:
            c = clips[rng.integers(len(clips))]
            parts.append(c)
            total += len(c)
        y = np.concatenate(parts)[: int(seconds * SR)]
        name = f"long_{i:02d}.wav"
        sf.write(folder / name, y, SR)
        rows.append({"path": name, "label": f"c{i % 2}"})
    pd.DataFrame(rows).to_csv(folder / "files.csv", index=False)
    return folder / "files.csv"


def baseline(csv: Path, out: Path, hop: float, n_files: int) -> dict:
    """The seed's way: each window loaded, transformed and saved as a PNG on its own."""
    import librosa
    import pandas as pd
    from PIL import Image

    table = pd.read_csv(csv).iloc[:n_files]
    out.mkdir(parents=True, exist_ok=True)
    n_img, t0 = 0, time.perf_counter()
    for path in table["path"]:
        full = csv.parent / path
        duration = librosa.get_duration(path=str(full))
        start = 0.0
        while start + 20.0 <= duration + 1e-6:
            y, _ = librosa.load(str(full), sr=SR, offset=start, duration=20.0)
            S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
            db = librosa.power_to_db(S, ref=np.max, top_db=80.0)
            u8 = ((db + 80.0) / 80.0 * 255).astype(np.uint8)[::-1]
            img = Image.fromarray(u8).resize((512, 512), Image.BILINEAR).convert("RGB")
            img.save(out / f"{Path(path).stem}_{int(start):04d}.png")
            n_img += 1
            start += hop
    return {"images": n_img, "seconds": time.perf_counter() - t0}


CHILD = r"""
import json, resource, sys, time
from specimg.config import RenderConfig, SegmentConfig, AudioConfig, SpectrogramConfig
from specimg.spectrogram import render_dataset
import pandas as pd
csv, out, hop, n, workers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if sys.argv[6] == "default-threads":  # the A/B of --thread-ab: workers keep BLAS/OpenMP's thread per core
    import specimg.spectrogram._cache as _cache
    _cache.single_threaded_worker = lambda: None
table = pd.read_csv(csv, dtype=str).iloc[:n]
table["path"] = [str(__import__("pathlib").Path(csv).parent / p) for p in table["path"]]
cfg = RenderConfig(audio=AudioConfig(sample_rate=22050), segment=SegmentConfig(seconds=20.0, hop=hop),
                   spectrogram=SpectrogramConfig(image_size=(512, 512)))
import librosa  # noqa: F401  imported before the clock starts, as the baseline's is
t0 = time.perf_counter()
cache = render_dataset(table, out, cfg, workers=workers, progress=False)
dt = time.perf_counter() - t0
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"images": len(cache.images), "seconds": dt, "peak_rss_mb": rss / 1024,
                  "audio_seconds": float(cache.files["duration"].sum())}))
"""


def specimg_run(csv: Path, out: Path, hop: float, n: int, workers: int, threads: str = "one-thread") -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, str(csv), str(out), str(hop), str(n), str(workers), threads],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def fsdd_render(out: Path, workers: int) -> dict:
    code = r"""
import json, sys, time
from specimg.config import RenderConfig, SegmentConfig, AudioConfig, SpectrogramConfig
from specimg.spectrogram import render_dataset
cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
                   spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128)))
t0 = time.perf_counter()
c = render_dataset(sys.argv[1], sys.argv[2], cfg, workers=int(sys.argv[3]), progress=False)
print(json.dumps({"files": len(c.files), "images": len(c.images), "seconds": time.perf_counter() - t0}))
"""
    res = subprocess.run([sys.executable, "-c", code, str(FSDD / "labels.csv"), str(out), str(workers)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--baseline-files", type=int, default=3, help="files the (slow) baseline renders")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="specimg runs per setting; the median is quoted")
    ap.add_argument("--quick", action="store_true", help="4 files of 60 s, 1 repeat, no FSDD")
    ap.add_argument("--thread-ab", action="store_true",
                    help="only compare render workers with one BLAS/OpenMP thread each (specimg's) vs the libraries' "
                         "default thread per core, hop 10, alternated, medians of --repeats")
    args = ap.parse_args()
    seconds = 120.0
    if args.quick:
        args.files, args.baseline_files, args.repeats, seconds = 4, 1, 1, 60.0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = make_long_files(tmp, args.files, seconds)
        print(f"workload: {args.files} files x {seconds:.0f} s at {SR} Hz (real FSDD speech), 20 s windows, 512x512x3")
        if args.thread_ab:
            rates: dict = {"one-thread": [], "default-threads": []}
            for r in range(args.repeats):
                for k in (list(rates) if r % 2 == 0 else list(rates)[::-1]):
                    run = specimg_run(csv, tmp / f"ab_{k}_{r}", 10.0, args.files, args.workers, k)
                    rates[k].append(run["images"] / run["seconds"])
            one, dflt = (float(np.median(v)) for v in rates.values())
            print(f"hop 10, {args.workers} workers: one thread per worker {one:.1f} img/s vs default threads "
                  f"{dflt:.1f} img/s: ratio {one / dflt:.2f}x")
            return
        print(f"{'hop':>4} {'method':<28} {'images':>7} {'img/s':>8} {'audio s/s':>10} {'peak MB':>8}")
        for hop in (10.0, 5.0):
            b = baseline(csv, tmp / f"png_{hop}", hop, args.baseline_files)
            b_rate = b["images"] / b["seconds"]
            print(f"{hop:>4.0f} {'baseline (seed, 1 process)':<28} {b['images']:>7} {b_rate:>8.2f} "
                  f"{args.baseline_files * seconds / b['seconds']:>10.1f} {'':>8}")
            runs = [specimg_run(csv, tmp / f"cache_{hop}_{r}", hop, args.files, args.workers) for r in range(args.repeats)]
            rates = [r["images"] / r["seconds"] for r in runs]
            med = float(np.median(rates))
            audio_rate = float(np.median([r["audio_seconds"] / r["seconds"] for r in runs]))
            peak = max(r["peak_rss_mb"] for r in runs)
            print(f"{hop:>4.0f} {f'specimg ({args.workers} workers)':<28} {runs[0]['images']:>7} {med:>8.2f} "
                  f"{audio_rate:>10.1f} {peak:>8.0f}   ratio {med / b_rate:.1f}x baseline "
                  f"(runs: {', '.join(f'{x:.1f}' for x in rates)} img/s)")
        quarter = max(1, args.files // 4)
        small = specimg_run(csv, tmp / "mem_small", 5.0, quarter, args.workers)
        large = specimg_run(csv, tmp / "mem_large", 5.0, args.files, args.workers)
        print(f"peak RSS, hop 5: {quarter} files {small['peak_rss_mb']:.0f} MB ({small['images']} images) vs "
              f"{args.files} files {large['peak_rss_mb']:.0f} MB ({large['images']} images): "
              f"ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
        if not args.quick and (FSDD / "labels.csv").exists():
            f = fsdd_render(tmp / "fsdd", args.workers)
            print(f"whole FSDD ({f['files']} files -> {f['images']} images of 128x128x3, 1 s windows, hop 0.5 s, "
                  f"{args.workers} workers): {f['seconds']:.1f} s")


if __name__ == "__main__":
    main()
