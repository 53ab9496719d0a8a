#!/usr/bin/env bash
# Web2Code Desktop: the two set-up commands.
#
#   ./dev.sh run  [web2code args]   install into .venv/ and start the application
#   ./dev.sh test [pytest args]     install with test extras into .venv/ and run every check
#   ./dev.sh test-vulkan [args]     CI's second stage: the Vulkan build in .venv-vulkan/, the offload
#                                   tests on Mesa's software Vulkan (packaging/llama.cpp/vulkan.sh)
#
# Both are fast when nothing changed: a stamp in .venv/ records a hash of what the
# install depends on, and it is written only after a complete install, so an
# interrupted set-up is never mistaken for a good one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.web2code-ready"
LOG="$VENV/setup.log"
MIN_PY="3.11"

die() { echo "error: $*" >&2; exit 2; }
say() { echo "==> $*" >&2; }

find_python() {
    local cand
    for cand in "${PYTHON:-}" python3 python; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c "import sys; sys.exit(0 if sys.version_info >= (${MIN_PY/./, }) else 1)" 2>/dev/null; then
            echo "$cand"; return 0
        fi
        die "Python ${MIN_PY} or newer is needed, $cand is $("$cand" -c 'import platform; print(platform.python_version())') (set PYTHON=/path/to/python3.x)"
    done
    die "no python3 found: install Python ${MIN_PY}+ (Debian/Ubuntu: apt-get install python3 python3-venv)"
}

# What the install depends on; any change re-runs the (incremental) install.
install_hash() {
    local py="$1"
    {
        "$py" -c 'import sys, platform; print(sys.version, platform.machine())'
        echo "CMAKE_ARGS=${CMAKE_ARGS:-}"
        cat "$ROOT/pyproject.toml" "$ROOT/packaging/llama.cpp/build_wheel.py" "$ROOT/packaging/llama.cpp/vulkan.py" \
            "$ROOT"/packaging/llama.cpp/patches/*.patch
    } | if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -d' ' -f1
}

pip_step() {  # pip_step "what" args...: quiet pip, one clear line on failure
    local what="$1"; shift
    if ! "$VENV/bin/python" -m pip "$@" >>"$LOG" 2>&1; then
        local last
        last="$(grep -E '^(ERROR|error):' "$LOG" | tail -n 1 || true)"
        case "$last" in
            *"No matching distribution"*|*"Could not find a version"*|*"NewConnectionError"*|*"Failed to establish"*|*"Temporary failure in name resolution"*)
                die "$what failed: the package index is unreachable (no network?): ${last#*: } (log: $LOG)";;
        esac
        die "$what failed: ${last:-see $LOG} (log: $LOG)"
    fi
}

ensure_venv() {
    local extras="$1" py want
    py="$(find_python)"
    want="$(install_hash "$py") ${extras}"
    if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
        local have; have="$(cat "$STAMP")"
        # A test install (extras "test", which include "convert") also serves the run command.
        if [ "$have" = "$want" ] || { [ "$extras" = "convert" ] && [ "$have" = "${want% *} test" ]; }; then
            return 0
        fi
    fi
    rm -f "$STAMP"
    if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        say "removing a broken .venv"; rm -rf "$VENV"
    fi
    if [ ! -d "$VENV" ]; then
        say "creating .venv with $("$py" -c 'import sys; print(sys.executable)')"
        "$py" -m venv "$VENV" >/dev/null 2>&1 || { rm -rf "$VENV"; die "cannot create a virtual environment: install the venv module (Debian/Ubuntu: apt-get install python3-venv)"; }
    fi
    : >"$LOG"
    pip_step "upgrading pip" install --upgrade pip setuptools wheel

    say "llama.cpp: our patched llama-cpp-python build (cached after the first build, ~7 min on 2 cores)"
    local wheel
    wheel="$("$VENV/bin/python" "$ROOT/packaging/llama.cpp/build_wheel.py" --log "$VENV/llama-build.log" | tail -n 1)" \
        || die "building llama-cpp-python failed (see the line above)"
    if [ "$(cat "$VENV/.llama-wheel" 2>/dev/null || true)" != "$wheel" ]; then
        pip_step "installing $(basename "$wheel")" install --force-reinstall --no-deps "$wheel"
        pip_step "installing llama-cpp-python's dependencies" install "$wheel"
        echo "$wheel" >"$VENV/.llama-wheel"
    fi

    if [ -n "$extras" ]; then
        # torch before the extras, so nothing pulls a multi-GB CUDA build by accident;
        # a machine with a local CPU wheel (PIP_FIND_LINKS) uses it.
        if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
            say "installing torch (CPU) for the converter"
            pip_step "installing torch" install "torch==${WEB2CODE_TORCH_VERSION:-2.13.0}"
        fi
    fi
    say "installing Web2Code${extras:+ with [$extras]} (editable)"
    pip_step "installing Web2Code" install -e "$ROOT${extras:+[$extras]}"
    echo "$want" >"$STAMP"
}

# Debian packages the headless GUI tests need (see shared design notes on QtWebEngine), and cmake,
# which builds llama.cpp's llama-server for the integration tests; dbus-daemon runs a private session
# bus for the screen-capture portal tests.
DEB_PKGS=(xvfb xauth git cmake libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0
          libxcb-xinerama0 libxcb-randr0 libxcb-xkb1 libxcb-cursor0 libxkbcommon0 libxkbcommon-x11-0
          libnss3 libgl1 libegl1 libgl1-mesa-dri libfontconfig1 libdbus-1-3 fonts-dejavu-core
          libxcomposite1 libxdamage1 libxrandr2 libxtst6 libxkbfile1 libxshmfence1 libgbm1
          "libasound2t64|libasound2" "dbus-daemon|dbus")

ensure_debian_packages() {
    command -v dpkg-query >/dev/null 2>&1 || return 0   # not Debian/Ubuntu: see README
    local missing=() alt p ok
    for alt in "${DEB_PKGS[@]}"; do
        ok=""
        for p in ${alt//|/ }; do
            if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then ok=1; break; fi
        done
        [ -n "$ok" ] || missing+=("$alt")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "the GUI tests need these Debian packages: ${missing[*]//|/ or } (as root: apt-get install ${missing[*]%%|*})"
    fi
    say "installing Debian packages: ${missing[*]}"
    local resolved=()
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (no network?)"
    for alt in "${missing[@]}"; do
        for p in ${alt//|/ }; do
            if apt-cache show "$p" >/dev/null 2>&1; then resolved+=("$p"); break; fi
        done
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${resolved[@]}" >/dev/null 2>&1 \
        || die "apt-get install ${resolved[*]} failed"
}

# llama.cpp's llama-server from the same patched source as the wheel, built once per build key
# (only that CMake target: ~610 CPU-seconds, ~5 min on 2 cores) and cached next to the wheels;
# the integration tests read its path from WEB2CODE_LLAMA_SERVER.
ensure_llama_server() {
    local exe
    exe="$("$VENV/bin/python" "$ROOT/packaging/llama.cpp/build_wheel.py" --server --log "$VENV/llama-server-build.log" \
        | tail -n 1)" || die "building llama-server failed (see the line above)"
    export WEB2CODE_LLAMA_SERVER="$exe"
}

# esbuild, React and Vue for the export tests (tests/unit/test_export.py), pinned, in a cache folder
# outside the repository; without node/npm the script says so and those checks skip.
ensure_node_tools() {
    bash "$ROOT/packaging/node-tools.sh" >/dev/null || die "installing the export tests' node tools failed (see the line above)"
}

qt_env() {
    # QtWebEngine's Chromium refuses to start as root unless its sandbox is off.
    if [ "$(id -u)" -eq 0 ]; then export QTWEBENGINE_DISABLE_SANDBOX=1; fi
    export QTWEBENGINE_CHROMIUM_FLAGS="${QTWEBENGINE_CHROMIUM_FLAGS:---disable-gpu --log-level=3}"
}

run_checks() {
    cd "$ROOT"
    local bin="$VENV/bin"
    say "ruff"
    "$bin/ruff" check .
    say "mypy (strict on app/engine and converters)"
    # mypy and import-linter read source folders, not the editable-install hook:
    # give them the installed layout (web2code.app, web2code.converters) with symlinks.
    local tc="$VENV/typecheck/web2code"
    mkdir -p "$tc"
    for d in app converters resources; do ln -sfn "$ROOT/$d" "$tc/$d"; done
    MYPYPATH="$VENV/typecheck" "$bin/mypy" --no-error-summary -p web2code.app -p web2code.converters
    say "import rules (import-linter)"
    PYTHONPATH="$VENV/typecheck" "$bin/lint-imports" --no-cache >/dev/null \
        || PYTHONPATH="$VENV/typecheck" "$bin/lint-imports" --no-cache
    say "pytest"
    qt_env
    "$bin/python" -m pytest "$@"
}

cmd="${1:-}"; shift || true
case "$cmd" in
    run)
        ensure_venv "convert"   # the application runs web2code-convert for "Get the model"
        qt_env
        exec "$VENV/bin/web2code" "$@"
        ;;
    test)
        ensure_debian_packages
        ensure_venv "test"
        ensure_llama_server
        ensure_node_tools
        run_checks "$@"
        ;;
    test-vulkan)
        ensure_debian_packages
        CMAKE_ARGS="" ensure_venv "test"   # the CPU build: the reference, and every other package
        qt_env
        VENV="$VENV" exec "$ROOT/packaging/llama.cpp/vulkan.sh" "$@"
        ;;
    *)
        echo "usage: ./dev.sh run [web2code args] | ./dev.sh test [pytest args] | ./dev.sh test-vulkan [pytest args]" >&2
        exit 2
        ;;
esac
