"""Get the HTML document out of what the model wrote, and a renderable prefix while it writes.

* :func:`extract_html` takes the raw generated text — a bare document, a
  document wrapped in prose, one or more markdown fences (possibly unclosed),
  or a cut-off answer — and returns the HTML document. Text with no HTML in it
  comes back escaped inside a minimal ``<pre>`` document, so the preview and
  the saved file are always HTML.
* :func:`renderable_prefix` (and the incremental :class:`PreviewRenderer` /
  :class:`LivePreview` the GUI uses while tokens stream in) turns an unfinished document into one a
  browser renders as "the page so far": the incomplete trailing tag, entity or
  comment is dropped, an unfinished ``<script>`` is dropped whole (half a
  script is a syntax error at best), an unfinished ``<style>`` is kept up to
  its last complete rule, and every element still open is closed in order.

Tokenizing is the standard library's :class:`html.parser.HTMLParser`, fed
incrementally: it already holds back exactly the constructs that are not
complete yet, which is what a live preview must not show.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = [
    "VOID_ELEMENTS",
    "LivePreview",
    "PreviewRenderer",
    "extract_html",
    "live_preview",
    "renderable_prefix",
]

VOID_ELEMENTS = frozenset({
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
})

# Start tags that close an open <p> (HTML's "close a p element in button scope").
_CLOSES_P = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "listing", "main", "menu", "nav", "ol", "p", "pre", "section",
    "summary", "table", "ul", "li", "dd", "dt", "plaintext", "xmp",
})
# Elements that bound the search for an implicitly closed element.
_SCOPE = frozenset({
    "applet", "caption", "html", "table", "td", "th", "marquee", "object", "template", "button", "body",
})
_LIST_SCOPE = _SCOPE | {"ul", "ol", "menu"}
# tag -> (elements it closes when one is open, elements that stop the search)
_IMPLIED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), _LIST_SCOPE),
    "dt": (frozenset({"dt", "dd"}), _SCOPE | {"dl"}),
    "dd": (frozenset({"dt", "dd"}), _SCOPE | {"dl"}),
    # Table parts look through open cells: a new row closes the cell and the row.
    "tr": (frozenset({"tr"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "td": (frozenset({"td", "th"}), frozenset({"table", "tr"})),
    "th": (frozenset({"td", "th"}), frozenset({"table", "tr"})),
    "thead": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tbody": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tfoot": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "option": (frozenset({"option"}), _SCOPE | {"select", "datalist", "optgroup"}),
    "optgroup": (frozenset({"option", "optgroup"}), _SCOPE | {"select"}),
}
_P_ONLY = frozenset({"p"})


class _Open:
    __slots__ = ("content_start", "start", "tag")

    def __init__(self, tag: str, start: int, content_start: int) -> None:
        self.tag = tag
        self.start = start  # offset of "<tag"
        self.content_start = content_start  # offset just after the start tag's ">"


class _Scanner(HTMLParser):
    """Tracks the open elements, with source offsets, of the text fed so far."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Open] = []
        self.fed = 0  # characters fed in total
        self._base = 0  # absolute offset of index 0 of the parser's current buffer
        self._tag_at = 0

    def feed(self, data: str) -> None:
        self._base = self.fed - len(self.rawdata)
        self.fed += len(data)
        super().feed(data)

    @property
    def consumed(self) -> int:
        """Offset up to which everything is complete; the rest is held back by the parser."""
        return self.fed - len(self.rawdata)

    def parse_starttag(self, i: int) -> int:
        self._tag_at = i
        return super().parse_starttag(i)

    def _pop_to(self, index: int) -> None:
        del self.stack[index:]

    def _find(self, targets: frozenset[str], stop: frozenset[str]) -> int:
        for k in range(len(self.stack) - 1, -1, -1):
            tag = self.stack[k].tag
            if tag in targets:
                return k
            if tag in stop:
                return -1
        return -1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _CLOSES_P:
            k = self._find(_P_ONLY, _SCOPE)
            if k >= 0:
                self._pop_to(k)
        implied = _IMPLIED.get(tag)
        if implied is not None:
            k = self._find(*implied)
            if k >= 0:
                self._pop_to(k)
        if tag in VOID_ELEMENTS:
            return
        start = self._base + self._tag_at
        text = self.get_starttag_text() or ""
        self.stack.append(_Open(tag, start, start + len(text)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # "<x/>": complete in itself (SVG/MathML); for HTML elements browsers would ignore
        # the slash, but model output that writes it means an empty element.
        return

    def handle_endtag(self, tag: str) -> None:
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k].tag == tag:
                self._pop_to(k)
                return
        # A stray end tag: browsers ignore it, and so does the stack.


class PreviewRenderer:
    """Incremental :func:`renderable_prefix` for a growing text.

    Each :meth:`update` parses only what was appended since the last call, so a
    preview refreshed several times a second costs time in proportion to the
    new tokens, not to the document. A text that does not extend the previous
    one (a new request) starts over.
    """

    def __init__(self) -> None:
        self._scanner = _Scanner()
        self._text = ""

    def reset(self) -> None:
        self._scanner = _Scanner()
        self._text = ""

    def update(self, text: str) -> str:
        if not text.startswith(self._text):
            self.reset()
        if len(text) > len(self._text):
            self._scanner.feed(text[len(self._text) :])
            self._text = text
        return self._render(text)

    def _render(self, text: str) -> str:
        sc = self._scanner
        stack = list(sc.stack)
        cut = sc.consumed
        tail = ""
        if sc.cdata_elem is not None and stack and stack[-1].tag == sc.cdata_elem:
            top = stack.pop()
            if top.tag == "style":
                # Keep the complete rules; a half rule can briefly mis-style the page.
                content = text[top.content_start :]
                end = content.rfind("}")
                cut = top.content_start + (end + 1 if end >= 0 else 0)
                tail = "</style>"
            elif top.tag == "script":
                cut = top.start  # half a script must not run: drop the element
            else:
                # title, textarea (raw text in newer Pythons): keep the element, drop its partial text.
                cut = top.content_start
                tail = f"</{top.tag}>"
        elif cut < len(text) and text[cut] != "<":
            # Text held back for a possibly incomplete entity: show it up to that '&'.
            amp = text.rfind("&", cut)
            cut = max(cut, amp)
        return text[:cut] + tail + "".join(f"</{o.tag}>" for o in reversed(stack))


def renderable_prefix(partial: str) -> str:
    """A well-formed rendering of an unfinished HTML document (see the module notes).

    For a complete, well-formed document this is the document itself.
    """
    return PreviewRenderer().update(partial)


# ---------------------------------------------------------------------------
# extraction

_FENCE_OPEN = re.compile(r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_DOC_START = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_DOC_END = re.compile(r"</html\s*>", re.IGNORECASE)
_TAG = re.compile(r"<(?:/?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?|!--.*?--)>", re.DOTALL)
_HTML_INFOS = frozenset({"html", "htm", "xhtml", "html5", "xml", "svg"})


def _fenced_blocks(raw: str) -> list[tuple[str, str]]:
    """(info string, body) of each markdown code fence; an unclosed last fence runs to the end."""
    blocks: list[tuple[str, str]] = []
    fence = ""
    info = ""
    body: list[str] = []
    for line in raw.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if not fence:
            m = _FENCE_OPEN.match(stripped)
            if m:
                fence, info, body = m["fence"], m["info"].strip().lower(), []
            continue
        s = stripped.strip()
        if s and s[0] == fence[0] and len(s) >= len(fence) and s == s[0] * len(s):
            blocks.append((info, "".join(body)))
            fence = ""
        else:
            body.append(line)
    if fence:
        blocks.append((info, "".join(body)))
    return blocks


def _score(info: str, body: str) -> int:
    low = body.lower()
    score = 0
    if "<!doctype html" in low:
        score += 8
    if "<html" in low:
        score += 8
    if "<body" in low:
        score += 4
    if "<head" in low:
        score += 2
    if info.split(" ", 1)[0] in _HTML_INFOS:
        score += 3
    if _TAG.search(body):
        score += 1
    return score


def _trim_document(text: str) -> str:
    """From the document's start to its ``</html>`` (or the end, if cut off): prose dropped."""
    start = _DOC_START.search(text)
    if start is not None:
        text = text[start.start() :]
    ends = list(_DOC_END.finditer(text))
    if ends:
        return text[: ends[-1].end()].strip()
    return text.strip()


def _fragment(raw: str) -> str | None:
    """HTML-looking content without a document wrapper, prose around it dropped."""
    tags = list(_TAG.finditer(raw))
    if not tags:
        return None
    start = tags[0].start()
    end = len(raw)
    after_last = raw[tags[-1].end() :]
    # Prose after the markup is separated by a blank line; a cut-off text is not.
    gap = after_last.find("\n\n")
    if gap >= 0 and "<" not in after_last:
        end = tags[-1].end() + gap
    return raw[start:end].strip()


def _pre_document(text: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Model output</title></head>\n'
        f'<body><pre style="white-space: pre-wrap">{html.escape(text)}</pre></body></html>\n'
    )


def extract_html(raw: str, *, repair: bool = False) -> str:
    """The HTML document in the model's raw output (see the module notes).

    With ``repair=True`` a cut-off document is closed with :func:`renderable_prefix`;
    by default the model's text is returned as written (browsers cope with a
    missing tail, and the user sees exactly what the model produced).
    """
    doc = _extract(raw)
    return renderable_prefix(doc) if repair else doc


def _extract(raw: str) -> str:
    stripped = raw.strip()
    if not stripped:
        return _pre_document("")
    if stripped.startswith("<"):
        # A bare document (the model's usual answer): never look for fences inside it,
        # a <pre> sample in the page may contain some.
        if _DOC_START.search(stripped):
            return _trim_document(stripped)
        return _fragment(stripped) or stripped
    blocks = _fenced_blocks(raw)
    if blocks:
        best_score, best = max(((_score(i, b), b) for i, b in blocks), key=lambda t: (t[0], len(t[1])))
        if best_score > 0:
            return _trim_document(best) if _DOC_START.search(best) else best.strip()
    if _DOC_START.search(raw):
        return _trim_document(raw)
    fragment = _fragment(raw)
    if fragment:
        return fragment
    return _pre_document(stripped)


def live_preview(raw_partial: str) -> str:
    """What the preview shows while the model is still writing: extract, then make renderable."""
    return renderable_prefix(extract_html(raw_partial))


class LivePreview:
    """:func:`live_preview` for a stream: the same result, parsing only what was added.

    Feed it the whole raw text so far on every refresh; a new request (a text
    that does not continue the last one) starts over by itself.
    """

    def __init__(self) -> None:
        self._renderer = PreviewRenderer()

    def update(self, raw_so_far: str) -> str:
        return self._renderer.update(extract_html(raw_so_far))
