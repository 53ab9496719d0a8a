#!/usr/bin/env bash
# The JavaScript tools the export tests check the React and Vue output with
# (tests/unit/test_export.py): esbuild compiles the JSX, react-dom/server and
# vue/server-renderer render the components, @vue/compiler-sfc parses the .vue file.
#
#   packaging/node-tools.sh            install (once) and print the folder
#
# They go into a cache folder outside the repository ($WEB2CODE_NODE_TOOLS, default
# ~/.cache/web2code/node-tools), pinned, and a stamp written after a complete install
# makes the next run instant. Without node and npm this prints why and exits 0: the
# tests then skip their node checks (and say so) and run the Python-side ones.
set -euo pipefail

DIR="${WEB2CODE_NODE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/web2code/node-tools}"
# Keep these in step with NODE_PACKAGES in tests/unit/test_export.py (the stamp names them).
PACKAGES=(esbuild@0.28.2 react@19.3.1 react-dom@19.3.1 vue@3.5.46 @vue/compiler-sfc@3.5.46
          @vue/server-renderer@3.5.46)
STAMP="$DIR/.web2code-node-tools"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "node-tools: node or npm not found; the export tests will skip their JavaScript checks" >&2
    exit 0
fi
want="${PACKAGES[*]} node-$(node --version)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "$DIR"; exit 0
fi
mkdir -p "$(dirname "$DIR")"
tmp="$(mktemp -d "$DIR.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo '{"name": "web2code-node-tools", "private": true}' >"$tmp/package.json"
if ! npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error "${PACKAGES[@]}" >"$tmp/npm.log" 2>&1; then
    echo "node-tools: npm install failed: $(grep -m1 -i 'err' "$tmp/npm.log" || tail -n 1 "$tmp/npm.log")" >&2
    exit 1
fi
echo "$want" >"$tmp/.web2code-node-tools"
rm -rf "$DIR"
mv "$tmp" "$DIR"
trap - EXIT
echo "$DIR"
