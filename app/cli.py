"""The ``web2code`` command: the desktop application, and subcommands for scripts.

``web2code`` alone starts the application. User mistakes print one line on
stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import Web2CodeError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="web2code",
        description="Web2Code: turn a picture of a webpage into HTML, privately, on this machine.",
    )
    p.add_argument("--version", action="version", version=f"web2code {__version__}")
    p.add_argument("image", nargs="?", help="an image to open in the application")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .ui.app import run_gui

        return run_gui(image=args.image)
    except Web2CodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
