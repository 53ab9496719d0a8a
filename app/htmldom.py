"""An HTML element tree with source offsets, built the way a browser builds the DOM for common pages.

Export (:mod:`.export`) converts this tree to JSX and Vue; editing (:mod:`.edit`) uses its
offsets to replace one element of the page's source and leave every other character alone.

Tokenizing is the standard library's :class:`html.parser.HTMLParser` (a real tokenizer,
no regular expressions over markup). Tree construction follows the HTML rules that model
output actually meets, so that an element's path here is the path a renderer reports:

* void elements (``<img>``, ``<br>``...) have no content and no end tag;
* implied end tags: a ``<p>`` is closed by a block start tag, an ``<li>`` by the next
  ``<li>``, likewise ``dt``/``dd``, table rows and cells, ``option``; an end tag closes
  every element opened after its element; a stray end tag is ignored (``</p>`` and
  ``</br>`` make an empty element, as browsers do); the end of the text closes the rest;
* ``<tr>`` directly in a ``<table>`` gets an implied ``<tbody>`` (and a cell an implied row);
* ``<x/>`` closes itself inside SVG and MathML only; in HTML the slash is ignored;
* the body is the ``<body>`` element, or, when the page has none, what follows the
  head's elements (``title``, ``meta``, ``link``, ``style``, ``script``, ``base``).

Not reproduced: the adoption agency for misnested formatting tags (``<b><i></b></i>``)
and foster parenting of content misplaced in tables. A caller that maps a renderer's path
should check the element's tag (see :func:`element_at`).

Offsets are string indexes into the parsed text; a caller that decodes a file with
``surrogateescape`` and encodes it the same way gets every byte back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from pathlib import Path

from .engine.html import _CLOSES_P, _IMPLIED, _SCOPE, VOID_ELEMENTS
from .errors import Web2CodeError


def read_page_bytes(path: Path, error: type[Web2CodeError], *, binary_ok: bool = False) -> bytes:
    """A page file's bytes, or ``error`` with one line (missing, a folder, unreadable, binary data)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not an HTML file") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if not binary_ok and b"\x00" in raw[:4096]:
        raise error(f"{path} is not an HTML file (binary content)")
    return raw

__all__ = [
    "HEAD_ELEMENTS",
    "SVG_ATTRIBUTES",
    "SVG_TAGS",
    "VOID_ELEMENTS",
    "Document",
    "Element",
    "Text",
    "element_at",
    "parse",
    "path_of",
    "start_tag",
]

#: Elements that belong to the head when they come before the body's content.
HEAD_ELEMENTS = frozenset({"title", "meta", "link", "style", "script", "base", "noscript", "template"})

# html.parser lowercases names; SVG's are case-sensitive. The HTML standard's adjustment tables.
_SVG_TAG_NAMES = (
    "altGlyph altGlyphDef altGlyphItem animateColor animateMotion animateTransform clipPath feBlend "
    "feColorMatrix feComponentTransfer feComposite feConvolveMatrix feDiffuseLighting feDisplacementMap "
    "feDistantLight feDropShadow feFlood feFuncA feFuncB feFuncG feFuncR feGaussianBlur feImage feMerge "
    "feMergeNode feMorphology feOffset fePointLight feSpecularLighting feSpotLight feTile feTurbulence "
    "foreignObject glyphRef linearGradient radialGradient textPath"
)
_SVG_ATTRIBUTE_NAMES = (
    "attributeName attributeType baseFrequency baseProfile calcMode clipPathUnits diffuseConstant edgeMode "
    "filterUnits glyphRef gradientTransform gradientUnits kernelMatrix kernelUnitLength keyPoints keySplines "
    "keyTimes lengthAdjust limitingConeAngle markerHeight markerUnits markerWidth maskContentUnits maskUnits "
    "numOctaves pathLength patternContentUnits patternTransform patternUnits pointsAtX pointsAtY pointsAtZ "
    "preserveAlpha preserveAspectRatio primitiveUnits refX refY repeatCount repeatDur requiredExtensions "
    "requiredFeatures specularConstant specularExponent spreadMethod startOffset stdDeviation stitchTiles "
    "surfaceScale systemLanguage tableValues targetX targetY textLength viewBox viewTarget xChannelSelector "
    "yChannelSelector zoomAndPan"
)
#: lowercased SVG element name -> its real name
SVG_TAGS = {n.lower(): n for n in _SVG_TAG_NAMES.split()}
#: lowercased SVG attribute name -> its real name
SVG_ATTRIBUTES = {n.lower(): n for n in _SVG_ATTRIBUTE_NAMES.split()}

_TABLE_SECTIONS = frozenset({"tbody", "thead", "tfoot"})


@dataclass(eq=False)
class Text:
    """Character data (entities decoded; raw for ``script`` and ``style``)."""

    data: str
    parent: Element | None = field(default=None, repr=False)


@dataclass(eq=False)
class Element:
    """One element. ``start``/``end`` is its span in the source (start tag to end tag, inclusive).

    ``content_start``/``content_end`` is the span between the tags. An implied element
    (an implied ``tbody``) has no tags of its own: both spans are its children's.
    """

    tag: str
    attrs: list[tuple[str, str | None]]
    start: int
    content_start: int
    end: int = -1
    content_end: int = -1
    namespace: str = "html"  # "html" | "svg" | "math"
    implied: bool = False
    self_closing: bool = False  # <x/> in SVG or MathML
    children: list[Element | Text] = field(default_factory=list, repr=False)
    parent: Element | None = field(default=None, repr=False)

    @property
    def elements(self) -> list[Element]:
        """The element children (what ``element.children`` is in the DOM)."""
        return [c for c in self.children if isinstance(c, Element)]

    def attr(self, name: str) -> str | None:
        for k, v in self.attrs:
            if k == name:
                return "" if v is None else v
        return None

    def has_attr(self, name: str) -> bool:
        return any(k == name for k, _ in self.attrs)

    def iter(self) -> Iterator[Element]:
        """This element and its descendants, in document order."""
        yield self
        for c in self.children:
            if isinstance(c, Element):
                yield from c.iter()

    def text(self) -> str:
        """The concatenated text of all descendants (``textContent``)."""
        return "".join(c.data if isinstance(c, Text) else c.text() for c in self.children)

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.end

    @property
    def real_tag(self) -> str:
        """The tag with SVG's case restored (``lineargradient`` -> ``linearGradient``)."""
        return SVG_TAGS.get(self.tag, self.tag) if self.namespace == "svg" else self.tag


@dataclass(eq=False)
class Document:
    source: str
    root: Element  # a "#document" element holding the top-level nodes

    def find(self, tag: str) -> Element | None:
        for el in self.root.iter():
            if el.tag == tag:
                return el
        return None

    @property
    def head(self) -> Element | None:
        return self.find("head")

    def body_children(self) -> list[Element]:
        """The body's element children, as a browser's ``document.body.children``."""
        body = self.body_element()
        if body is not None:
            return body.elements
        container = self.find("html") or self.root
        return [el for el in self._implied_body(container) if isinstance(el, Element)]

    def body_nodes(self) -> list[Element | Text]:
        """The body's child nodes (elements and text)."""
        body = self.body_element()
        if body is not None:
            return list(body.children)
        return self._implied_body(self.find("html") or self.root)

    def body_element(self) -> Element | None:
        for el in self.root.elements:
            if el.tag == "body":
                return el
            if el.tag == "html":
                for child in el.elements:
                    if child.tag == "body":
                        return child
        return None

    @staticmethod
    def _implied_body(container: Element) -> list[Element | Text]:
        out: list[Element | Text] = []
        started = False
        for node in container.children:
            if not started:
                if isinstance(node, Text):
                    if not node.data.strip():
                        continue
                elif node.tag == "head" or node.tag in HEAD_ELEMENTS:
                    continue
                started = True
            out.append(node)
        return out


class _Builder(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.root = Element("#document", [], 0, 0)
        self.stack: list[Element] = [self.root]
        self._base = 0  # offset of rawdata[0] in source
        self._tag_at = 0
        self._closed_by_end_tag: Element | None = None

    # -- positions
    def parse_starttag(self, i: int) -> int:
        self._tag_at = self._base + i
        return super().parse_starttag(i)

    def parse_endtag(self, i: int) -> int:
        self._tag_at = self._base + i
        self._closed_by_end_tag = None
        k = super().parse_endtag(i)
        el = self._closed_by_end_tag
        if el is not None and k > 0:
            el.end = self._base + k
            self._closed_by_end_tag = None
        return k

    def close(self) -> None:
        self._base = len(self.source) - len(self.rawdata)
        super().close()
        n = len(self.source)
        for el in self.stack[1:]:
            if el.content_end < 0:
                el.content_end = n
            if el.end < 0:
                el.end = n
        self.stack[1:] = []
        self.root.end = self.root.content_end = n

    # -- tree
    @property
    def top(self) -> Element:
        return self.stack[-1]

    def _find(self, targets: frozenset[str], stop: frozenset[str]) -> int:
        for k in range(len(self.stack) - 1, 0, -1):
            tag = self.stack[k].tag
            if tag in targets:
                return k
            if tag in stop:
                return -1
        return -1

    def _close_from(self, index: int, at: int) -> None:
        """Close the elements from ``stack[index]`` up, implicitly, at offset ``at``."""
        for el in self.stack[index:]:
            if el.content_end < 0:
                el.content_end = at
            if el.end < 0:
                el.end = at
        del self.stack[index:]

    def _namespace(self, tag: str) -> str:
        parent = self.top
        if tag == "svg":
            return "svg"
        if tag == "math":
            return "math"
        if parent.namespace == "svg" and parent.tag != "foreignobject":
            return "svg"
        if parent.namespace == "math":
            return "math"
        return "html"

    def _add(self, el: Element) -> None:
        el.parent = self.top
        self.top.children.append(el)

    def _open_implied(self, tag: str, at: int) -> None:
        el = Element(tag, [], at, at, implied=True)
        self._add(el)
        self.stack.append(el)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], *, self_closing: bool) -> None:
        start = self._tag_at
        tag_end = start + len(self.get_starttag_text() or "")
        namespace = self._namespace(tag)
        if namespace == "html":
            if tag in _CLOSES_P:
                k = self._find(frozenset({"p"}), _SCOPE)
                if k > 0:
                    self._close_from(k, start)
            implied = _IMPLIED.get(tag)
            if implied is not None:
                k = self._find(*implied)
                if k > 0:
                    self._close_from(k, start)
            if tag in ("td", "th") and self.top.tag in ({"table"} | _TABLE_SECTIONS):
                if self.top.tag == "table":
                    self._open_implied("tbody", start)
                self._open_implied("tr", start)
            elif tag == "tr" and self.top.tag == "table":
                self._open_implied("tbody", start)
        el = Element(tag, attrs, start, tag_end, namespace=namespace)
        self._add(el)
        closes_itself = tag in VOID_ELEMENTS if namespace == "html" else self_closing
        if closes_itself:
            el.content_end = el.end = tag_end
            el.self_closing = self_closing
            if self_closing and tag in self.CDATA_CONTENT_ELEMENTS:
                self.clear_cdata_mode()
            return
        self.stack.append(el)
        if self_closing and tag in self.CDATA_CONTENT_ELEMENTS:
            self.set_cdata_mode(tag)  # "<script/>" opens a script in HTML, as in browsers

    def handle_endtag(self, tag: str) -> None:
        at = self._tag_at
        if tag in ("body", "html"):
            # Browsers keep the body open: what follows still goes into it.
            k = self._find(frozenset({tag}), frozenset())
            if k > 0:
                inner = k + 1
                if tag == "html":
                    b = self._find(frozenset({"body"}), frozenset())
                    inner = b + 1 if b > 0 else inner
                self._close_from(inner, at)
                self.stack[k].content_end = at
                self._closed_by_end_tag = self.stack[k]
            return
        for k in range(len(self.stack) - 1, 0, -1):
            if self.stack[k].tag == tag:
                self._close_from(k + 1, at)
                el = self.stack.pop()
                el.content_end = at
                self._closed_by_end_tag = el
                return
        if tag in ("p", "br"):  # browsers make an element of these stray end tags
            el = Element(tag, [], at, at)
            self._add(el)
            el.content_end = at
            self._closed_by_end_tag = el

    def handle_data(self, data: str) -> None:
        children = self.top.children
        if children and isinstance(children[-1], Text):
            children[-1].data += data  # text split by a comment (or held back by the parser) is one node
        else:
            children.append(Text(data, self.top))


def parse(source: str) -> Document:
    """The element tree of ``source`` (see the module notes)."""
    builder = _Builder(source)
    builder.feed(source)
    builder.close()
    return Document(source, builder.root)


def element_at(doc: Document, path: Sequence[int]) -> Element | None:
    """The element at ``path``: indexes into ``element.children``, starting with ``document.body``'s.

    ``None`` when the path leads nowhere.
    """
    children = doc.body_children()
    el: Element | None = None
    for index in path:
        if not 0 <= index < len(children):
            return None
        el = children[index]
        children = el.elements
    return el


def path_of(doc: Document, target: Element) -> list[int] | None:
    """The path of ``target`` from the body (the inverse of :func:`element_at`), ``None`` if outside it."""
    top = doc.body_children()
    chain: list[Element] = []
    el: Element | None = target
    while el is not None and el not in top:
        chain.append(el)
        el = el.parent
    if el is None:
        return None
    chain.append(el)
    path: list[int] = []
    siblings = top
    for node in reversed(chain):
        path.append(next(i for i, s in enumerate(siblings) if s is node))
        siblings = node.elements
    return path


def start_tag(el: Element, attrs: Sequence[tuple[str, str | None]], source: str = "") -> str:
    """A start tag for ``el`` with ``attrs`` (values quoted and escaped; SVG names' case restored).

    With the page's ``source``, a ``/>`` the element was written with is kept.
    """

    def one(name: str, value: str | None) -> str:
        real = SVG_ATTRIBUTES.get(name, name) if el.namespace == "svg" else name
        return real if value is None else f'{real}="{escape(value, quote=True)}"'

    slash = el.self_closing or (bool(source) and source[el.start:el.content_start].endswith("/>"))
    return "<" + el.real_tag + "".join(" " + one(k, v) for k, v in attrs) + (" />" if slash else ">")
