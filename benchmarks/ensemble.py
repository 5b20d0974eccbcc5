"""Benchmark: do the stackers, the blends and ``--method auto`` beat the single models and their plain mean?

Four genuinely different real models are cross-validated on the Free Spoken Digit Dataset with the library's own
cross-validation (:func:`specimg.train_cv`), leave-one-speaker-out (6 speakers, 6 folds: no voice is both trained on
and validated), all on the same folds, with the FSDD presets (:mod:`specimg.presets`; offline ImageNet weights):

- ``lite0_mel48``: ``tf_efficientnet_lite0`` on 48x48 images of 64-band mel spectrograms;
- ``lite0_mfcc48``: the same backbone on 48x48 images of 30 MFCCs;
- ``lite1_mel40``: ``tf_efficientnet_lite1`` (another backbone) on 40x40 mel images;
- ``lite0_mel32``: ``tf_efficientnet_lite0`` on 32x32 mel images (another image size).

CPU-sized: takes 0-24 of every digit and speaker (1,500 files; ``--takes 50`` for all 3,000), 6 epochs per fold.

Their out-of-fold predictions are then stacked with :func:`specimg.stacking.compare_stackers`: every candidate
(each model alone, the mean, the fitted blend, the CNN stackers, LightGBM, the seed's 0.45/0.45/0.1 blend and
``auto``) is scored on the same outer folds (the speakers), ``auto`` choosing per fold by an inner cross-validation
on the other speakers only. The table gives the pooled accuracy/UAR/log-loss, the accuracy on each held-out
speaker, and a paired comparison against the mean and the best single model (per-speaker differences with a
Wilcoxon signed-rank test and a sign test; per-file discordant pairs with an exact McNemar test).

    nice -n 10 .venv/bin/python benchmarks/ensemble.py --runs-dir /work/bench_out/ensemble_runs \\
        --out /work/bench_out/ensemble > /work/bench_out/ensemble.log 2>&1 &
    # on two cores, two training processes (one thread each), then the stacking (trains nothing more):
    B="nice -n 10 .venv/bin/python benchmarks/ensemble.py --runs-dir /work/bench_out/ensemble_runs"
    $B --train-only --only lite0_mel48,lite1_mel40 & $B --train-only --only lite0_mfcc48,lite0_mel32 & wait
    $B --out /work/bench_out/ensemble --stack-only
    .venv/bin/python benchmarks/ensemble.py --quick      # smoke run: 300 files, 3 speakers, 3 epochs (minutes)

Measured (the two-process form above, on the shared 2-core machine under a load of 5-9): training 66 min wall
(3,991 s), stacking 96 s. Out-of-fold accuracy on the six speakers: the models 0.549 / 0.241 / 0.539 / 0.220, their
mean 0.575, ``auto`` 0.575 (the mean, chosen on every speaker), the fitted blend 0.547, cnn 0.522, cnn-skip 0.527,
lgbm 0.512, the seed's blend 0.530 (the table and why: docs/stacking.md).

Trained runs are kept in ``--runs-dir``: a second call with the same options trains nothing (``train_cv``
resumes and skips finished folds) and only stacks again. Outputs in ``--out``: ``ensemble_table.md`` /
``ensemble_table.csv`` (the table), ``per_fold.csv``, ``comparison.json`` and ``model_weights.png`` (the CNN
stacker's per-class model weights, averaged over the fold stackers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "datasets" / "fsdd"

#: The base models: name -> (backbone, image size, spectrogram overrides).
MODELS: Dict[str, Any] = {
    "lite0_mel48": ("tf_efficientnet_lite0", 48, {}),
    "lite0_mfcc48": ("tf_efficientnet_lite0", 48, {"feature": "mfcc", "n_mfcc": 30}),
    "lite1_mel40": ("tf_efficientnet_lite1", 40, {}),
    "lite0_mel32": ("tf_efficientnet_lite0", 32, {}),
}
QUICK_SPEAKERS = ("george", "jackson", "lucas")


def fsdd_table(fsdd: Path, *, quick: bool, takes: int) -> pd.DataFrame:
    """The FSDD files to use (absolute paths): takes 0..takes-1 of every digit and speaker; quick: 0-9 of three."""
    df = pd.read_csv(fsdd / "labels.csv", dtype={"label": str})
    take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    df = df[(take < 10) & df["speaker"].isin(QUICK_SPEAKERS)] if quick else df[take < takes]
    df = df.assign(path=[str((fsdd / p).resolve()) for p in df["path"]])
    return df[["path", "label", "speaker"]].reset_index(drop=True)


def train_models(table: pd.DataFrame, runs_dir: Path, *, quick: bool, epochs: int, workers: int,
                 only: Sequence[str] = (), select_epoch: str = "best") -> List[Path]:
    """Render each distinct image config once and cross-validate every model (resumes; finished runs are kept)."""
    from specimg.presets import fsdd_render_config, fsdd_train_config
    from specimg.spectrogram import render_dataset
    from specimg.training import train_cv

    n_splits = table["speaker"].nunique()
    runs = []
    for name, (backbone, size, spec) in MODELS.items():
        if only and name not in only:
            continue
        size = {48: 40, 40: 32, 32: 32}[size] if quick else size
        rcfg = fsdd_render_config(size)
        rcfg = rcfg.replace(spectrogram=rcfg.spectrogram.replace(**spec))
        cache_dir = runs_dir / "caches" / rcfg.hash()
        cache = render_dataset(table, cache_dir, rcfg, workers=workers, progress=False)
        cfg = fsdd_train_config(backbone=backbone, epochs=epochs, n_splits=n_splits, device="cpu",
                                select_epoch=select_epoch)
        t0 = time.perf_counter()
        res = train_cv(cache, runs_dir / name, cfg, verbose=False)
        print(f"{name}: {backbone}, {size}x{size} {spec.get('feature', 'mel')}, {epochs} epoch(s): out-of-fold "
              f"accuracy {res.metrics['oof']['accuracy']:.4f} ({time.perf_counter() - t0:.0f} s this call)",
              flush=True)
        runs.append(runs_dir / name)
    return runs


def markdown(table: pd.DataFrame, digits: int = 4) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def stack(runs: List[Path], table: pd.DataFrame, out: Path, *, seed: int = 0) -> Dict[str, Any]:
    """Every candidate on the same speaker folds, the paired comparisons, the files of the report."""
    from specimg.stacking import align_runs, compare_stackers, plot_model_weights

    paths, X, y, classes, folds = align_runs(runs)
    speaker_of = dict(zip(table["path"], table["speaker"]))
    fold_speaker = {str(f): speaker_of[p] for p, f in zip(paths, folds)}
    t0 = time.perf_counter()
    cmp = compare_stackers(X, y, folds, classes=classes, names=[r.name for r in runs], seed=seed)
    seconds = time.perf_counter() - t0
    summary = cmp.table().rename(columns={f"fold {f}": fold_speaker[f] for f in cmp.fold_labels})
    models = [c for c in cmp.candidates if cmp.kinds[c] == "model"]
    pooled = summary.set_index("candidate")["accuracy"]
    best_model = str(pooled[models].idxmax())
    paired = {base: cmp.paired(base).set_index("candidate") for base in ("mean", best_model)}
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "ensemble_table.csv", index=False)
    cmp.scores.assign(speaker=cmp.scores["fold"].map(fold_speaker).fillna("all")).to_csv(out / "per_fold.csv",
                                                                                        index=False)
    cmp.choices.assign(speaker=cmp.choices["fold"].map(fold_speaker)).to_csv(out / "auto_choices.csv", index=False)
    plot_model_weights(cmp.model_weights["cnn"], models, classes, path=out / "model_weights.png",
                       title=f"CNN stacker: per-class model weights (mean of the {len(cmp.fold_labels)} fold stackers)")
    comparison = {base: p.reset_index().to_dict(orient="records") for base, p in paired.items()}
    (out / "comparison.json").write_text(json.dumps({"best_model": best_model, "stack_seconds": seconds,
                                                     "paired": comparison}, indent=2) + "\n")
    return {"cmp": cmp, "summary": summary, "paired": paired, "best_model": best_model, "seconds": seconds,
            "fold_speaker": fold_speaker}


def report(res: Dict[str, Any], *, n_files: int, epochs: int, quick: bool, select_epoch: str = "best") -> str:
    """The table, the paired comparison and the verdict, as markdown."""
    cmp, summary, best_model = res["cmp"], res["summary"], res["best_model"]
    pooled = summary.set_index("candidate")
    lines = [f"FSDD, {n_files} files, leave-one-speaker-out ({len(cmp.fold_labels)} folds"
             f"{', quick' if quick else ''}); base models trained {epochs} epoch(s) per fold with specimg.train_cv, "
             f"each fold keeping its {select_epoch} epoch (select_epoch={select_epoch!r}); "
             f"every candidate scored on the same outer folds (stackers fitted on the other speakers; auto chosen per "
             f"fold by inner CV on the other speakers only). Stacking took {res['seconds']:.0f} s.", "",
             markdown(summary), "", "auto's choice per held-out speaker:", ""]
    for _, r in cmp.choices.iterrows():
        lines.append(f"- {res['fold_speaker'][r['fold']]}: {r['reason']}")
    for base, p in res["paired"].items():
        lines += ["", f"Paired against {base} (per speaker: mean difference of accuracy, wins/losses, sign test, "
                      "Wilcoxon signed-rank; per file: files only one gets right, exact McNemar):", "",
                  markdown(p.reset_index()[["candidate", "mean_diff", "wins", "losses", "sign_p", "wilcoxon_p",
                                            "files_better", "files_worse", "mcnemar_p"]])]
    lines.append("")
    for name in ("auto", "cnn", "cnn-skip", "lgbm", "seed-blend", "blend"):
        acc = pooled.loc[name, "accuracy"]
        d_mean, d_best = acc - pooled.loc["mean", "accuracy"], acc - pooled.loc[best_model, "accuracy"]
        lines.append(f"- {name}: {acc:.4f} = mean {d_mean:+.4f}, best single model ({best_model}) {d_best:+.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 300 files of 3 speakers, 3 epochs, 40/32 px")
    p.add_argument("--runs-dir", type=Path, help="where the trained runs are kept (default OUT/runs)")
    p.add_argument("--out", type=Path, help="output folder (default bench_out/ensemble[_quick])")
    p.add_argument("--fsdd", type=Path, default=FSDD, help=f"FSDD folder (default {FSDD})")
    p.add_argument("--epochs", type=int, help="epochs per fold (default 6; quick 3)")
    p.add_argument("--takes", type=int, default=25, help="takes per digit and speaker (default 25 of 50)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: tiny images, busy cores)")
    p.add_argument("--workers", type=int, default=1, help="render processes")
    p.add_argument("--select-epoch", choices=("best", "last", "inner"), default="best",
                   help="the epoch each fold keeps, whose out-of-fold predictions the stackers learn from "
                        "(TrainConfig.select_epoch; default best: chosen on the held-out speaker, optimistic)")
    p.add_argument("--train-only", action="store_true", help="train (or resume) the runs and stop")
    p.add_argument("--stack-only", action="store_true",
                   help="stack the runs already in --runs-dir without calling train_cv (a library whose config "
                        "fields changed since the runs were trained would otherwise refuse to resume them)")
    p.add_argument("--only", metavar="NAME,...", help=f"train only these models (of {', '.join(MODELS)}); with "
                   "--train-only, several processes can share the training (each its own models)")
    args = p.parse_args(argv)
    if not (args.fsdd / "labels.csv").is_file():
        p.error(f"FSDD not found at {args.fsdd} (expected labels.csv there); pass --fsdd.")
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or REPO / "bench_out" / ("ensemble_quick" if args.quick else "ensemble")
    runs_dir = args.runs_dir or out / "runs"
    epochs = args.epochs or (3 if args.quick else 6)
    t0 = time.perf_counter()
    table = fsdd_table(args.fsdd, quick=args.quick, takes=args.takes)
    only = args.only.split(",") if args.only else ()
    unknown = sorted(set(only) - set(MODELS))
    if unknown:
        p.error(f"--only names unknown models {unknown}; the models are {', '.join(MODELS)}.")
    if args.stack_only:
        runs = [runs_dir / name for name in MODELS]
    else:
        runs = train_models(table, runs_dir, quick=args.quick, epochs=epochs, workers=args.workers, only=only,
                            select_epoch=args.select_epoch)
        print(f"training: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.train_only:
        return 0
    if only:
        p.error("--only trains some models; stack them all with a call without --only (it trains nothing new)")
    res = stack(runs, table, out)
    text = report(res, n_files=len(table), epochs=epochs, quick=args.quick, select_epoch=args.select_epoch)
    (out / "ensemble_table.md").write_text(text + "\n")
    print(text)
    print(f"wrote {out}/ensemble_table.md, ensemble_table.csv, per_fold.csv, auto_choices.csv, comparison.json, "
          f"model_weights.png ({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
