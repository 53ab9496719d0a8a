"""Web addresses wherever the command line takes an image (``web2code generate https://example.org``).

An argument that starts with ``http://`` or ``https://`` is captured before the
command runs: rendered offscreen at ``--capture-width`` (network for this capture
only), full page, saved as a PNG in a private temporary folder (removed at exit)
and handed on like any image file; outputs are named after the address
(``example.org.png`` → ``example.org.html``).
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


class Address(str):
    """An image argument that is a web address (captured before the command runs)."""


def image_source(text: str) -> Path | Address:
    """argparse ``type=`` for image arguments: a file path, or a web address."""
    if text.lower().startswith(("http://", "https://")):
        return Address(text)
    return Path(text)


def add_capture_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("web addresses (http:// or https:// instead of an image)")
    g.add_argument("--capture-width", type=int, default=1280, metavar="PX",
                   help="browser width the page is captured at (default 1280; 320 to 3840)")
    g.add_argument("--capture-timeout", type=float, default=30.0, metavar="S",
                   help="longest wait for the page to load (default 30 s)")


_tmp: Path | None = None


def _folder() -> Path:
    global _tmp
    if _tmp is None:
        _tmp = Path(tempfile.mkdtemp(prefix="web2code-capture-"))
        atexit.register(shutil.rmtree, _tmp, True)
    return _tmp


def _capture(address: str, args: argparse.Namespace, used: set[str]) -> Path:
    from . import cli_score
    from .config import atomic_write_bytes
    from .engine.image import to_png_bytes

    cli_score.qt_ready()
    from .ui.address import capture

    cap = capture(address, getattr(args, "capture_width", 1280), timeout_s=getattr(args, "capture_timeout", 30.0))
    name = cap.name
    stem, n = name[:-4], 2
    while name in used:
        name, n = f"{stem}-{n}.png", n + 1
    used.add(name)
    path = _folder() / name
    atomic_write_bytes(path, to_png_bytes(cap.image))
    if not getattr(args, "json", False):
        print(f"{cap.note}", file=sys.stderr)
    return path


def resolve(args: argparse.Namespace) -> None:
    """Capture every address among ``args.images`` / ``args.image`` and put the PNG's path in its place."""
    used: set[str] = set()
    for attr in ("images", "image"):
        value: Any = getattr(args, attr, None)
        if isinstance(value, list):
            setattr(args, attr, [_capture(v, args, used) if isinstance(v, Address) else v for v in value])
        elif isinstance(value, Address):
            setattr(args, attr, _capture(value, args, used))
