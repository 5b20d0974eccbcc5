"""Linear probes against fine-tuning on FSDD, leave one speaker out: accuracy and seconds of each, one run.

Three rows, on the same six folds (one held-out speaker each) of FSDD's 3,000 files, 64x64 mel images
(:func:`specimg.presets.fsdd_render_config`):

- ``probe, ImageNet features``: ``tf_efficientnet_lite0`` with its offline ImageNet weights embeds every
  file (:func:`specimg.predict.embed`: the pooled penultimate features, 1,280 per window, averaged per
  file), then :func:`specimg.predict.probe` fits a logistic regression per fold;
- ``fine-tuning``: :func:`specimg.train_cv` with :func:`specimg.presets.fsdd_train_config` (8 epochs,
  each fold's last epoch kept: no held-out speaker chooses anything); its seconds include rendering;
- ``probe, fine-tuned features``: each fold model of that run embeds every file, and fold k's probe is
  fitted and scored on fold k's model's features (a model that never saw speaker k);
- and the run's own anchor (MFCC statistics + LightGBM on the same folds), as ``specimg train`` prints it.

Seconds are wall seconds on this machine (embedding includes rendering the images). Run:

    .venv/bin/python benchmarks/probe.py --out bench_out/probe [--epochs 8] [--quick]

(``--quick``: 120 files, 1 epoch, a smoke run). Re-running reuses the finished run and embeddings; delete
``--out`` to measure again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from specimg.datasets import fsdd_path
from specimg.predict import embed, probe
from specimg.presets import fsdd_render_config, fsdd_train_config
from specimg.training import train_cv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/probe")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="120 files, 1 epoch")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(fsdd_path() / "labels.csv", dtype=str)
    table["path"] = [str(fsdd_path() / p) for p in table["path"]]
    if args.quick:
        table = table.groupby(["speaker", "label"]).head(2)
        args.epochs = 1
    csv = out / "files.csv"
    table.to_csv(csv, index=False)
    render = fsdd_render_config()
    rows = []

    t0 = time.perf_counter()
    emb = embed(csv, "tf_efficientnet_lite0", weights="offline", render_config=render, out=out / "imagenet.parquet",
                workers=args.workers, progress=False)
    t_embed = time.perf_counter() - t0
    m = probe(emb, n_splits=6, group_column="speaker", groups=table)
    rows.append(("probe, ImageNet features", m, t_embed + m["seconds"]))

    config = fsdd_train_config(epochs=args.epochs, select_epoch="last")
    t0 = time.perf_counter()
    result = train_cv(csv, out / "run", config, render_config=render, verbose=False)
    t_train = time.perf_counter() - t0
    rows.append(("fine-tuning (last epoch)", {"mean": result.metrics["mean"], "std": result.metrics["std"]}, t_train))

    t0 = time.perf_counter()
    emb = embed(csv, out / "run", out=out / "finetuned.parquet", workers=args.workers, progress=False)
    t_embed = time.perf_counter() - t0
    m = probe(emb, run=out / "run")
    rows.append(("probe, fine-tuned features", m, t_embed + m["seconds"]))
    anchor = result.metrics.get("anchor")
    if anchor:  # its seconds live in the run's anchor.json (metrics.json stays a function of the inputs)
        seconds = json.loads((out / "run" / "anchor.json").read_text())["seconds"]
        rows.append(("anchor (MFCC + LightGBM)", anchor, seconds))

    lines = [f"FSDD, {len(table)} files, leave one speaker out (6 folds), 64x64 mel images, "
             f"{args.epochs} epoch(s) of fine-tuning; {os.cpu_count()} CPU(s). Accuracy and UAR: mean +- std over "
             "the six held-out speakers. Seconds: wall, this run (the fine-tuned probe's exclude the training).",
             "", "| side | accuracy | UAR | seconds |", "| --- | --- | --- | --- |"]
    for name, m, secs in rows:
        lines.append(f"| {name} | {m['mean']['accuracy']:.3f} +- {m['std']['accuracy']:.3f} | "
                     f"{m['mean']['uar']:.3f} +- {m['std']['uar']:.3f} | {secs:.0f} |")
    text = "\n".join(lines)
    print(text)
    (out / "probe_table.md").write_text(text + "\n")
    (out / "probe.json").write_text(json.dumps({name: {"mean": m["mean"], "std": m["std"], "seconds": secs}
                                                for name, m, secs in rows}, indent=2))


if __name__ == "__main__":
    main()
