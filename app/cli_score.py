"""``web2code score IMAGE PAGE.html``: the fidelity score on the command line, and scoring for ``generate``.

Rendering needs QtWebEngine: a QApplication on the offscreen platform is made the
first time a page is scored, so the command works without a display.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cli_address
from .errors import Web2CodeError

if TYPE_CHECKING:
    from PIL import Image

    from .ui.render import Renderer
    from .ui.scorer import Scored


class ScoreInputError(Web2CodeError):
    """A missing or unreadable page or image (exit status 2)."""

    exit_code = 2


def add_parser(sub: Any) -> None:
    s = sub.add_parser("score", help="how close a page comes to an image (fidelity, 0 to 1)",
                       description="Render PAGE.html at IMAGE's width and compare it with IMAGE: text blocks "
                                   "(OCR on the image, the DOM on the page), their text, position and colour, "
                                   "and how alike the two look. Sketches are compared by their boxes.")
    s.add_argument("image", type=cli_address.image_source, metavar="IMAGE", help="an image file or a web address")
    s.add_argument("page", type=Path, metavar="PAGE.html")
    add_mode_arg(s, "--mode")
    s.add_argument("--json", action="store_true", help="print one JSON object (key 'score' is the overall)")
    s.add_argument("--details", action="store_true", help="with --json: the matched pairs too")
    cli_address.add_capture_args(s)


def add_mode_arg(p: argparse.ArgumentParser, *aliases: str) -> None:
    p.add_argument(*aliases, "--score-mode", dest="score_mode", choices=("auto", "text", "layout"), default="auto",
                   help="text: compare text blocks (screenshots); layout: compare boxes (sketches); "
                        "auto (default): text when the image has readable text")


_app: Any = None
_made_here = False
_renderer: Renderer | None = None


def qt_ready() -> None:
    """An offscreen QApplication with the preview's URL scheme, made once per process."""
    global _app
    if _app is not None:
        return
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .selftest import prepare_headless_environment

    prepare_headless_environment()
    import PySide6.QtWebEngineWidgets  # noqa: F401  (must precede the QApplication)
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    from .ui.preview import register_scheme

    def quiet(kind: QtMsgType, _context: object, message: str) -> None:
        # offscreen there is no GPU context: Qt's warnings about it are expected, not news
        if kind in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg) or os.environ.get("WEB2CODE_DEBUG"):
            sys.stderr.write(message + "\n")

    qInstallMessageHandler(quiet)
    register_scheme()
    global _made_here
    _made_here = QApplication.instance() is None
    _app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "web2code", "score"])
    atexit.register(shutdown)


def qt_started() -> bool:
    """Whether this command made the offscreen QApplication itself (a capture or a score)."""
    return _made_here


def shutdown() -> None:
    """Free the renderer's pages before its profile and the application go (Chromium insists)."""
    global _renderer
    renderer, _renderer = _renderer, None
    if renderer is not None:
        import shiboken6

        renderer.close()
        shiboken6.delete(renderer)


def shared_renderer() -> Renderer:
    global _renderer
    qt_ready()
    if _renderer is None:
        from .ui.render import Renderer

        _renderer = Renderer()
    return _renderer


def read_page(path: Path) -> str:
    from .htmldom import read_page_bytes

    return read_page_bytes(path, ScoreInputError).decode("utf-8", "replace")


def score_html(image: Image.Image, html: str, mode: str = "auto") -> Scored:
    """Score one page against ``image`` in this process (renderer shared between calls)."""
    from .ui.render import RenderError
    from .ui.scorer import score_sync

    try:
        return score_sync(image, html, mode, renderer=shared_renderer())
    except RenderError as exc:
        raise ScoreInputError(f"could not render the page: {exc}") from None


def cmd_score(args: argparse.Namespace) -> int:
    from .engine.image import load_image

    html = read_page(args.page)
    image = load_image(args.image)
    result = score_html(image, html, args.score_mode)
    fid = result.fidelity
    if args.json:
        obj = fid.to_json(details=args.details)
        obj.update(image=str(args.image), page=str(args.page), render_height=result.rendered.height,
                   truncated=result.rendered.truncated)
        print(json.dumps(obj, ensure_ascii=False))
    else:
        print(f"{fid.score:.3f}  {args.page}")
        for k, v in fid.sub.items():
            print(f"  {k:<12} {v:.3f}  (weight {fid.weights[k]:.2f})")
        print(f"  mode         {fid.mode}; {len(fid.pairs)} of {len(fid.ref_boxes)} image blocks matched, "
              f"{len(fid.cand_boxes)} on the page")
    return 0
