#!/usr/bin/env bash
# Install what `cargo build --release --features cuda` needs on a Debian/Ubuntu machine, with or
# without a GPU: CUDA 13.0's compiler, headers and libraries from the PyPI wheels NVIDIA
# publishes (no system CUDA, no root needed when PREFIX is writable), and print the environment.
#
#   eval "$(scripts/cuda-setup.sh)"                  # install into ~/.cache/pricer-cuda, export
#   eval "$(scripts/cuda-setup.sh /opt/cuda-pip)"    # another prefix
#   export CUDA_COMPUTE_CAP=80; eval "$(scripts/cuda-setup.sh)"   # A100 (90: H100/H200, 89: L4/RTX 4090)
#   cargo build --release --features cuda
#
# Progress goes to stderr; stdout holds only `export` lines. Idempotent (~20 s and ~1.2 GB the
# first time, instant after).
#
# Why these pieces (checked on a GPU-less 2-core Debian 12 box):
# - CUDA 12's PyPI nvcc wheels (12.4..12.9) hold only ptxas; CUDA 13's hold the whole compiler in
#   one merged tree `<target>/nvidia/cu13/{bin,include,lib,nvvm}` that works as CUDA_HOME.
# - 13.0 exactly: cudarc 0.19.10 (candle 0.11.1's) rejects 13.5, and driver 580 runs CUDA <= 13.0.
# - candle-kernels finds nvcc on PATH and the compute capability in CUDA_COMPUTE_CAP (without it
#   it asks nvidia-smi and fails on a machine without a GPU); cudarc reads CUDARC_CUDA_VERSION.
# - The wheels ship only lib*.so.N: the linker's -lcublas etc. need unversioned links.
# - cudarc links the driver dynamically (libcuda.so.1), which no wheel ships: a stub libcuda.so
#   (every call returns CUDA_ERROR_STUB_LIBRARY) lets the binary link here. On a GPU machine the
#   driver's own libcuda.so.1 is used; never put lib/stubs on LD_LIBRARY_PATH there.
set -euo pipefail

PREFIX=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pricer-cuda}
VER=${CUDA_PIP_VERSION:-13.0.2}
CAP=${CUDA_COMPUTE_CAP:-90}
T="$PREFIX/cu13-$VER"
C="$T/nvidia/cu13"
PY=${PYTHON:-python3}
say() { echo "[cuda-setup] $*" >&2; }

if [ ! -x "$C/bin/nvcc" ]; then
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    say "installing pip (python3-pip)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  say "pip installing cuda-toolkit==$VER into $T (~500 MB download, ~1.2 GB on disk)"
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q \
    --disable-pip-version-check --no-warn-conflicts --target "$T" \
    "cuda-toolkit[nvcc,crt,nvvm,cudart,cublas,curand,nvrtc,cccl]==$VER" >&2
fi

# Unversioned names for the linker.
(
  cd "$C/lib"
  for f in libcudart.so.* libcublas.so.* libcublasLt.so.* libcurand.so.* libnvrtc.so.* libnvvm.so.*; do
    case "$f" in *builtins*|*alt*) continue ;; esac
    [ -e "$f" ] && ln -sf "$f" "${f%%.so.*}.so"
  done
)

# The link-time stub of the driver API: every cu* name in cuda.h returns 34.
if [ ! -e "$C/lib/stubs/libcuda.so" ]; then
  mkdir -p "$C/lib/stubs"
  syms=$(mktemp)
  grep -ohP '\bcu[A-Z]\w*' "$C/include/cuda.h" >"$syms"
  for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys/mod.rs; do
    [ -e "$f" ] && grep -oP '^pub unsafe fn \Kcu\w+(?=\()' "$f" >>"$syms"
  done
  {
    echo 'static const char* S = "CUDA_ERROR_STUB_LIBRARY: stub libcuda, no NVIDIA driver";'
    echo 'int cuGetErrorString(int e, const char** p) { if (p) *p = S; return 0; }'
    echo 'int cuGetErrorName(int e, const char** p) { if (p) *p = "CUDA_ERROR_STUB_LIBRARY"; return 0; }'
    sort -u "$syms" | grep -vxE 'cuGetErrorString|cuGetErrorName' | sed 's/.*/int &(void) { return 34; }/'
  } >"$C/lib/stubs/libcuda_stub.c"
  rm -f "$syms"
  gcc -shared -fPIC -O1 -w -Wl,-soname,libcuda.so.1 -o "$C/lib/stubs/libcuda.so" "$C/lib/stubs/libcuda_stub.c"
  ln -sf libcuda.so "$C/lib/stubs/libcuda.so.1"
fi

"$C/bin/nvcc" --version | grep -q 'release 13.0' || {
  say "unexpected nvcc version: $("$C/bin/nvcc" --version | tail -1)"
  exit 1
}
say "ok: CUDA_HOME=$C, compute capability $CAP"

cat <<EOF
export CUDA_HOME="$C"
export CUDA_PATH="$C"
export CUDA_ROOT="$C"
export CUDA_TOOLKIT_ROOT_DIR="$C"
export PATH="$C/bin:\$PATH"
export CUDA_COMPUTE_CAP=$CAP
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$C/lib:$C/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
EOF
