"""Render the application icon (resources/icons/app/web2code.svg) to PNGs with Qt's SVG renderer.

    .venv/bin/python packaging/render_icons.py [--out DIR]

Writes web2code-<N>.png for N in 16 24 32 48 64 128 256 512 next to the SVG
(or into --out) and, for Windows and macOS builds, web2code.ico (16-256) in
packaging/build/. Runs without a display (QT_QPA_PLATFORM=offscreen).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "app" / "web2code.svg"


def render(svg: Path, out_dir: Path, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"error: {svg} is not a valid SVG")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n in sizes:
        img = QImage(n, n, QImage.Format.Format_ARGB32_Premultiplied)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(p)
        p.end()
        target = out_dir / f"web2code-{n}.png"
        if not img.save(str(target), "PNG"):
            raise SystemExit(f"error: cannot write {target}")
        written.append(target)
    return written


def write_ico(pngs: list[Path], target: Path) -> None:
    """A Windows .ico from the 16-256 px PNGs (Pillow)."""
    from PIL import Image

    biggest = max((p for p in pngs if int(p.stem.rsplit("-", 1)[1]) <= 256),
                  key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    sizes = [(int(p.stem.rsplit("-", 1)[1]),) * 2 for p in pngs if int(p.stem.rsplit("-", 1)[1]) <= 256]
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(biggest).save(target, sizes=sizes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--svg", type=Path, default=SVG)
    ap.add_argument("--out", type=Path, default=SVG.parent)
    ap.add_argument("--ico", type=Path, default=ROOT / "packaging" / "build" / "web2code.ico")
    args = ap.parse_args()
    pngs = render(args.svg, args.out)
    write_ico(pngs, args.ico)
    print(f"wrote {len(pngs)} PNGs to {args.out} and {args.ico}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
