#!/bin/sh
# Install (or remove) Web2Code's desktop integration for the current user:
#   ~/.local/share/applications/web2code.desktop           (menu entry, "Open with" for images)
#   ~/.local/share/icons/hicolor/<N>x<N>/apps/web2code.png  (+ scalable/apps/web2code.svg)
#   ~/.local/share/metainfo/io.github.web2code.Web2Code.metainfo.xml
#
# Usage:  ./install-desktop.sh             from the unpacked bundle (the entry starts this bundle)
#         ./install-desktop.sh --uninstall
#         packaging/linux/install-desktop.sh   from a source checkout (the entry starts `web2code` on PATH)
# Honours XDG_DATA_HOME. Needs no root; nothing outside the user's data folder is touched.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
APP_ID=io.github.web2code.Web2Code
SIZES="16 24 32 48 64 128 256 512"

if [ -x "$HERE/web2code" ] && [ -d "$HERE/share" ]; then      # the unpacked bundle
    SHARE=$HERE/share
    EXEC=$HERE/web2code
    ICONS=$SHARE/icons/hicolor
    icon_png() { echo "$ICONS/${1}x${1}/apps/web2code.png"; }
    ICON_SVG=$ICONS/scalable/apps/web2code.svg
    DESKTOP=$SHARE/applications/web2code.desktop
    METAINFO=$SHARE/metainfo/$APP_ID.metainfo.xml
else                                                          # a source checkout
    ROOT=$(cd "$HERE/../.." && pwd)
    EXEC=web2code
    icon_png() { echo "$ROOT/resources/icons/app/web2code-$1.png"; }
    ICON_SVG=$ROOT/resources/icons/app/web2code.svg
    DESKTOP=$HERE/web2code.desktop
    METAINFO=$HERE/$APP_ID.metainfo.xml
fi

refresh() {
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$DATA/applications" || true
    # only refresh an icon cache that exists (creating one would hide icons installed later without it)
    if [ -f "$DATA/icons/hicolor/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
    fi
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$DATA/applications/web2code.desktop" "$DATA/metainfo/$APP_ID.metainfo.xml" \
          "$DATA/icons/hicolor/scalable/apps/web2code.svg"
    for n in $SIZES; do rm -f "$DATA/icons/hicolor/${n}x${n}/apps/web2code.png"; done
    refresh
    echo "Removed Web2Code's menu entry, icons and metainfo from $DATA"
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "usage: $0 [--uninstall]" >&2
    exit 2
fi

for f in "$DESKTOP" "$METAINFO" "$ICON_SVG"; do
    [ -f "$f" ] || { echo "error: missing $f" >&2; exit 1; }
done

mkdir -p "$DATA/applications" "$DATA/metainfo" "$DATA/icons/hicolor/scalable/apps"
for n in $SIZES; do
    src=$(icon_png "$n")
    [ -f "$src" ] || { echo "error: missing $src" >&2; exit 1; }
    mkdir -p "$DATA/icons/hicolor/${n}x${n}/apps"
    cp "$src" "$DATA/icons/hicolor/${n}x${n}/apps/web2code.png"
done
cp "$ICON_SVG" "$DATA/icons/hicolor/scalable/apps/web2code.svg"
cp "$METAINFO" "$DATA/metainfo/$APP_ID.metainfo.xml"
# Point Exec/TryExec at this bundle (quoted per the Desktop Entry spec when the path has spaces).
case $EXEC in
    *" "*) exec_q="\"$EXEC\"" ;;
    *) exec_q=$EXEC ;;
esac
sed -e "s|^Exec=web2code |Exec=$exec_q |" -e "s|^TryExec=web2code$|TryExec=$EXEC|" \
    "$DESKTOP" > "$DATA/applications/web2code.desktop"
chmod 644 "$DATA/applications/web2code.desktop"
refresh
echo "Installed Web2Code's menu entry ($DATA/applications/web2code.desktop), icons and metainfo; Exec=$EXEC"
