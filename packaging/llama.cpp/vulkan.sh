#!/usr/bin/env bash
# CI's second stage (./dev.sh test-vulkan): GPU offload proven on Mesa's software Vulkan (lavapipe).
#
# 1. The Vulkan wheel of our patched llama-cpp-python (build_wheel.py with CMAKE_ARGS=-DGGML_VULKAN=on;
#    vulkan.py sets the machine up), cached next to the CPU wheel under its own key (~10 min cold on 2 cores).
# 2. .venv-vulkan/: that wheel alone, on top of .venv/'s packages (a .pth adds .venv's site-packages
#    after its own), so the CPU venv the other tests use is never touched and nothing is installed twice.
# 3. The offload tests and the engine, CLI and worker integration tests with every layer and the
#    projector on the device (WEB2CODE_TEST_OFFLOAD=1, GGML_VK_VISIBLE_DEVICES=0), Mesa's shader
#    cache kept beside the wheel cache (a cold cache costs ~2 min of shader compiles per new kernel set).
#
# Arguments go to pytest (default: the offload set below). Expects VENV (dev.sh sets it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
VVENV="$ROOT/.venv-vulkan"
CACHE="${WEB2CODE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/web2code/wheels}"

die() { echo "error: $*" >&2; exit 2; }
say() { echo "==> $*" >&2; }

[ -x "$VENV/bin/python" ] || die "no $VENV: run ./dev.sh test first"
t0=$SECONDS

say "llama.cpp with Vulkan: our patched llama-cpp-python (cached after the first build, ~10 min on 2 cores)"
wheel="$(CMAKE_ARGS="-DGGML_VULKAN=on" nice -n 10 "$VENV/bin/python" "$ROOT/packaging/llama.cpp/build_wheel.py" \
    --log "$VENV/llama-vulkan-build.log" | tail -n 1)" || die "building the Vulkan llama-cpp-python failed (see above)"
t_build=$((SECONDS - t0))

if [ ! -x "$VVENV/bin/python" ] || ! "$VVENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VVENV"
    base="$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')"
    "$base" -m venv --without-pip "$VVENV" || die "cannot create $VVENV"
fi
site="$("$VVENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cpu_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Processed at start-up: .venv's packages (and its editable Web2Code) come after this venv's own.
echo "import site; site.addsitedir('$cpu_site')" >"$site/web2code-cpu-venv.pth"
if [ "$(cat "$VVENV/.llama-wheel" 2>/dev/null || true)" != "$wheel" ]; then
    say "installing $(basename "$wheel") into .venv-vulkan"
    "$VENV/bin/python" -m pip install -q --no-deps --upgrade --target "$site" "$wheel" >"$VVENV/install.log" 2>&1 \
        || die "installing the Vulkan wheel failed (log: $VVENV/install.log)"
    echo "$wheel" >"$VVENV/.llama-wheel"
fi
"$VVENV/bin/python" - "$site" <<'EOF' || die "the Vulkan venv does not import its own llama_cpp"
import sys, llama_cpp
assert llama_cpp.__file__.startswith(sys.argv[1]), llama_cpp.__file__
EOF

export MESA_SHADER_CACHE_DIR="${MESA_SHADER_CACHE_DIR:-$CACHE/mesa-shader-cache}"
export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"   # lavapipe is a CPU-type device: name it
export WEB2CODE_TEST_OFFLOAD=1
export WEB2CODE_TEST_CPU_PYTHON="$VENV/bin/python"   # the CPU build, for the reference runs
mkdir -p "$MESA_SHADER_CACHE_DIR"
devices="$(cd "$ROOT" && "$VVENV/bin/python" -c 'from tests.offload import gpu_devices; print(*gpu_devices())')"
[ -n "$devices" ] || die "the Vulkan build sees no device (apt-get install mesa-vulkan-drivers for lavapipe)"
say "pytest on $devices, everything offloaded (shader cache: $MESA_SHADER_CACHE_DIR)"
cd "$ROOT"
if [ $# -eq 0 ]; then
    set -- tests/integration/test_offload.py tests/integration/test_engine.py tests/integration/test_cli.py \
        tests/integration/test_worker.py tests/integration/test_backends.py tests/integration/test_adapter.py \
        -q --durations=5 \
        `# hundreds of sampled tokens per path: each takes minutes on lavapipe (~4 tokens/s on 2 cores)` \
        --deselect tests/integration/test_adapter.py::test_the_same_seed_gives_the_same_tokens_on_every_path \
        --deselect tests/integration/test_adapter.py::test_the_cli_prints_the_same_token_ids_with_and_without_speculation_and_as_variant_0
fi
t1=$SECONDS
rc=0
"$VVENV/bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
say "Vulkan stage: wheel ${t_build}s, tests $((SECONDS - t1))s, total $((SECONDS - t0))s"
exit $rc
