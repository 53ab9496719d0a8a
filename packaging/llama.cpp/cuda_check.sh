#!/usr/bin/env bash
# CUDA build check: does our patched llama.cpp still configure and compile with CUDA? No GPU needed.
#
# PyPI's CUDA 12 wheels have no nvcc, but cuda-toolkit[nvcc,cudart,cublas,cccl]==13.5.0 installs a
# complete CUDA 13 toolkit under site-packages/nvidia/cu13 (1.1 GB, seconds on a fast link). This script
# installs it into a cached venv, adds the unversioned .so links CMake's FindCUDAToolkit looks for, and
# configures + compiles llama.cpp's CUDA backend (target ggml-cuda) from the same patched source as the
# wheel, for ONE architecture (sm_90; the default seven take 1.5-2.5 h) and without VMM (no driver
# library without a GPU): ~24 min on 2 cores.
#
# A pass is remembered by a stamp keyed on the llama.cpp release, our patches, this script and the
# toolkit version, so CI runs the compile only when one of those changed.
#
#   packaging/llama.cpp/cuda_check.sh                   # check (skipped when the stamp is warm)
#   packaging/llama.cpp/cuda_check.sh --configure-only  # the toolkit and CMake's configure step (~2 min)
#   packaging/llama.cpp/cuda_check.sh --force           # ignore the stamp
#   packaging/llama.cpp/cuda_check.sh --key             # print the stamp key
#   packaging/llama.cpp/cuda_check.sh --is-cached       # exit 0 when this source passed before, else 1
#
# Exit status: 0 passed (or cached pass), 2 the check failed (the log is named), 124 out of time
# (WEB2CODE_CUDA_TIME_LIMIT seconds for the compile, when set).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/packaging/llama.cpp"
CACHE="${WEB2CODE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/web2code/wheels}/cuda"
TOOLKIT="cuda-toolkit[nvcc,cudart,cublas,cccl]==13.5.0"
ARCH="${WEB2CODE_CUDA_ARCH:-90}"
PY="${PYTHON:-python3}"

die() { echo "error: $*" >&2; exit 2; }
say() { echo "==> $*" >&2; }

configure_only="" force=""
for a in "$@"; do
    case "$a" in
        --configure-only) configure_only=1 ;;
        --force) force=1 ;;
        --key|--is-cached) ;;
        *) die "unknown argument $a (see the head of $0)" ;;
    esac
done

key="$({ echo "$TOOLKIT arch=$ARCH"; cat "$0" "$HERE/build_wheel.py" "$HERE"/patches/*.patch; } \
    | sha256sum | cut -c1-16)"
if [[ " $* " == *" --key "* ]]; then echo "$key"; exit 0; fi
stamp="$CACHE/passed-$key"
if [[ " $* " == *" --is-cached "* ]]; then [ -f "$stamp" ]; exit; fi
if [ -z "$force" ] && [ -z "$configure_only" ] && [ -f "$stamp" ]; then
    say "CUDA check: passed before for this source ($(cat "$stamp")); skipped"
    exit 0
fi
mkdir -p "$CACHE"
log="$CACHE/check-$key.log"
: >"$log"

# 1. The toolkit, in a venv of its own (nothing of it reaches the project's venvs).
venv="$CACHE/toolkit-venv"
if [ "$(cat "$venv/.toolkit" 2>/dev/null || true)" != "$TOOLKIT" ]; then
    say "installing the CUDA toolkit from PyPI: $TOOLKIT (1.1 GB)"
    rm -rf "$venv"
    "$PY" -m venv "$venv" >>"$log" 2>&1 || die "cannot create $venv (apt-get install python3-venv)"
    "$venv/bin/python" -m pip install -q "$TOOLKIT" >>"$log" 2>&1 \
        || die "installing $TOOLKIT failed (network? log: $log)"
    echo "$TOOLKIT" >"$venv/.toolkit"
fi
CU="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
[ -x "$CU/bin/nvcc" ] || die "the toolkit has no $CU/bin/nvcc"
# The wheels ship only versioned libraries (libcudart.so.13, ...); FindCUDAToolkit links the plain names.
libdir="$CU/lib"
[ -d "$libdir" ] || libdir="$CU/lib64"
for lib in cudart cublas cublasLt; do
    if [ ! -e "$libdir/lib$lib.so" ]; then
        real="$(cd "$libdir" && ls "lib$lib.so."* 2>/dev/null | sort -V | head -n 1)"
        [ -n "$real" ] || die "the toolkit has no lib$lib.so.* in $libdir"
        ln -s "$real" "$libdir/lib$lib.so"
    fi
done

# 2. The patched source, exactly as the wheel build prepares it.
work="$(mktemp -d "$CACHE/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$("$PY" - "$HERE/build_wheel.py" "$work" "$log" <<'EOF'
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("w2c_build_wheel", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
try:
    print(mod.prepare_source(Path(sys.argv[2]), Path(sys.argv[3])) / mod.VENDOR_SUBDIR)
except mod.BuildError as exc:
    sys.exit(f"error: {exc}")
EOF
)" || die "preparing the patched llama.cpp source failed (log: $log)"

# 3. Configure, then compile the CUDA backend.
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
say "configuring llama.cpp with CUDA (sm_$ARCH, toolkit $CU)"
t0=$SECONDS
PATH="$CU/bin:$PATH" cmake -S "$src" -B "$work/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DGGML_CUDA_NO_VMM=ON \
    -DCUDAToolkit_ROOT="$CU" -DCMAKE_CUDA_COMPILER="$CU/bin/nvcc" \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_APP=OFF >>"$log" 2>&1 \
    || die "configuring llama.cpp with CUDA failed: $(grep -m1 -A3 'CMake Error' "$log" | tr '\n' ' ') (log: $log)"
grep -q "CUDA Toolkit found\|Found CUDAToolkit" "$log" || die "CMake did not find the CUDA toolkit (log: $log)"
say "configured in $((SECONDS - t0))s"
if [ -n "$configure_only" ]; then
    say "CUDA check: configure step passed (compile skipped: --configure-only)"
    exit 0
fi
say "compiling ggml-cuda (~24 min on 2 cores)"
t1=$SECONDS
limit=()
[ -n "${WEB2CODE_CUDA_TIME_LIMIT:-}" ] && limit=(timeout "$WEB2CODE_CUDA_TIME_LIMIT")
rc=0
PATH="$CU/bin:$PATH" "${limit[@]}" cmake --build "$work/build" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    --target ggml-cuda >>"$log" 2>&1 || rc=$?
if [ "$rc" -eq 124 ]; then
    echo "warning: the CUDA compile ran out of its ${WEB2CODE_CUDA_TIME_LIMIT}s; not checked this time" >&2
    exit 124
fi
[ "$rc" -eq 0 ] || die "compiling llama.cpp's CUDA backend failed: $(grep -m1 -E 'error' "$log") (log: $log)"
echo "$(date -u +%FT%TZ) in $((SECONDS - t1))s" >"$stamp"
say "CUDA check passed: configure $((t1 - t0))s, compile $((SECONDS - t1))s"
