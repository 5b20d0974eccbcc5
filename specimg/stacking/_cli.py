"""``specimg stack`` and ``specimg pseudo-label`` (thin layers over :mod:`specimg.experiment`)."""

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


def _cmd_stack(args: argparse.Namespace) -> int:
    from ..experiment import stack_runs

    weights = _weights(args.weights)
    if weights is not None and args.method != "blend":
        raise ParameterError(f"--weights applies to --method blend only (got --method {args.method}); the other "
                             "methods learn their own combination.")
    names = args.names.split(",") if args.names else None
    res = stack_runs(args.runs, method=args.method, names=names, test=args.test, weights=weights,
                     inner_folds=args.folds, seed=args.seed)
    out = res.write(args.out)
    m = res.metrics
    width = max(len(n) for n in [*m["models"], "mean of models", args.method])
    print(f"{m['n_files']} out-of-fold files, {len(m['models'])} models, inner folds: "
          f"{m['inner_folds'] if m['inner_folds'] else 'none (nothing is fitted)'}")
    for name, s in m["models"].items():
        print(f"  {name:<{width}}  {_fmt(s)}")
    print(f"  {'mean of models':<{width}}  {_fmt(m['mean'])}")
    print(f"  {args.method:<{width}}  {_fmt(m['stack'])}")
    if "weights" in m:
        print("  weights: " + ", ".join(f"{n} {w:.3f}" for n, w in m["weights"].items()))
    if "test" in m:
        print(f"  test set ({m['test']['n_files']} files): {args.method} {_fmt(m['test']['stack'])}; "
              f"mean of models {_fmt(m['test']['mean'])}")
    print(f"wrote {out / 'oof_files.csv'}, {out / 'metrics.json'}"
          + (f", {out / 'test_files.csv'}" if res.test is not None else ""))
    return 0


def _cmd_pseudo(args: argparse.Namespace) -> int:
    from ..experiment import pseudo_label_table
    from ..experiment._steps import atomic_csv

    out = Path(args.out)
    table = pseudo_label_table(args.predictions, args.train, out=out, test_input=args.test_input,
                               threshold=args.threshold, max_per_class=args.max_per_class)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_csv(table, out)
    pseudo = table[table["pseudo"]]
    counts = pseudo["label"].value_counts()
    print(f"{len(pseudo)} test file(s) reach confidence >= {args.threshold}"
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
        description="Align the out-of-fold predictions of RUN... (run folders or oof_files.csv), fit the stacker "
                    "with an inner cross-validation grouped by the runs' fold column (so the stacked out-of-fold "
                    "predictions are honest) and write DIR/oof_files.csv and DIR/metrics.json (accuracy and UAR "
                    "of every run, of their mean and of the stack). With --test (one test prediction CSV per RUN, "
                    "same order) the stacker is fitted on all out-of-fold predictions and DIR/test_files.csv is "
                    "written.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or out-of-fold prediction CSVs")
    p.add_argument("--method", required=True, choices=("cnn", "cnn-skip", "lgbm", "blend", "mean"),
                   help="CNN stacker (with residual connections: cnn-skip), LightGBM, weighted blend (fixed "
                        "--weights or fitted), or the plain mean")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--test", nargs="+", metavar="PRED.csv", help="test predictions, one per RUN in the same order")
    p.add_argument("--weights", metavar="W1,W2,...", help="blend weights, one per RUN (default: fitted)")
    p.add_argument("--folds", type=int, metavar="K", help="inner cross-validation folds (default: the runs' folds)")
    p.add_argument("--names", metavar="A,B,...", help="names of the runs in the metrics (default: folder names)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_stack)

    q = subparsers.add_parser(
        "pseudo-label", help="add confident test predictions to a training table as pseudo-labels",
        description="Write NEW.csv: the training files (pseudo=False) plus the test files whose top probability "
                    "reaches --threshold, labelled with their prediction (pseudo=True). Paths are written relative "
                    "to NEW.csv's folder, so `specimg train NEW.csv` works from anywhere. Training never puts a "
                    "pseudo-labelled file in a validation fold.")
    q.add_argument("predictions", metavar="TEST_PRED.csv", help="test predictions (specimg predict / stack --test)")
    q.add_argument("--train", required=True, metavar="INPUT", help="the labelled training CSV or class-folder tree")
    q.add_argument("--out", required=True, metavar="NEW.csv", help="the new training table")
    q.add_argument("--test-input", metavar="INPUT",
                   help="the test CSV/folder that was predicted (default: paths relative to TEST_PRED.csv)")
    q.add_argument("--threshold", type=float, default=0.85, help="minimum top probability (default 0.85)")
    q.add_argument("--max-per-class", type=int, metavar="N", help="at most N pseudo-labels per class")
    q.set_defaults(func=_cmd_pseudo)
