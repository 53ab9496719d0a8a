"""``web2code prepare``, and the preparation stage of ``generate`` and ``ask`` (see app/prepare.py).

``web2code prepare IMAGE -o OUT.png`` writes exactly the picture the model is given (before CLIP's
own pad and resize) and prints what was done. ``generate`` and ``ask`` prepare every image on this
side, before it goes to a backend, so the local engine, the worker and a remote server all see the
same prepared picture; ``--no-prepare`` turns the stage off.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import cli_address
from .errors import Web2CodeError

__all__ = ["add_flag", "add_parser", "prepared_input", "run"]


class _Usage(Web2CodeError):
    exit_code = 2


def add_flag(p: argparse.ArgumentParser) -> None:
    """``--no-prepare`` for the commands that send an image to the model."""
    p.add_argument("--no-prepare", action="store_true",
                   help="send the image as it is (no photo preparation: perspective, lighting, crop)")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prepare", help="prepare a photo of a sketch the way generate does, and save it",
        description="Write the picture the model will be given: a photo of a sheet is straightened, evenly lit "
                    "and cropped to the drawing; screenshots and clean digital images are left as they are.")
    p.add_argument("image", type=cli_address.image_source, metavar="IMAGE", help="an image file or a web address")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.png", help="write the prepared image here (PNG)")
    p.add_argument("--corners", metavar="X1,Y1,...,X4,Y4",
                   help="the sheet's four corners in the (upright) image's pixels, instead of detecting them")
    p.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    cli_address.add_capture_args(p)


def _corners(text: str | None) -> list[tuple[float, float]] | None:
    if text is None:
        return None
    try:
        v = [float(x) for x in text.replace(" ", ",").split(",") if x]
    except ValueError:
        v = []
    if len(v) != 8:
        raise _Usage(f"--corners takes eight numbers (x,y of four corners), not {text!r}")
    return [(v[i], v[i + 1]) for i in range(0, 8, 2)]


def prepared_input(path: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    """What to hand a backend for ``path``: the prepared image, or the path itself when preparation is
    off or changed nothing (the backend then reads the file as it always did). Also the record
    (``None`` when off). Raises :class:`~.errors.ImageError` for a file that is no usable image."""
    if getattr(args, "no_prepare", False):
        return path, None
    from .prepare import for_backend

    return for_backend(path)


def run(args: argparse.Namespace) -> int:
    from .config import atomic_write_bytes
    from .engine.image import to_png_bytes
    from .prepare import prepare_source

    if args.output is not None and args.output.suffix.lower() != ".png":
        raise _Usage("-o must name a .png file (the prepared image is saved losslessly)")
    corners = _corners(args.corners)
    result = prepare_source(args.image, corners=corners)
    if args.output is not None:
        try:
            atomic_write_bytes(args.output, to_png_bytes(result.image))
        except OSError as exc:
            raise _Usage(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    if args.json:
        obj = {"image": str(args.image), "output": str(args.output) if args.output else None, **result.to_dict()}
        print(json.dumps(obj, ensure_ascii=False))
    else:
        print(result.note)
        if result.corners:
            print("corners: " + ",".join(f"{x:g},{y:g}" for x, y in result.corners))
    return 0
