#!/usr/bin/env bash
# The GPU benchmark on a fresh NVIDIA machine with no network (about 8 minutes):
# builds our patched llama.cpp with CUDA for the local architecture only, writes a
# random 7B Q4_K_M pair of the real shapes straight as GGUF, and measures our engine
# against llama-bench / llama-mtmd-cli with full offload. Prints one summary; the
# JSON goes to $OUT/gpu-bench.json when $OUT is set (else /tmp/w2c-gpu/).
#
# Needs: python3 with numpy, Pillow, pyyaml (torch optional, for the bandwidth
# ceiling), cmake, a C++ compiler, nvcc; and bench/cache/gpu/ made beforehand on a
# machine with the wheel cache: `python bench/gpu/gpu_bench.py pack` (carry it along).
#
#   bench/gpu/run.sh                      # 7B, CUDA
#   bench/gpu/run.sh --size tiny --cpu    # dry run of everything but the GPU
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
missing=()
command -v cmake >/dev/null || missing+=("cmake")
command -v c++ >/dev/null || command -v g++ >/dev/null || missing+=("a C++ compiler")
if [[ " $* " != *" --cpu "* ]]; then
  command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] || missing+=("nvcc (CUDA toolkit)")
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
fi
if (( ${#missing[@]} )); then
  echo "error: missing: ${missing[*]}" >&2
  exit 2
fi
[[ -f bench/cache/gpu/llama_cpp_python-0.3.36.tar.gz ]] || \
  echo "note: bench/cache/gpu/ is missing; run 'python bench/gpu/gpu_bench.py pack' where the wheel cache is" >&2
exec "$PY" bench/gpu/gpu_bench.py run "$@"
