"""``specimg predict``, ``specimg evaluate``, ``specimg export``, ``specimg embed`` and ``specimg probe``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._cli_common import add_table_options

__all__ = ["add_predict_parsers"]


def _folds(text: str):
    from ..exceptions import ParameterError

    if text == "all":
        return "all"
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ParameterError(f"--folds {text!r} must be 'all' or fold indices separated by commas, e.g. 0,2.") \
            from None


def _write_detections(pred, result, out: Path, threshold) -> str:
    """Write the detection table and its Raven selection table of a prediction; returns the line to print."""
    from ..exceptions import ParameterError
    from ._detect import write_detections

    if pred.task.activation != "sigmoid":
        raise ParameterError(f"--detections needs a run that scores each class on its own (a multi-label run, trained "
                             f"on tags or annotated recordings): this {pred.task.kind} run gives one class per file, "
                             "not events.")
    thresholds = threshold if threshold is not None else pred.decision
    written = write_detections(result.segments, pred.classes, thresholds, out,
                               high_freq=pred.render_config.audio.sample_rate / 2)
    return f"{written['n']} detection(s) -> {written['detections']} (Raven: {written['raven']})"


def _cmd_predict(args: argparse.Namespace) -> int:
    from ._predictor import Predictor

    from .._cli_common import input_table

    pred = Predictor.from_run(args.run, folds=_folds(args.folds), device=args.device, tta=args.tta,
                              aggregate=args.aggregate, batch_size=args.batch_size, images=args.images)
    out = Path(args.out)
    res = pred.predict(input_table(args, args.input), segments=args.segments or args.detections,
                       workers=args.workers, progress=not args.quiet, strict=args.strict, out=out,
                       part_files=args.part_files)
    if args.detections:
        print(_write_detections(pred, res, out, args.detection_threshold))
    msg = (f"predicted {len(res.files)} file(s) with {len(pred.models)} fold model(s), tta={args.tta}, "
           f"images={pred.images} on {pred.device} -> {out}")
    if "label" in res.files.columns and res.files["label"].notna().all():
        acc = float((res.files["label"].astype(str) == res.files["prediction"]).mean())
        msg += f"; accuracy {acc:.4f}"
        unknown = sorted(set(res.files["label"].astype(str)) - set(pred.classes))
        if unknown:
            print(f"specimg predict: label(s) {unknown} in {args.input} are not classes of the run (it knows "
                  f"{', '.join(pred.classes)}); those files count as wrong in the accuracy.", file=sys.stderr)
    if len(res.errors):
        msg += f"; {len(res.errors)} file(s) failed (see {out.with_name(out.stem + '_errors.csv')})"
    print(msg)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..tasks import Task
    from ..training import Run
    from ._detect import detection_line
    from ._evaluate import evaluate_predictions, run_images
    from .._cli_common import input_table

    labels = input_table(args, args.labels) if args.labels else None
    task, decision = (None if args.task == "auto" else args.task), None
    if args.run:  # the run's task and decision rule (a multi-label run's thresholds)
        run = Run.open(args.run, need_models=False)
        if run.has_config() and task is None:
            task, decision = run.task, run.thresholds
    images = run_images(args.run, labels=args.labels) if args.run else None
    m = evaluate_predictions(args.preds, labels=labels, report=args.report, format=args.format, images=images,
                             task=task, decision=decision)
    tail = f"  report: {args.report}" if args.report else ""
    if m.get("task") == "detection":
        print(detection_line(m) + tail)
        return 0
    print(Task.for_kind(m["task"]).evaluation_line(m) + tail)
    missing = m.get("missing") or {}
    if missing:
        print(f"specimg evaluate: {len(missing)} file(s) have no prediction and are not scored:", file=sys.stderr)
        for path, why in list(missing.items())[:20]:
            print(f"  {path}: {why}", file=sys.stderr)
        if len(missing) > 20:
            print(f"  ... and {len(missing) - 20} more" + (f" (listed in {args.report})" if args.report else ""),
                  file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ._export import export_run

    paths = export_run(args.run, args.out, format=args.format, folds=_folds(args.folds), per_fold=args.per_fold,
                       tta=not args.no_tta)
    for p in paths:
        print(f"wrote {p} (+ {p.name}.json)")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from .._cli_common import render_config_from_args
    from ._embed import embed

    is_run = Path(args.model).is_dir()
    table = embed(args.input, args.model, out=args.out, weights=args.weights, windows=args.windows,
                  render_config=None if is_run else render_config_from_args(args), device=args.device,
                  batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
    n_feat = sum(c.startswith("f") and c[1:].isdigit() for c in table.columns)
    rows = "window" if args.windows else "file"
    print(f"embedded {table['path'].nunique()} file(s) with {table['model'].nunique()} model(s) of {args.model}: "
          f"{len(table)} {rows} row(s) of {n_feat} features in {table.attrs['seconds']:.1f} s -> {args.out}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    import pandas as pd

    from ._embed import probe, probe_line

    groups = pd.read_csv(args.groups, dtype=str) if args.groups else None
    if groups is not None and "path" in groups.columns:  # paths relative to that CSV, as the input table's
        groups["path"] = groups["path"].astype(str)
    metrics = probe(args.embeddings, run=args.run, n_splits=args.folds, group_column=args.group_column,
                    groups=groups, C=args.C, seed=args.seed)
    print(probe_line(metrics))
    for k, f in metrics["folds"].items():
        print(f"  fold {k}: accuracy {f['accuracy']:.4f}  UAR {f['uar']:.4f}  ({f['n_files']} files)")
    return 0


def add_predict_parsers(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("predict", help="predict audio files with a trained run (flip TTA, per-file answers)",
                       description="Render INPUT with the run's own config, average the fold models and the "
                                   "flip TTA, pool windows per file and write one row per file (written as it "
                                   "goes: the same command after a crash resumes where it stopped). With --images "
                                   "on-the-fly the spectrograms are computed by the torch front end on --device (a "
                                   "CUDA GPU, or the CPU) from decoded waveforms instead of being rendered as "
                                   "images on the CPU.")
    p.add_argument("run", help="run folder written by `specimg train`")
    p.add_argument("input", help="CSV, class-folder tree, plain folder of audio, or an image cache")
    p.add_argument("--out", required=True, help="predictions CSV")
    p.add_argument("--tta", choices=("flip", "none"), default="flip", help="horizontal-flip TTA (default: flip)")
    p.add_argument("--aggregate", choices=("mean", "max", "gmean"), default=None,
                   help="how window probabilities pool into the file's (default: the run's task's pooling: mean "
                        "for single-label runs, max per class for multi-label ones)")
    p.add_argument("--folds", default="all", help="'all' (default) or fold indices, e.g. 0,2")
    p.add_argument("--segments", action="store_true", help="also write per-window probabilities")
    p.add_argument("--detections", action="store_true",
                   help="multi-label runs: also write <stem>_detections.csv (path,start,end,class,score: windows at "
                        "or above their class's threshold, neighbours merged) and its Raven selection table "
                        "<stem>_detections.selections.txt; implies --segments")
    p.add_argument("--detection-threshold", type=float, default=None, metavar="T",
                   help="one detection threshold for every class (default: the run's window thresholds)")
    add_table_options(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--workers", type=int, default=1,
                   help="processes rendering audio (--images cached) or decoding and resampling it (on-the-fly)")
    p.add_argument("--images", choices=("auto", "cached", "on-the-fly"), default="auto",
                   help="how audio becomes model input: 'cached' renders images with librosa + PIL, as the image "
                        "cache does; 'on-the-fly' cuts waveform windows and computes their images with the torch "
                        "front end on --device (works on a CPU too); 'auto' (default) uses what the run was "
                        "trained with ('cached' for older runs). An image-cache INPUT is predicted from its "
                        "images either way")
    p.add_argument("--part-files", type=int, default=256, metavar="N",
                   help="files per part written as the prediction goes (a re-run after a crash reuses the finished "
                        "parts; default 256)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)

    e = sub.add_parser("evaluate", help="score predictions: accuracy, UAR, macro-F1, confusion matrix, report")
    e.add_argument("preds", help="predictions CSV (specimg predict output or a run's oof_files.csv)")
    e.add_argument("--labels", help="CSV or class-folder tree with the true labels (default: the CSV's label "
                                    "column); labelled files that predict skipped are listed, not scored")
    e.add_argument("--report", help="folder for the report (plots, tables, report.md/html)")
    e.add_argument("--format", choices=("markdown", "html"), default="markdown")
    e.add_argument("--run", help="run folder: example spectrograms in the report, from its image cache or "
                                 "rendered with its config from the audio (found through --labels or the run); "
                                 "and its task and decision rule (a multi-label run's per-class thresholds)")
    e.add_argument("--task", choices=("auto", "single-label", "multi-label"), default="auto",
                   help="whose predictions these are (default: the --run's task; else multi-label when the table "
                        "has a 'labels' column or --labels holds tag sets; a detection table is always matched to "
                        "its annotations)")
    add_table_options(e)
    e.set_defaults(func=_cmd_evaluate)

    x = sub.add_parser("export", help="export fold models to ONNX or TorchScript")
    x.add_argument("run", help="run folder")
    x.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    x.add_argument("--out", required=True, help="artifact file (.onnx / .pt)")
    x.add_argument("--folds", default="all")
    x.add_argument("--per-fold", action="store_true", help="one artifact per fold instead of the ensemble")
    x.add_argument("--no-tta", action="store_true", help="leave the flip TTA out of the graph")
    x.set_defaults(func=_cmd_export)

    from .._cli_common import add_render_options

    m = sub.add_parser("embed", help="write the penultimate features of a run's models or of a backbone, per file",
                       description="Render INPUT (with the run's config, or the rendering options below for a "
                                   "backbone), pass every window through the network up to its pooled features and "
                                   "average each file's windows. A run's fold models each embed every file (the "
                                   "'model_fold' column), so that `specimg probe --run` can use, for each held-out "
                                   "fold, the model that never saw it. Images are cached in OUT.cache/ and each "
                                   "model's features in OUT.parts/: the same command after a crash resumes.")
    m.add_argument("input", help="CSV (path,label,...), class-folder tree or plain folder of audio")
    m.add_argument("--model", required=True, help="a run folder, or a backbone name (e.g. tf_efficientnet_lite0)")
    m.add_argument("--weights", default="auto",
                   help="a backbone's weights: auto, offline, hub, none or a checkpoint path (ignored for a run)")
    m.add_argument("--out", required=True, help="the table: .parquet (or .csv)")
    m.add_argument("--windows", action="store_true", help="one row per window instead of per file")
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--device", default="auto", help="auto|cpu|cuda")
    m.add_argument("--workers", type=int, default=1, help="processes rendering the audio")
    m.add_argument("--quiet", action="store_true")
    add_render_options(m)
    m.set_defaults(func=_cmd_embed)

    b = sub.add_parser("probe", help="fit logistic regression on embeddings, fold by fold: accuracy and UAR",
                       description="A linear probe: standardised features, logistic regression with balanced "
                                   "classes, fitted on each fold's training files and scored on its held-out files, "
                                   "printed as `specimg train` prints a run.")
    b.add_argument("embeddings", help="what `specimg embed` wrote (file rows with a label)")
    b.add_argument("--run", help="use this run's folds (and, for its own embeddings, fold k's model for fold k)")
    b.add_argument("--folds", type=int, default=None, metavar="K", help="without --run: K folds by file or group")
    b.add_argument("--group-column", default=None, help="without --run: keep these groups whole (e.g. speaker)")
    b.add_argument("--groups", default=None, metavar="CSV",
                   help="a table path,<group column> (e.g. the input CSV) when the embeddings lack the column")
    b.add_argument("--C", type=float, default=1.0, help="inverse regularisation (default 1)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_cmd_probe)
