"""``specimg stack`` and ``specimg pseudo-label`` (thin layers over :func:`stack_runs` and :func:`pseudo_label_table`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional

from ..exceptions import ParameterError

__all__ = ["add_stack_parsers"]


def _weights(text: Optional[str]) -> Optional[List[float]]:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ParameterError(f"--weights {text!r} must be numbers separated by commas, one per RUN, e.g. "
                             "--weights 0.45,0.45,0.1.") from None


def _fmt(scores: dict) -> str:
    return f"accuracy {scores['accuracy']:.4f}  UAR {scores['uar']:.4f}"


def _print_candidates(m: dict, method: str) -> None:
    """The table of every candidate: pooled scores, then the accuracy on each outer fold."""
    cands = m["candidates"]
    folds = list(next(iter(cands.values()))["folds"])
    width = max(len(c) for c in cands) + 2
    head = f"  {'candidate':<{width}} {'accuracy':>8} {'UAR':>7} {'log-loss':>8}  " + " ".join(
        f"{'fold ' + f:>8}" for f in folds)
    print(head)
    for name, c in cands.items():
        mark = "*" if name == method else " "
        print(f"{mark} {name:<{width}} {c['accuracy']:>8.4f} {c['uar']:>7.4f} {c['log_loss']:>8.4f}  "
              + " ".join(f"{c['folds'][f]['accuracy']:>8.4f}" for f in folds))


def _cmd_stack(args: argparse.Namespace) -> int:
    from . import stack_runs

    weights = _weights(args.weights)
    if weights is not None and args.method != "blend":
        raise ParameterError(f"--weights applies to --method blend only (got --method {args.method}); the other "
                             "methods learn their own combination.")
    names = args.names.split(",") if args.names else None
    res = stack_runs(args.runs, method=args.method, names=names, test=args.test, weights=weights,
                     inner_folds=args.folds, seed=args.seed, compare=not args.no_compare, metric=args.metric)
    out = res.write(args.out)
    m = res.metrics
    if m.get("task") == "multi-label":
        from ._classwise import summary_lines

        print("\n".join(summary_lines(m, out)))
        return 0
    print(f"{m['n_files']} out-of-fold files, {len(m['models'])} models, {m['outer_folds']} outer folds; every "
          "candidate scored on the same folds (* = --method " + args.method + ")")
    _print_candidates(m, args.method)
    if "selection" in m:
        print(m["selection"]["summary"] + ":")
        for row in m["selection"]["folds"]:
            print(f"  fold {row['fold']}: {row['reason']}")
    if "weights" in m:
        print("  weights: " + ", ".join(f"{n} {w:.3f}" for n, w in m["weights"].items()))
    if "test" in m:
        print(f"  test set ({m['test']['n_files']} files, mean of the fold stackers): {args.method} "
              f"{_fmt(m['test']['stack'])}; mean of models {_fmt(m['test']['mean'])}")
    written = ["oof_files.csv", "metrics.json", "candidates.csv"] + (["test_files.csv"] if res.test is not None else [])
    written += ["model_weights.png"] if (out / "model_weights.png").is_file() else []
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


def _cmd_pseudo(args: argparse.Namespace) -> int:
    from .._io import atomic_write_csv
    from . import pseudo_label_table

    out = Path(args.out)
    table = pseudo_label_table(args.predictions, args.train, out=out, test_input=args.test_input,
                               threshold=args.threshold, inclusive=args.inclusive, max_per_class=args.max_per_class)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(table, out)
    pseudo = table[table["pseudo"]]
    counts = pseudo["label"].value_counts()
    print(f"{len(pseudo)} test file(s) have confidence {'>=' if args.inclusive else '>'} {args.threshold}"
          + (f" (at most {args.max_per_class} per class)" if args.max_per_class else "")
          + f"; wrote {out} ({int((~table['pseudo']).sum())} training + {len(pseudo)} pseudo-labelled rows)")
    if len(counts):
        print("pseudo-labels per class: " + ", ".join(f"{c} {int(n)}" for c, n in counts.items()))
    else:
        print("no test file is confident enough: lower --threshold to pseudo-label some.", file=sys.stderr)
    return 0


def add_stack_parsers(subparsers: Any) -> None:
    """Add the ``stack`` and ``pseudo-label`` subcommands to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "stack", help="stack or blend several runs' out-of-fold predictions",
        description="Align the out-of-fold predictions of RUN... (run folders or oof_files.csv) and score every "
                    "candidate on the runs' own folds: each run alone, their mean, the fitted blend, the CNN "
                    "stackers, LightGBM and the seed's blend (0.45 cnn + 0.45 cnn-skip + 0.1 lgbm); on each fold "
                    "the stackers are fitted on the other folds, so every score is honest. --method auto chooses, "
                    "per fold, by an inner cross-validation on the other folds only, and says what it picked and "
                    "why. Writes DIR/oof_files.csv (the method's out-of-fold predictions), DIR/metrics.json, "
                    "DIR/candidates.csv (every candidate on every fold) and DIR/model_weights.png (the per-class "
                    "model weights). With --test (one test prediction CSV per RUN, same order) every fold's "
                    "stacker predicts the test set, the fold predictions are averaged into DIR/test_files.csv.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or out-of-fold prediction CSVs")
    p.add_argument("--method", default="auto",
                   choices=("auto", "cnn", "cnn-skip", "lgbm", "blend", "mean", "seed-blend"),
                   help="what DIR/oof_files.csv and test_files.csv hold: auto (default: chosen per fold by inner "
                        "cross-validation), the CNN stacker (with residual connections: cnn-skip), LightGBM, the "
                        "weighted blend (fixed --weights or fitted), the plain mean, or the seed's blend")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--test", nargs="+", metavar="PRED.csv", help="test predictions, one per RUN in the same order")
    p.add_argument("--weights", metavar="W1,W2,...", help="blend weights, one per RUN (default: fitted)")
    p.add_argument("--folds", type=int, metavar="K", help="inner cross-validation folds (default: the runs' folds)")
    p.add_argument("--names", metavar="A,B,...", help="names of the runs in the metrics (default: folder names)")
    p.add_argument("--metric", default=None, choices=("accuracy", "uar", "log_loss", "macro_ap", "macro_roc_auc"),
                   help="what --method auto chooses by (default: accuracy; multi-label runs: their task's metric, "
                        "macro_ap)")
    p.add_argument("--no-compare", action="store_true",
                   help="score only the runs, their mean and --method (faster; auto still compares all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_stack)

    q = subparsers.add_parser(
        "pseudo-label", help="add confident test predictions to a training table as pseudo-labels",
        description="Write NEW.csv: the training files (pseudo=False) plus the test files whose top probability "
                    "is above --threshold (strictly; --inclusive: at least), labelled with their prediction (pseudo=True). Paths are written relative "
                    "to NEW.csv's folder, so `specimg train NEW.csv` works from anywhere. Training never puts a "
                    "pseudo-labelled file in a validation fold.")
    q.add_argument("predictions", metavar="TEST_PRED.csv", help="test predictions (specimg predict / stack --test)")
    q.add_argument("--train", required=True, metavar="INPUT", help="the labelled training CSV or class-folder tree")
    q.add_argument("--out", required=True, metavar="NEW.csv", help="the new training table")
    q.add_argument("--test-input", metavar="INPUT",
                   help="the test CSV/folder that was predicted (default: paths relative to TEST_PRED.csv)")
    q.add_argument("--threshold", type=float, default=0.85,
                   help="keep test files whose top probability is above this (default 0.85)")
    q.add_argument("--inclusive", action="store_true", help="keep a top probability equal to --threshold too (>=)")
    q.add_argument("--max-per-class", type=int, metavar="N", help="at most N pseudo-labels per class")
    q.set_defaults(func=_cmd_pseudo)
