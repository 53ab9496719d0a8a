#!/usr/bin/env bash
# Build the Web2Code desktop bundle for Linux x86-64 (PyInstaller, one folder), in one command:
#
#     packaging/build.sh            # -> dist/web2code-<version>-linux-x86_64/ and .tar.gz
#     packaging/build.sh --check    # ... then run the bundle's self-test with a tiny model pair
#
# Options:
#   --python PATH   the Python of the environment to freeze (default: .venv/bin/python)
#   --clean         discard PyInstaller's cache (packaging/build/pyinstaller) first
#   --check         after building, run packaging/check_bundle.sh on the result
#   --no-tar        skip the .tar.gz
#   --portable      (default) bundle a llama.cpp built with GGML_NATIVE=OFF (AVX2 baseline), built once
#                   with packaging/llama.cpp/build_wheel.py and cached; the venv is not changed
#   --native        bundle the venv's own llama.cpp (compiled for this machine's CPU; faster to build)
#
# Prerequisites (checked first; everything missing is listed, then the build stops with status 2):
# the project's virtual environment with the app installed (pip install -e '.[convert,bundle]'),
# our patched llama-cpp-python (packaging/llama.cpp), PyInstaller >= 6.10, about 8 GB of free disk.
# Optional: appstreamcli (Debian: appstream) and desktop-file-validate (desktop-file-utils) to
# validate the desktop files; without them validation is skipped with a note.
#
# Output stays in packaging/build/ (work files) and dist/ (the bundle); both are git-ignored.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=$ROOT/.venv/bin/python
CLEAN=0
CHECK=0
TAR=1
PORTABLE=1
while [ $# -gt 0 ]; do
    case $1 in
        --python) PY=$2; shift 2 ;;
        --clean) CLEAN=1; shift ;;
        --check) CHECK=1; shift ;;
        --no-tar) TAR=0; shift ;;
        --portable) PORTABLE=1; shift ;;
        --native) PORTABLE=0; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (see $0 --help)" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
MISSING=()
miss() { MISSING+=("$1"); }

# ------------------------------------------------------------------ prerequisites
say "checking prerequisites"
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) echo "note: this script is tested on Linux x86-64 only (this is $(uname -s) $(uname -m));" \
            "see packaging/README.md for macOS and Windows" >&2 ;;
esac
if [ ! -x "$PY" ]; then
    miss "the virtual environment: $PY does not exist (python3 -m venv .venv && .venv/bin/pip install -e '.[convert,bundle]')"
else
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || miss "Python >= 3.11 in $PY (it is $("$PY" -c 'import sys; print(sys.version.split()[0])'))"
    "$PY" -c 'import PyInstaller, sys; v = tuple(int(x) for x in PyInstaller.__version__.split(".")[:2]); sys.exit(v < (6, 10))' 2>/dev/null \
        || miss "PyInstaller >= 6.10 in the venv ($PY -m pip install 'pyinstaller>=6.10', or the [bundle] extra)"
    "$PY" -c 'import web2code.app, web2code.converters, web2code.resources' 2>/dev/null \
        || miss "the web2code package in the venv ($PY -m pip install -e .)"
    # The bundle ships the PySide6 release pyproject.toml pins (6.12.0 crashes long generations).
    PYSIDE_PIN="$(sed -n 's/^ *"pyside6==\([0-9.]*\)".*/\1/p' "$ROOT/pyproject.toml")"
    "$PY" -c 'import PySide6.QtWebEngineWidgets' 2>/dev/null \
        || miss "PySide6 with QtWebEngine in the venv (pip install -e . installs PySide6 $PYSIDE_PIN)"
    "$PY" -c "import PySide6, shiboken6, sys; sys.exit(not (PySide6.__version__ == shiboken6.__version__ == '$PYSIDE_PIN'))" \
        2>/dev/null || miss "PySide6 $PYSIDE_PIN, the release pyproject.toml pins, in the venv (pip install -e .)"
    "$PY" -c 'import torch, safetensors' 2>/dev/null \
        || miss "torch (CPU) and safetensors for web2code-convert (pip install torch --index-url https://download.pytorch.org/whl/cpu; pip install -e '.[convert]')"
    "$PY" -c 'import gguf, qtawesome, pygments, PIL, platformdirs, huggingface_hub' 2>/dev/null \
        || miss "the application's dependencies (pip install -e .)"
    if "$PY" -c 'import llama_cpp' 2>/dev/null; then
        QT_QPA_PLATFORM=offscreen "$PY" -c 'from web2code.app.engine.clsprobe import probe; assert probe().class_token_first' \
            >/dev/null 2>&1 \
            || miss "our patched llama-cpp-python: the installed llama.cpp puts CLIP's class token last (build it: packaging/llama.cpp/README)"
    else
        miss "llama-cpp-python (our patched build: packaging/llama.cpp)"
    fi
fi
for lic in /usr/share/common-licenses/LGPL-3 /usr/share/common-licenses/GPL-3; do
    [ -f "$lic" ] || miss "$lic (the licence text shipped for Qt; Debian's base-files package has it)"
done
TOOLS="tar gzip objdump"
[ "$PORTABLE" = 1 ] && TOOLS="$TOOLS cc c++ cmake git"
for tool in $TOOLS; do
    command -v "$tool" >/dev/null 2>&1 || miss "the '$tool' command"
done
for icon in "$ROOT"/resources/icons/app/web2code.svg "$ROOT"/resources/icons/app/web2code-{16,24,32,48,64,128,256,512}.png; do
    [ -f "$icon" ] || miss "the icon $icon (regenerate: $PY packaging/render_icons.py)"
done
NEED_KB=$((8 * 1024 * 1024))
mkdir -p "$ROOT/dist" "$ROOT/packaging/build"
FREE_KB=$(df -Pk "$ROOT/dist" | awk 'NR==2 {print $4}')
if [ "${FREE_KB:-0}" -lt "$NEED_KB" ]; then
    miss "disk space: $((FREE_KB / 1024 / 1024)) GB free in $ROOT/dist, the build needs about 8 GB"
fi
if [ ${#MISSING[@]} -gt 0 ]; then
    echo "error: cannot build the bundle; missing:" >&2
    for m in "${MISSING[@]}"; do echo "  - $m" >&2; done
    exit 2
fi
VALIDATE_APPSTREAM=$(command -v appstreamcli || true)
VALIDATE_DESKTOP=$(command -v desktop-file-validate || true)
[ -n "$VALIDATE_APPSTREAM" ] || echo "note: appstreamcli not found: metainfo validation skipped (apt-get install appstream)" >&2
[ -n "$VALIDATE_DESKTOP" ] || echo "note: desktop-file-validate not found: .desktop validation skipped (apt-get install desktop-file-utils)" >&2

VERSION=$("$PY" -c 'import re, sys; print(re.search(r"^__version__\s*=\s*\"([^\"]+)\"", open("app/__init__.py").read(), re.M).group(1))')
NAME="web2code-$VERSION-linux-x86_64"
export W2C_BUNDLE_NAME=$NAME
BUNDLE=$ROOT/dist/$NAME
say "building $NAME with $("$PY" -m PyInstaller --version 2>/dev/null | head -1 | sed 's/^/PyInstaller /')"

# ------------------------------------------------------------------ validate desktop files first (cheap)
APP_ID=io.github.web2code.Web2Code
if [ -n "$VALIDATE_DESKTOP" ]; then
    desktop-file-validate packaging/linux/web2code.desktop
fi
if [ -n "$VALIDATE_APPSTREAM" ]; then
    appstreamcli validate --no-net packaging/linux/$APP_ID.metainfo.xml
fi
grep -q "<release version=\"$VERSION\"" packaging/linux/$APP_ID.metainfo.xml \
    || { echo "error: packaging/linux/$APP_ID.metainfo.xml has no <release version=\"$VERSION\"> (app/__init__.py)" >&2; exit 2; }

# ------------------------------------------------------------------ which llama.cpp goes in
LIBDIR=$("$PY" -c 'import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), "lib"))')
if [ "$PORTABLE" = 1 ]; then
    say "llama.cpp: a portable build (CMAKE_ARGS=-DGGML_NATIVE=OFF ${W2C_LLAMA_CMAKE_ARGS:-}; ~7 min once, then cached)"
    WHEEL=$(CMAKE_ARGS="-DGGML_NATIVE=OFF ${W2C_LLAMA_CMAKE_ARGS:-}" "$PY" packaging/llama.cpp/build_wheel.py | tail -n 1) \
        || { echo "error: building the portable llama.cpp failed (see above); --native bundles the venv's build" >&2; exit 1; }
    LIBDIR=$ROOT/packaging/build/llama-portable/llama_cpp/lib
    rm -rf "$ROOT/packaging/build/llama-portable"
    "$PY" - "$WHEEL" "$ROOT/packaging/build/llama-portable" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("llama_cpp/lib/")])
PYEOF
    # the same probe as above, on the libraries that go into the bundle
    LLAMA_CPP_LIB_PATH=$LIBDIR MTMD_CPP_LIB=$LIBDIR QT_QPA_PLATFORM=offscreen "$PY" -c \
        'from web2code.app.engine.clsprobe import probe; assert probe().class_token_first' >/dev/null 2>&1 \
        || { echo "error: the portable llama.cpp build ($WHEEL) lacks the class-token fix" >&2; exit 1; }
    export W2C_LLAMA_LIB=$LIBDIR
fi
if objdump -d "$LIBDIR/libggml-cpu.so" 2>/dev/null | grep -q -m1 zmm; then
    echo "note: the bundled llama.cpp uses AVX-512 (built with GGML_NATIVE for this CPU): the bundle will stop" \
         "with 'illegal instruction' on CPUs without it; build without --native for a portable bundle" >&2
    NATIVE_NOTE=" (llama.cpp: AVX-512, this CPU only)"
else
    NATIVE_NOTE=""
fi

# ------------------------------------------------------------------ the installed import layout
# web2code.app / .converters / .resources as links, so PyInstaller's module finder sees the
# same package names the editable install maps (it cannot use setuptools' editable finder).
STAGE=$ROOT/packaging/build/src
rm -rf "$STAGE"
mkdir -p "$STAGE/web2code"
for pkg in app converters resources; do
    ln -s "$ROOT/$pkg" "$STAGE/web2code/$pkg"
done
export W2C_STAGE=$STAGE

# ------------------------------------------------------------------ PyInstaller
WORK=$ROOT/packaging/build/pyinstaller
[ "$CLEAN" = 1 ] && rm -rf "$WORK"
rm -rf "$BUNDLE" "$BUNDLE.tar.gz"
LOG=$ROOT/packaging/build/pyinstaller.log
say "running PyInstaller (several minutes; log: ${LOG#"$ROOT"/})"
T0=$(date +%s)
if ! "$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$ROOT/dist" --workpath "$WORK" \
        packaging/web2code.spec >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "error: PyInstaller failed (full log: $LOG)" >&2
    exit 1
fi
say "PyInstaller done in $(( $(date +%s) - T0 )) s"
[ -x "$BUNDLE/web2code" ] && [ -x "$BUNDLE/web2code-convert" ] \
    || { echo "error: $BUNDLE lacks its executables" >&2; exit 1; }

# ------------------------------------------------------------------ desktop integration, licences
say "adding desktop files, icons and licences"
install -D -m 644 packaging/linux/web2code.desktop "$BUNDLE/share/applications/web2code.desktop"
install -D -m 644 packaging/linux/$APP_ID.metainfo.xml "$BUNDLE/share/metainfo/$APP_ID.metainfo.xml"
install -D -m 644 resources/icons/app/web2code.svg "$BUNDLE/share/icons/hicolor/scalable/apps/web2code.svg"
for n in 16 24 32 48 64 128 256 512; do
    install -D -m 644 "resources/icons/app/web2code-$n.png" "$BUNDLE/share/icons/hicolor/${n}x${n}/apps/web2code.png"
done
install -m 755 packaging/linux/install-desktop.sh "$BUNDLE/install-desktop.sh"
install -m 644 LICENSE "$BUNDLE/LICENSE"
install -m 644 THIRD_PARTY_NOTICES.md "$BUNDLE/THIRD_PARTY_NOTICES.md"
install -m 644 packaging/linux/README.bundle.txt "$BUNDLE/README.txt"
# The LGPL and the licences of what is inside, as shipped by the packages themselves
mkdir -p "$BUNDLE/licenses"
"$PY" - "$BUNDLE/licenses" "$WORK/web2code/PYZ-00.toc" "$BUNDLE/_internal" <<'PYEOF'
# every installed distribution that contributed a module or a folder to the bundle
import ast, importlib.metadata as md, os, shutil, sys
from pathlib import Path
out, toc, internal = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
tops = {e[0].split(".")[0] for e in ast.literal_eval(Path(toc).read_text())[1]}
tops |= {n.split(".")[0] for n in os.listdir(internal)}
by_top = md.packages_distributions()
names = sorted({d for t in tops for d in by_top.get(t, [])} - {"web2code-desktop"}, key=str.lower)
listed = []
for name in names:
    dist = md.distribution(name)
    files = [f for f in (dist.files or [])
             if any(k in f.name.upper() for k in ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS"))
             and not f.name.endswith((".py", ".pyc"))]
    for f in files:
        src = Path(dist.locate_file(f))
        if src.is_file():
            dst = out / dist.metadata["Name"] / f.as_posix().split(".dist-info/", 1)[-1]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    lic = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
    if not lic or len(lic) > 80:
        lic = "; ".join(c.split("::")[-1].strip() for c in dist.metadata.get_all("Classifier") or []
                        if c.startswith("License ::")) or "see licenses/" + dist.metadata["Name"]
    listed.append(f"{dist.metadata['Name']} {dist.version}: {lic}")
(out / "PACKAGES.txt").write_text("Python distributions in this bundle and their declared licences\n\n"
                                  + "\n".join(listed) + "\n")
print(f"licences of {len(listed)} distributions copied to licenses/")
PYEOF
# Qt is used under the LGPL-3.0 (which builds on the GPL-3.0); llama.cpp's own licence
install -D -m 644 /usr/share/common-licenses/LGPL-3 "$BUNDLE/licenses/Qt/LGPL-3"
install -D -m 644 /usr/share/common-licenses/GPL-3 "$BUNDLE/licenses/Qt/GPL-3"
install -D -m 644 packaging/licenses/llama.cpp-LICENSE "$BUNDLE/licenses/llama.cpp/LICENSE"
# Python's own licence
PYLIC=$("$PY" -c 'import os, sysconfig; p = os.path.join(sysconfig.get_paths()["stdlib"], "LICENSE.txt"); print(p if os.path.exists(p) else "")')
[ -n "$PYLIC" ] && install -D -m 644 "$PYLIC" "$BUNDLE/licenses/Python/LICENSE.txt"

if [ -n "$VALIDATE_APPSTREAM" ]; then
    # the installed layout: metainfo + desktop file + icon together
    appstreamcli validate-tree --no-net "$BUNDLE" >/dev/null 2>&1 || appstreamcli validate-tree --no-net "$BUNDLE" || true
fi

# ------------------------------------------------------------------ the archive
if [ "$TAR" = 1 ]; then
    say "writing dist/$NAME.tar.gz"
    GZ=gzip
    command -v pigz >/dev/null 2>&1 && GZ=pigz
    tar -C "$ROOT/dist" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$NAME" | $GZ -6 >"$BUNDLE.tar.gz"
fi

say "bundle:  dist/$NAME/  ($(du -sh "$BUNDLE" | cut -f1))$NATIVE_NOTE"
[ "$TAR" = 1 ] && say "archive: dist/$NAME.tar.gz  ($(du -sh "$BUNDLE.tar.gz" | cut -f1))"
say "try it:  dist/$NAME/web2code --version;  dist/$NAME/web2code --self-test --models-dir DIR"

if [ "$CHECK" = 1 ]; then
    "$ROOT/packaging/check_bundle.sh" "$BUNDLE"
fi
