"""``web2code export`` and ``web2code edit``: take a page into a project, or change one part of it.

    web2code export PAGE.html --to react|vue|zip|html [-o OUT]
    web2code edit PAGE.html IMAGE --box x,y,w,h (--element PATH | --boxes BOXES.json)
                  [--instruction TEXT] -o OUT.html [model and sampling options]

``export`` writes next to the page unless ``-o`` says otherwise (``-o -`` prints a text
format); what it dropped or left alone is printed as ``note:`` lines on stderr.
``edit`` sends the crop of IMAGE at the box (image pixels) to the model and puts its answer
in place of the element at PATH (child indexes from the body, as in 0/2/1); the rest of the
page is written back byte for byte. ``--boxes`` (the render's element boxes, JSON) picks the
element that matches the box instead. ``--json`` prints a record of the edit.

Mistakes print one line and exit 2; nothing is written unless the whole result is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COMMANDS = ("export", "edit")


def add_parsers(sub: Any) -> None:
    """Register the subcommands on ``build_parser()``'s subparsers."""
    from .cli import _add_model_args, _add_sampling_args
    from .export import FORMATS

    e = sub.add_parser("export", help="export a page: self-contained HTML, ZIP, React or Vue component",
                       description="Export an HTML page for a project. Local assets next to the page are "
                                   "inlined (html) or put in assets/ (zip); remote URLs stay as they are.")
    e.add_argument("page", type=Path, metavar="PAGE.html")
    e.add_argument("--to", required=True, choices=FORMATS, help="the format")
    e.add_argument("-o", "--output", metavar="OUT",
                   help="where to write (default: next to the page; '-' prints html, react or vue)")

    d = sub.add_parser("edit", help="regenerate or change one element of a page from a region of its image",
                       description="Send the crop of IMAGE at --box to the model and replace one element of "
                                   "the page with its answer; everything else stays byte-identical.")
    d.add_argument("page", type=Path, metavar="PAGE.html")
    d.add_argument("image", type=Path, metavar="IMAGE", help="the input the page was generated from")
    d.add_argument("--box", required=True, metavar="X,Y,W,H", help="the region, in the image's pixels")
    d.add_argument("--element", metavar="PATH", help="the element to replace: child indexes from the body (0/2/1)")
    d.add_argument("--boxes", type=Path, metavar="BOXES.json",
                   help='the render\'s element boxes: {"width": W, "boxes": [{"path", "tag", "x", "y", "w", "h"}]}; '
                        "the element that matches --box best is replaced")
    d.add_argument("--instruction", default=None, metavar="TEXT",
                   help="change the element as told (best-effort: the model was trained for image to HTML)")
    d.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.html")
    _add_model_args(d)
    _add_sampling_args(d, instruction=False)


def run(args: argparse.Namespace) -> int:
    if args.command == "export":
        return _export(args)
    return _edit(args)


def _note(lines: list[str]) -> None:
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    from .cli import UsageError
    from .config import atomic_write_bytes
    from .export import default_output, export_page

    page: Path = args.page
    if args.output == "-" and args.to == "zip":
        raise UsageError("a ZIP cannot go to the terminal: give -o OUT.zip")
    result = export_page(page, args.to)
    if args.output == "-":
        sys.stdout.write(result.data.decode("utf-8"))
        _note(result.notes)
        return 0
    out = Path(args.output) if args.output else default_output(page, args.to)
    if out.exists() and out.resolve() == page.resolve():
        raise UsageError(f"{out} is the page itself: choose another -o")
    if out.is_dir():
        raise UsageError(f"{out} is a folder: give a file name with -o")
    try:
        atomic_write_bytes(out, result.data)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    _note(result.notes)
    print(out)
    return 0


def _parse_box(text: str) -> tuple[float, float, float, float]:
    from .cli import UsageError

    parts = text.replace(" ", "").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or min(values) < 0:
        raise UsageError(f"--box is x,y,w,h in image pixels with a positive width and height, not {text!r}")
    return values[0], values[1], values[2], values[3]


def _boxes(path: Path) -> tuple[float, list[Any]]:
    from .cli import UsageError
    from .edit import Box

    try:
        data = json.loads(path.read_text("utf-8"))
        width = float(data["width"])
        boxes = [Box.from_dict(b) for b in data["boxes"]]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a boxes file ({{\"width\": W, \"boxes\": [...]}}): {exc}") from None
    if width <= 0:
        raise UsageError(f"{path}: the render width must be positive")
    return width, boxes


def _edit(args: argparse.Namespace) -> int:
    from .cli import UsageError, _interrupts, _params, make_backend
    from .edit import element_for_box, locate, parse_path, read_source, write_source
    from .engine.image import load_image
    from .regions import edit_region

    box = _parse_box(args.box)
    if bool(args.element) == bool(args.boxes):
        raise UsageError("give the element to replace: --element PATH or --boxes BOXES.json (one of them)")
    source = read_source(args.page)
    image = load_image(args.image)
    tag = None
    if args.element:
        path = parse_path(args.element)
    else:
        width, boxes = _boxes(args.boxes)
        s = width / image.width
        found = element_for_box(boxes, (box[0] * s, box[1] * s, box[2] * s, box[3] * s))
        path, tag = list(found.path), found.tag or None
    locate(source, path, tag)  # a wrong path is reported before the model loads
    if args.output.is_dir():
        raise UsageError(f"{args.output} is a folder: give a file name with -o")
    params = _params(args, None)
    interrupts = _interrupts(args)
    interrupts.install()
    with make_backend(args) as backend, interrupts.cancelling(backend.cancel):
        interrupts.check()
        on_token = None
        if args.stream and not args.json:
            def on_token(text: str) -> None:
                sys.stdout.write(text)
                sys.stdout.flush()
        result = edit_region(backend, source, image, box, path, instruction=args.instruction, params=params,
                             tag=tag, on_token=on_token)
    interrupts.check()  # an interrupted edit writes nothing
    write_source(args.output, result.edit.after)
    _note(result.edit.notes)
    if args.json:
        record = result.record()
        record["output"] = str(args.output)
        print(json.dumps(record, ensure_ascii=False))
    else:
        if args.stream:
            print()
        print(result.edit.diff(args.page.name), end="")
    return 0
