"""The bad-input sweep: one table per public entry point.

Every bad file gets a message naming it and what is wrong, and the rest of the
batch keeps its work; every nonsense option fails before any work with a
message naming the option and the fix.
"""

from __future__ import annotations

import re

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from specimg.cli import main

SR = 8000

#: name -> (what the file is, expected outcome: None = usable, else a fragment of the error)
BATCH = {
    "ok.wav": None,
    "pcm8.wav": None,
    "alaw.wav": None,
    "stereo.wav": None,
    "rate44k.wav": None,
    "mp3inside.wav": None,
    "short.wav": None,  # shorter than a window: looped
    "garbage.wav": "cannot be decoded",
    "empty.wav": "empty (0 bytes)",
    "zero_length.wav": "zero-length",
    "nan.wav": "NaN or infinite",
    "inf.wav": "NaN or infinite",
    "silent.wav": "silent",
    "missing.wav": "not found",
}


def _speech(fsdd_dir, digit=3, take=0):
    y, _ = sf.read(fsdd_dir / "recordings" / f"{digit}_theo_{take}.wav", dtype="float32")
    return y


def make_batch(folder, fsdd_dir, labels=("3", "7")):
    folder.mkdir(parents=True, exist_ok=True)
    y = _speech(fsdd_dir)
    sf.write(folder / "ok.wav", y, SR)
    sf.write(folder / "pcm8.wav", y, SR, subtype="PCM_U8")
    sf.write(folder / "alaw.wav", y, SR, subtype="ALAW")
    sf.write(folder / "stereo.wav", np.stack([y, y * 0.5], 1), SR)
    sf.write(folder / "rate44k.wav", librosa.resample(y, orig_sr=SR, target_sr=44100), 44100)
    sf.write(folder / "mp3inside.wav", y, SR, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(folder / "short.wav", y[:800], SR)
    (folder / "garbage.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 20)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "zero_length.wav", np.zeros(0, np.float32), SR)
    bad = y.copy()
    bad[50] = np.nan
    sf.write(folder / "nan.wav", bad, SR, subtype="FLOAT")
    bad[50] = np.inf
    sf.write(folder / "inf.wav", bad, SR, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
    names = list(BATCH)
    table = pd.DataFrame({"path": names, "label": [labels[i % len(labels)] for i in range(len(names))]})
    table.to_csv(folder / "batch.csv", index=False)
    return folder / "batch.csv"


RENDER = ["--sample-rate", "8000", "--seconds", "1", "--hop", "0.5", "--n-fft", "256", "--hop-length", "64",
          "--n-mels", "32", "--image-size", "32x48", "--quiet"]


def test_render_sweep(fsdd_dir, tmp_path, capsys):
    csv = make_batch(tmp_path / "audio", fsdd_dir)
    assert main(["render", str(csv), "--out", str(tmp_path / "c"), *RENDER]) == 0
    files = pd.read_csv(tmp_path / "c" / "files.csv")["path"].tolist()
    errors = pd.read_csv(tmp_path / "c" / "errors.csv").set_index("path")["error"].to_dict()
    for name, expected in BATCH.items():
        if expected is None:
            assert name in files, f"{name} should have been rendered; errors: {errors.get(name)}"
        else:
            assert expected in errors[name], (name, errors.get(name))
    err = capsys.readouterr().err
    assert "7 file(s) could not be rendered" in err and "garbage.wav" in err


@pytest.mark.parametrize("args, message", [
    (["--hop", "-1"], "'hop' parameter of SegmentConfig must be a finite number > 0"),
    (["--seconds", "0"], "'seconds' parameter"),
    (["--image-size", "big"], "--image-size 'big' must be N or HxW"),
    (["--image-size", "4"], "'image_size' parameter"),
    (["--n-fft", "16xs"], "--n-fft '16xs' must be samples"),
    (["--class-hop", "zebra=5"], r"--class-hop names label\(s\) \['zebra'\]"),
    (["--class-hop", "3=-5"], "class_hop\\['3'\\]"),
    (["--sample-rate", "10"], "'sample_rate' parameter of AudioConfig must be an int >= 1000"),
    (["--workers", "0"], "'workers' parameter of render_dataset"),
    (["--pad-mode", "none", "--seconds", "30"], "longer than every file"),
    (["--feature", "mfcc", "--n-mfcc", "40"], "'n_mfcc' parameter of SpectrogramConfig must be <= n_mels=32"),
])
def test_render_nonsense_options(fsdd_dir, tmp_path, capsys, args, message):
    csv = make_batch(tmp_path / "audio", fsdd_dir)
    opts = RENDER + args
    assert main(["render", str(csv), "--out", str(tmp_path / "c"), *opts]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "c" / "images.npy").exists()


def test_render_missing_input(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
