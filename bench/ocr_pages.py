"""Screenshots of the replay corpus and what the OCR reads in them (the image-text draft source's input).

Each page of ``bench/corpus/`` is rendered with the application's offscreen
renderer (``app/ui/render.py``, QtWebEngine, 1280 px wide, the whole page) and
read the way a request reads its input image (``ocrdraft.read_image_text``:
the fidelity module's OCR, lines merged, in reading order, plus the dominant
colours). Cached as JSON next to the PNGs; the replay (bench/replay.py) loads it
without Qt.

    .venv/bin/python -m bench.ocr_pages [--out bench/cache/ocr-pages] [--width 1280]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "cache" / "ocr-pages"
INDEX = "pages.json"


def corpus_pages() -> list[Path]:
    return sorted((HERE / "corpus").glob("*.html"))


def render_and_read(out: Path, width: int = 1280, height: int = 800) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from web2code.app.cli_score import qt_ready, shared_renderer
    from web2code.app.engine.ocrdraft import read_image_text
    from web2code.app.ui.render import render_html_sync

    qt_ready()
    renderer = shared_renderer()
    out.mkdir(parents=True, exist_ok=True)
    pages: dict[str, Any] = {}
    for page in corpus_pages():
        t0 = time.perf_counter()
        shot = render_html_sync(page.read_text(encoding="utf-8"), width, height, renderer=renderer, timeout_s=120)
        t_render = time.perf_counter() - t0
        img = Image.fromarray(np.ascontiguousarray(shot.image))
        png = out / f"{page.stem}.png"
        img.save(png)
        text = read_image_text(img, nice=False)
        pages[page.name] = {"png": png.name, "width": img.width, "height": img.height,
                            "render_s": round(t_render, 3), "ocr_s": round(text.seconds, 3),
                            "blocks": [[t, list(b)] for t, b in text.blocks], "colours": list(text.colours)}
        print(f"{page.name}: {img.width}x{img.height}, {len(text.blocks)} lines, {len(text.colours)} colours, "
              f"OCR {text.seconds:.2f} s", flush=True)
    (out / INDEX).write_text(json.dumps(pages, indent=1))
    return pages


def load_texts(out: Path = DEFAULT_OUT) -> dict[str, Any]:
    """page name -> ImageText, rendering and reading the corpus first when not cached."""
    from web2code.app.engine.ocrdraft import ImageText

    index = out / INDEX
    if not index.is_file():
        import subprocess

        subprocess.run([sys.executable, "-m", "bench.ocr_pages", "--out", str(out)], check=True, cwd=HERE.parent)
    data = json.loads(index.read_text())
    return {name: ImageText(tuple((t, (b[0], b[1], b[2], b[3])) for t, b in d["blocks"]), tuple(d["colours"]),
                            d["ocr_s"]) for name, d in data.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args(argv)
    render_and_read(args.out, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
