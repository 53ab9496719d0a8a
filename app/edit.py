"""Edit one part of a page: find an element's source span, replace it, keep every other byte.

* :func:`locate` maps a DOM path (as a renderer reports it: indexes into
  ``element.children`` from ``document.body``, see :data:`DOM_PATH_JS`) to the element's
  exact span in the page's source (:mod:`.htmldom`, the standard library's tokenizer
  with offsets; void elements, implied end tags and unclosed elements handled).
* :func:`splice` replaces a span; the text before and after it is kept as it is.
  Pages are read and written with :func:`read_source` / :func:`write_source`
  (UTF-8 with ``surrogateescape``), so even a byte that is not UTF-8 survives.
* :class:`History` keeps every version (undo/redo restore the exact text) and
  :func:`unified_diff` shows a change.
* :func:`extract_replacement` takes the model's answer down to the element's new HTML.
* :func:`fill_images` puts crops of the input image into ``<img>`` placeholders (and,
  optionally, empty boxes) at the boxes where the render shows them, as ``data:`` URIs.
"""

from __future__ import annotations

import base64
import difflib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from .engine.html import extract_html
from .errors import Web2CodeError
from .htmldom import Element, Text, element_at, parse, read_page_bytes, start_tag

__all__ = [
    "DOM_PATH_JS",
    "Box",
    "EditError",
    "Filled",
    "History",
    "crop_for_box",
    "extract_replacement",
    "fill_images",
    "format_path",
    "locate",
    "parse_path",
    "read_source",
    "splice",
    "unified_diff",
    "write_source",
]

#: A script for the renderer: ``web2codePath(el)`` is the path :func:`locate` takes.
DOM_PATH_JS = """
function web2codePath(el) {
  const path = [];
  while (el && el !== document.body && el.parentElement) {
    path.unshift(Array.prototype.indexOf.call(el.parentElement.children, el));
    el = el.parentElement;
  }
  return el === document.body ? path : null;
}
"""


class EditError(Web2CodeError):
    """The edit cannot be made (no such element, a box outside the image, a bad path)."""

    exit_code = 2


# ---------------------------------------------------------------- files
def read_source(path: Path) -> str:
    """The page's text, every byte kept (``surrogateescape`` for bytes that are not UTF-8)."""
    return read_page_bytes(path, EditError, binary_ok=True).decode("utf-8", errors="surrogateescape")


def write_source(path: Path, text: str) -> None:
    """Write atomically (a temporary file renamed into place), the bytes :func:`read_source` read."""
    from .config import atomic_write_bytes

    try:
        atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))
    except OSError as exc:
        raise EditError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- paths and spans
def parse_path(text: str) -> list[int]:
    """``"0/2/1"`` (or ``0,2,1``, ``0.2.1``, ``[0, 2, 1]``) -> ``[0, 2, 1]``."""
    cleaned = text.strip().strip("[]")
    parts = [p for p in re.split(r"[/,.\s>]+", cleaned) if p]
    if parts and parts[0].lower() == "body":
        parts = parts[1:]
    if not parts or not all(p.isdigit() for p in parts):
        raise EditError(f"an element path is child indexes from the body, like 0/2/1, not {text!r}")
    return [int(p) for p in parts]


def format_path(path: Sequence[int]) -> str:
    return "/".join(str(i) for i in path)


def locate(source: str, path: Sequence[int], tag: str | None = None) -> Element:
    """The element at ``path`` (see :data:`DOM_PATH_JS`); its ``span`` is its source.

    With ``tag`` (what the renderer reported), a page whose tree here differs from the
    renderer's at that path is refused rather than edited in the wrong place.
    """
    el = element_at(parse(source), path)
    if el is None:
        raise EditError(f"the page has no element at {format_path(path) or 'the body'}")
    if tag is not None and el.tag != tag.lower():
        raise EditError(f"the element at {format_path(path)} is <{el.tag}> in the source but <{tag.lower()}> "
                        "in the render: the page changed, or the browser built it differently")
    if el.implied:
        raise EditError(f"the <{el.tag}> at {format_path(path)} is implied by the browser, not written in the "
                        "page: select an element inside it")
    return el


def splice(source: str, span: tuple[int, int], replacement: str) -> str:
    """``source`` with ``span`` replaced; everything outside it is unchanged."""
    start, end = span
    if not 0 <= start <= end <= len(source):
        raise EditError(f"span {start}-{end} is outside the page (0-{len(source)})")
    return source[:start] + replacement + source[end:]


def unified_diff(old: str, new: str, name: str = "page.html", context: int = 3) -> str:
    """A unified diff of two versions, for display."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{name}", tofile=f"b/{name}", n=context)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def extract_replacement(raw: str) -> str:
    """The new HTML of an element from the model's answer.

    The answer goes through :func:`~.engine.html.extract_html` (fences and prose dropped); when the
    model wrote a whole page, the body's content is taken (or what follows the head).
    """
    html = extract_html(raw)
    doc = parse(html)
    body = doc.body_element()
    if body is not None:
        return html[body.content_start:body.content_end].strip()
    nodes = doc.body_nodes()
    if not nodes:
        return ""
    first, last = nodes[0], nodes[-1]
    start = first.start if isinstance(first, Element) else _text_start(html, doc, first)
    end = last.end if isinstance(last, Element) else len(html)
    container = doc.find("html")
    if container is not None and container.content_end >= 0:
        end = min(end, container.content_end)
    return html[start:end].strip()


def _text_start(html: str, doc: Any, node: Text) -> int:
    """Where a leading text node of the implied body starts: after the last head element before it."""
    start = 0
    for el in doc.root.iter():
        if (el.tag in ("head", "title", "meta", "link", "style", "script", "base") and el.end >= 0
                and html.find(node.data, el.end) >= 0):
            start = max(start, el.end)
    idx = html.find(node.data, start)
    return idx if idx >= 0 else start


# ---------------------------------------------------------------- history
@dataclass(frozen=True)
class Version:
    text: str
    label: str


class History:
    """Versions of the page; undo and redo move between them and restore the exact text.

    A new edit after an undo drops the versions that were undone (as editors do).
    """

    def __init__(self, text: str, label: str = "generated") -> None:
        self._versions: list[Version] = [Version(text, label)]
        self._index = 0

    @property
    def current(self) -> str:
        return self._versions[self._index].text

    @property
    def label(self) -> str:
        return self._versions[self._index].label

    @property
    def versions(self) -> list[Version]:
        return list(self._versions)

    @property
    def index(self) -> int:
        return self._index

    def push(self, text: str, label: str) -> None:
        if text == self.current:
            return
        del self._versions[self._index + 1:]
        self._versions.append(Version(text, label))
        self._index += 1

    def can_undo(self) -> bool:
        return self._index > 0

    def can_redo(self) -> bool:
        return self._index + 1 < len(self._versions)

    def undo(self) -> str:
        if not self.can_undo():
            raise EditError("nothing to undo")
        self._index -= 1
        return self.current

    def redo(self) -> str:
        if not self.can_redo():
            raise EditError("nothing to redo")
        self._index += 1
        return self.current

    def diff(self, name: str = "page.html") -> str:
        """The last step's change (empty for the first version)."""
        if self._index == 0:
            return ""
        return unified_diff(self._versions[self._index - 1].text, self.current, name)


# ---------------------------------------------------------------- images from the input
@dataclass(frozen=True)
class Box:
    """An element's box in the render, in CSS pixels, as the renderer reports it."""

    path: tuple[int, ...]
    tag: str
    x: float
    y: float
    w: float
    h: float
    broken: bool = False  # an <img> whose image did not load (naturalWidth 0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Box:
        try:
            raw_path = data["path"]
            path = parse_path(raw_path) if isinstance(raw_path, str) else [int(i) for i in raw_path]
            return cls(tuple(path), str(data.get("tag", "")).lower(), float(data["x"]), float(data["y"]),
                       float(data["w"]), float(data["h"]), bool(data.get("broken", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EditError(f"a box needs path, x, y, w and h: {exc}") from None


@dataclass(frozen=True)
class Filled:
    path: tuple[int, ...]
    tag: str
    crop: tuple[int, int, int, int]  # left, top, right, bottom in image pixels
    kind: str  # "img" (a placeholder's src) or "box" (an <img> put into an empty element)


_PLACEHOLDER_HOSTS = ("placehold.co", "placeholder.com", "placehold.it", "dummyimage.com", "picsum.photos",
                      "fakeimg.pl", "loremflickr.com", "placekitten.com", "placeimg.com", "lorempixel.com",
                      "source.unsplash.com", "placebear.com", "baconmockup.com")
_EMPTY_BOX_TAGS = frozenset({"div", "span", "figure", "section", "article", "aside", "a", "td", "picture", "header",
                             "main", "li"})


def crop_for_box(image: Image.Image, render_width: float, box: tuple[float, float, float, float],
                 ) -> tuple[int, int, int, int] | None:
    """The image-pixel rectangle (left, top, right, bottom) of a render-pixel box, clamped to the image;
    ``None`` when nothing of it is in the image."""
    if render_width <= 0:
        raise EditError("the render width must be positive")
    s = image.width / render_width
    x, y, w, h = box
    left = max(0, round(x * s))
    top = max(0, round(y * s))
    right = min(image.width, round((x + w) * s))
    bottom = min(image.height, round((y + h) * s))
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


def image_data_uri(image: Image.Image, fmt: str = "auto") -> str:
    """A ``data:`` URI of ``image``: PNG for small or transparent crops, JPEG for large photos."""
    if fmt == "auto":
        fmt = "PNG" if image.mode in ("RGBA", "LA", "P") or image.width * image.height <= 160_000 else "JPEG"
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, "JPEG", quality=88)
        mime = "image/jpeg"
    else:
        image.save(buf, "PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def is_placeholder_src(src: str | None, base: Path | None = None) -> bool:
    """Whether an ``<img>``'s ``src`` shows no real picture: missing, empty, ``#``, a placeholder
    service, or a relative file that is not there (any relative file when the page has no folder)."""
    if src is None:
        return True
    src = src.strip()
    if not src or src in ("#", "about:blank"):
        return True
    parts = urlsplit(src)
    scheme = parts.scheme.lower()
    if scheme == "data":
        return False
    if scheme in ("http", "https") or parts.netloc:
        host = (parts.hostname or "").lower()
        return any(host == h or host.endswith("." + h) for h in _PLACEHOLDER_HOSTS)
    if scheme:
        return scheme != "blob"
    if base is None:
        return True
    root = base.resolve()
    try:
        path = (root / parts.path).resolve()
    except (OSError, ValueError):
        return True
    return not path.is_relative_to(root) or not path.is_file()


def _is_empty(el: Element) -> bool:
    return not el.elements and not any(isinstance(c, Text) and c.data.strip() for c in el.children)


def fill_images(source: str, image: Image.Image, render_width: float, boxes: Iterable[Box | Mapping[str, Any]],
                *, empty_boxes: bool = False, base: Path | None = None, min_size: float = 16,
                fmt: str = "auto") -> tuple[str, list[Filled]]:
    """Fill ``<img>`` placeholders (and with ``empty_boxes``, empty elements) with crops of ``image``.

    ``boxes`` are the render's element boxes in CSS pixels of a render ``render_width`` wide;
    each crop is taken from the same place in the input (scaled to its pixels). Only the
    filled elements change (each is replaced with :func:`splice`); a box whose path does not
    lead to an element of that tag in the source is skipped.
    """
    doc = parse(source)
    edits: dict[int, tuple[int, int, str, Filled]] = {}
    for item in boxes:
        box = item if isinstance(item, Box) else Box.from_dict(item)
        if box.w < min_size or box.h < min_size:
            continue
        el = element_at(doc, box.path)
        if el is None or el.implied or (box.tag and el.tag != box.tag) or el.start in edits:
            continue
        is_img = el.tag == "img" and el.namespace == "html"
        if is_img:
            if not (box.broken or is_placeholder_src(el.attr("src"), base)):
                continue
        elif not (empty_boxes and el.tag in _EMPTY_BOX_TAGS and el.namespace == "html" and _is_empty(el)
                  and el.content_start < el.end):
            continue
        rect = crop_for_box(image, render_width, (box.x, box.y, box.w, box.h))
        if rect is None:
            continue
        uri = image_data_uri(image.crop(rect), fmt)
        if is_img:
            attrs: list[tuple[str, str | None]] = []
            for k, v in el.attrs:
                if k != "srcset":  # a srcset would win over the new src
                    attrs.append((k, uri if k == "src" else v))
            if not el.has_attr("src"):
                attrs.insert(0, ("src", uri))
            if not el.has_attr("alt"):
                attrs.append(("alt", ""))
            edits[el.start] = (el.start, el.content_start, start_tag(el, attrs, source),
                               Filled(box.path, el.tag, rect, "img"))
        else:
            tag = (f'<img src="{uri}" alt="" style="display:block;width:100%;height:100%;object-fit:cover">')
            edits[el.start] = (el.content_start, el.content_end, tag, Filled(box.path, el.tag, rect, "box"))
    filled: list[Filled] = []
    for start, end, text, info in sorted(edits.values(), key=lambda e: e[0], reverse=True):
        source = splice(source, (start, end), text)
        filled.append(info)
    filled.reverse()
    return source, filled


# ---------------------------------------------------------------- choosing an element for a box
def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def element_for_box(boxes: Iterable[Box | Mapping[str, Any]], box: tuple[float, float, float, float]) -> Box:
    """The element whose render box matches ``box`` best (both in render pixels); deeper wins a tie."""
    best: tuple[float, int, Box] | None = None
    for item in boxes:
        b = item if isinstance(item, Box) else Box.from_dict(item)
        score = box_iou((b.x, b.y, b.w, b.h), box)
        if score > 0 and (best is None or (score, len(b.path)) > best[:2]):
            best = (score, len(b.path), b)
    if best is None:
        raise EditError("no element of the page lies in that box")
    return best[2]


@dataclass
class Edit:
    """One applied edit: what changed and where."""

    before: str
    after: str
    path: tuple[int, ...]
    tag: str
    span: tuple[int, int]  # the replaced element's span in ``before``
    replacement: str
    label: str
    notes: list[str] = field(default_factory=list)

    @property
    def new_span(self) -> tuple[int, int]:
        return self.span[0], self.span[0] + len(self.replacement)

    def diff(self, name: str = "page.html") -> str:
        return unified_diff(self.before, self.after, name)


def replace_element(source: str, path: Sequence[int], replacement: str, *, tag: str | None = None,
                    label: str = "edit") -> Edit:
    """Replace the element at ``path`` with ``replacement``; everything else stays as it is."""
    el = locate(source, path, tag)
    after = splice(source, el.span, replacement)
    return Edit(source, after, tuple(path), el.tag, el.span, replacement, label)
