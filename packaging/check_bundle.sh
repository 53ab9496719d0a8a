#!/usr/bin/env bash
# Check a built bundle the way a user without Python would run it:
#
#     packaging/check_bundle.sh [dist/web2code-<version>-linux-x86_64]
#
# 1. `web2code --version` and `web2code-convert --help`, timed, from an empty environment
#    (env -i: no venv, no PYTHONPATH, no display);
# 2. the self-test with a tiny model pair (made here with the venv's converter, once, in
#    packaging/build/tiny-pair): window offscreen, worker process, 8 tokens, preview pixels;
# 3. the same self-test with every Python on this machine hidden (a private mount namespace with
#    empty folders over the venv, pyenv and /usr/lib/python3*) when run as root with unshare;
# 4. bad input: a broken model folder, a garbage GGUF, no display: each must give one line, no traceback.
# Exit status 0 when everything passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
if [ $# -ge 1 ]; then
    BUNDLE=$(cd "$1" && pwd)
else
    BUNDLE=$(ls -d "$ROOT"/dist/web2code-*-linux-x86_64 2>/dev/null | grep -v '\.tar\.gz$' | sort | tail -1)
fi
[ -n "${BUNDLE:-}" ] && [ -x "$BUNDLE/web2code" ] || { echo "error: no bundle found (build it: packaging/build.sh)" >&2; exit 2; }
WORK=$ROOT/packaging/build/check
mkdir -p "$WORK"
FAILS=0
ok() { printf 'PASS  %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; FAILS=$((FAILS + 1)); }
# a clean environment: no venv on PATH, no Python variables, no display
clean() { env -i PATH=/usr/bin:/bin HOME="$HOME" LANG=C.UTF-8 "$@"; }

# ------------------------------------------------------------------ the tiny pair
PAIR=$ROOT/packaging/build/tiny-pair
if [ ! -f "$PAIR/manifest.json" ]; then
    echo "making a tiny model pair in ${PAIR#"$ROOT"/} (synthetic weights, the project's test tokenizer)"
    rm -rf "$PAIR" "$WORK/ckpt"
    "$PY" - "$WORK/ckpt" "$PAIR" "$ROOT/tests/data/tokenizer.json" <<'PYEOF' || { echo "error: could not make the tiny pair" >&2; exit 2; }
import sys
from pathlib import Path
from web2code.converters.synthetic import write_checkpoint
from web2code.converters.convert import ConvertOptions, convert
ck = write_checkpoint(Path(sys.argv[1]), tokenizer_json=Path(sys.argv[3]))
convert(ConvertOptions(outdir=Path(sys.argv[2]), source=str(ck), quants=["Q8_0"], name="tiny"))
PYEOF
fi
MODEL=$(ls "$PAIR"/tiny-*.gguf | head -1)
MMPROJ=$(ls "$PAIR"/mmproj-*.gguf | head -1)

echo "bundle: $BUNDLE ($(du -sh "$BUNDLE" | cut -f1))"

# ------------------------------------------------------------------ 1. start-up
T0=$(date +%s.%N)
VER=$(clean "$BUNDLE/web2code" --version 2>&1)
T1=$(date +%s.%N)
VER_S=$(echo "$T1 - $T0" | bc 2>/dev/null || awk "BEGIN {print $T1 - $T0}")
[[ $VER == web2code\ * ]] && ok "web2code --version: '$VER' in ${VER_S} s" || bad "web2code --version printed '$VER'"
T0=$(date +%s.%N)
HELP=$(clean "$BUNDLE/web2code-convert" --help 2>&1 | head -1)
T1=$(date +%s.%N)
[[ $HELP == usage:* ]] && ok "web2code-convert --help in $(awk "BEGIN {print $T1 - $T0}") s" || bad "web2code-convert --help: $HELP"

# ------------------------------------------------------------------ 2. self-test
echo "--- self-test (env -i, no display):"
clean "$BUNDLE/web2code" --self-test --model "$MODEL" --mmproj "$MMPROJ" >"$WORK/selftest.out" 2>"$WORK/selftest.err"
RC=$?
cat "$WORK/selftest.out"
[ $RC -eq 0 ] && ok "self-test exit 0" || { bad "self-test exit $RC: $(grep '^error:' "$WORK/selftest.err" | head -1)"; tail -5 "$WORK/selftest.err"; }

# ------------------------------------------------------------------ the bundled converter (torch, gguf, llama.cpp quantize)
if [ -d "$WORK/ckpt" ]; then
    rm -rf "$WORK/conv"
    T0=$(date +%s.%N)
    if clean "$BUNDLE/web2code-convert" "$WORK/ckpt" -o "$WORK/conv" --quant Q8_0 --name tiny >"$WORK/conv.out" 2>"$WORK/conv.err" \
            && [ -f "$WORK/conv/manifest.json" ]; then
        ok "web2code-convert converted the synthetic checkpoint in $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $T0}") s: $(ls "$WORK/conv" | tr '\n' ' ')"
    else
        bad "web2code-convert on the synthetic checkpoint: $(grep -E '^error:|Error' "$WORK/conv.err" | tail -1)"
    fi
fi

# ------------------------------------------------------------------ 3. with no Python anywhere
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
    HIDE=""
    for d in "$ROOT/.venv" "$HOME/.pyenv" /usr/lib/python3* /usr/local/lib/python3* /opt/conda; do
        [ -d "$d" ] && HIDE="$HIDE mount -t tmpfs none '$d';"
    done
    for f in /usr/bin/python3* /usr/local/bin/python3*; do
        [ -f "$f" ] && HIDE="$HIDE mount --bind /dev/null '$f';"
    done
    clean unshare -m --propagation private sh -c "$HIDE
        if python3 -c 1 2>/dev/null || '$PY' -c 1 2>/dev/null; then echo 'python still visible' >&2; exit 99; fi
        exec '$BUNDLE/web2code' --self-test --model '$MODEL' --mmproj '$MMPROJ'" >"$WORK/nopy.out" 2>"$WORK/nopy.err"
    RC=$?
    if [ $RC -eq 0 ]; then
        ok "self-test with every Python hidden: $(grep '^self-test: ok' "$WORK/nopy.out")"
    else
        bad "self-test with every Python hidden: exit $RC: $(grep -E '^error:|python still' "$WORK/nopy.err" | head -1)"
    fi
else
    echo "SKIP  self-test with Python hidden (needs root and unshare)"
fi

# ------------------------------------------------------------------ 4. bad input: one line, no crash
one_line() {  # name, expected status, command...
    local name=$1 want=$2
    shift 2
    clean "$@" >"$WORK/bad.out" 2>"$WORK/bad.err"
    local rc=$? errs
    errs=$(grep -c '^error:' "$WORK/bad.err")
    if grep -q Traceback "$WORK/bad.err"; then
        bad "$name: traceback"
    elif [ "$rc" -ne "$want" ] || [ "$errs" -ne 1 ]; then
        bad "$name: exit $rc (want $want), $errs error lines: $(head -3 "$WORK/bad.err")"
    else
        ok "$name: exit $rc, '$(grep '^error:' "$WORK/bad.err")'"
    fi
}
mkdir -p "$WORK/broken-models/pair"
echo '{"name": "x", "models": [{"file": "gone.gguf", "quant": "Q4_K_M"}], "mmproj": {"file": "gone-mmproj.gguf"}}' \
    >"$WORK/broken-models/pair/manifest.json"
head -c 4096 /dev/urandom >"$WORK/garbage.gguf"
printf 'P6\n1 1\n255\n\0\0\0' >"$WORK/page.ppm"
one_line "self-test, broken model folder" 2 "$BUNDLE/web2code" --self-test --models-dir "$WORK/broken-models"
one_line "self-test, garbage model file" 2 "$BUNDLE/web2code" --self-test --model "$WORK/garbage.gguf" --mmproj "$MMPROJ"
one_line "GUI with no display" 1 "$BUNDLE/web2code"
one_line "generate with a broken model folder" 2 "$BUNDLE/web2code" generate "$WORK/page.ppm" --models-dir "$WORK/broken-models"
one_line "web2code-convert, missing source" 2 "$BUNDLE/web2code-convert" "$WORK/no-such-checkpoint" -o "$WORK/conv-out"

echo
[ $FAILS -eq 0 ] && echo "all checks passed" || echo "$FAILS check(s) failed"
exit $((FAILS > 0))
