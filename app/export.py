"""Export a generated page for a real project: one self-contained HTML file, a ZIP, a React or Vue component.

* :func:`to_self_contained` inlines the page's local assets (images, stylesheets,
  scripts, fonts, ``url()`` in CSS) as ``data:`` URIs. Only files inside the page's
  folder are read (paths are resolved, symlinks included, and checked); remote URLs
  stay as they are and are listed in the notes.
* :func:`to_zip`: ``index.html`` plus ``assets/``: every ``data:`` URI of the
  self-contained page becomes a file named by its content's hash, referenced relatively.
  The archive is deterministic (sorted entries, fixed times).
* :func:`to_react` and :func:`to_vue` convert the page's element tree (:mod:`.htmldom`,
  built by the standard library's HTML tokenizer) to a JSX component or a Vue single-file
  component: ``class`` -> ``className`` and the other React names, inline styles -> style
  objects, void elements closed, event attributes, ``javascript:`` URLs, comments and
  scripts dropped, the page's ``<style>`` kept. Visible text and significant spaces are
  kept exactly (see :func:`visible_text`).

Every function returns the result and a list of notes (one line each) that say what was
dropped or left as it was; the CLI prints them, and the component files carry them in a
comment at the top.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import io
import json
import mimetypes
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from .errors import Web2CodeError
from .htmldom import SVG_ATTRIBUTES, VOID_ELEMENTS, Element, Text, parse, read_page_bytes, start_tag

__all__ = [
    "FORMATS",
    "ExportError",
    "Exported",
    "component_name",
    "export_page",
    "read_page",
    "to_react",
    "to_self_contained",
    "to_vue",
    "to_zip",
    "visible_text",
]

FORMATS = ("html", "zip", "react", "vue")


class ExportError(Web2CodeError):
    """The page cannot be read or exported."""

    exit_code = 2


@dataclass
class Exported:
    data: bytes
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading
def read_page(path: Path) -> str:
    """The page's text (UTF-8; a stray invalid byte becomes U+FFFD). One-line errors."""
    text = read_page_bytes(path, ExportError).decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise ExportError(f"{path} is empty")
    return text


def component_name(stem: str) -> str:
    """A PascalCase JavaScript identifier from a file name's stem (``my page-2`` -> ``MyPage2``)."""
    words = re.findall(r"[A-Za-z0-9]+", stem)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    if not name:
        return "Page"
    if name[0].isdigit():
        name = "Page" + name
    return name


# ---------------------------------------------------------------- shared helpers
_WS = "\t\n\f\r "
_WS_RUN = re.compile(r"[\t\n\f\r ]+")
_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_TAG_OK = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9_.-]*)*\Z", re.IGNORECASE)
_URL_ATTRS = frozenset({"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background",
                        "cite", "ping", "codebase", "longdesc", "manifest", "srcset"})

#: Elements whose layout is a block: whitespace next to them is not rendered.
BLOCK_ELEMENTS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "center", "col", "colgroup", "dd",
    "details", "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hgroup", "hr", "html", "legend", "li", "link",
    "main", "menu", "meta", "nav", "noscript", "ol", "optgroup", "option", "p", "pre", "script", "section",
    "style", "summary", "table", "tbody", "td", "template", "tfoot", "th", "thead", "title", "tr", "ul",
    "base", "listing", "xmp", "plaintext", "search",
})
_TABLE_LIKE = frozenset({"table", "thead", "tbody", "tfoot", "tr", "colgroup", "select", "optgroup",
                         "datalist", "ul", "ol", "dl", "menu"})
_PRE_LIKE = frozenset({"pre", "textarea", "listing"})
_DROPPED = frozenset({"script", "style", "title", "meta", "link", "base", "noscript", "head"})
_HIDDEN_TEXT = frozenset({"script", "style", "title", "head", "template", "noscript", "meta", "link"})


def _unsafe_url(value: str) -> bool:
    cleaned = "".join(ch for ch in value if ch > " " and ch != "\x7f").lower()
    return cleaned.startswith(("javascript:", "vbscript:"))


def visible_text(source: str) -> str:
    """The page's visible text, whitespace collapsed: ``textContent`` with a space at block boundaries.

    Scripts, styles, the head and ``<template>`` are not visible. Used to check that an export
    shows the same text as the page.
    """
    doc = parse(source)
    out: list[str] = []

    def walk(nodes: Sequence[Element | Text]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                out.append(node.data)
                continue
            if node.tag in _HIDDEN_TEXT:
                continue
            block = node.tag in BLOCK_ELEMENTS or node.tag == "br"
            if block:
                out.append(" ")
            walk(node.children)
            if block:
                out.append(" ")

    walk(doc.body_nodes())
    return _WS_RUN.sub(" ", "".join(out)).strip()


@dataclass
class _Page:
    """What the component exports take from a page: the body's nodes, its CSS and what was dropped."""

    nodes: list[Element | Text]
    css: list[str]
    notes: list[str]


def _collect(source: str) -> _Page:
    doc = parse(source)
    body_nodes = doc.body_nodes()
    in_body: set[int] = set()
    for node in body_nodes:
        if isinstance(node, Element):
            in_body.update(id(e) for e in node.iter())
    css: list[str] = []
    notes: list[str] = []
    dropped: dict[str, int] = {}
    for el in doc.root.iter():
        if el.tag == "style" and el.namespace == "html":
            text = "".join(c.data for c in el.children if isinstance(c, Text)).strip("\n")
            if text.strip():
                css.append(text)
        elif id(el) in in_body:
            if el.tag in ("script", "noscript", "link", "meta", "title", "base"):
                dropped[el.tag] = dropped.get(el.tag, 0) + 1
            continue
        elif el.tag == "title":
            title = " ".join(el.text().split())
            if title:
                notes.append(f"the page title {title!r} is not part of a component: set it in your app")
        elif el.tag in ("script", "meta", "base", "noscript"):
            dropped[el.tag] = dropped.get(el.tag, 0) + 1
        elif el.tag == "link":
            rel = (el.attr("rel") or "").lower().split()
            href = el.attr("href") or ""
            if "stylesheet" in rel and href:
                notes.append(f"external stylesheet {href} not included: import it in your project")
        elif el.tag == "body" and el.attrs:
            names = ", ".join(k for k, _ in el.attrs)
            notes.append(f"attributes of <body> dropped ({names}): put them on your app's root")
    if dropped.get("script"):
        notes.append(f"{dropped.pop('script')} <script> element(s) dropped: a component does not run page "
                     "scripts; move the behaviour into the component's code")
    for tag, n in sorted(dropped.items()):
        notes.append(f"{n} <{tag}> element(s) dropped")
    if css:
        notes.append("the page's CSS is kept as written; its selectors (body, html, tags) apply globally")
    return _Page(body_nodes, css, notes)


class _Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def notes(self) -> list[str]:
        what = {
            "event": "event attribute(s) dropped (e.g. {x}): attach handlers in the component",
            "js-url": "javascript: URL(s) dropped (e.g. in {x})",
            "bad-name": "attribute(s) with a name a template cannot carry dropped (e.g. {x})",
            "framework": "attribute(s) that the framework would read as its own syntax dropped (e.g. {x})",
            "bad-tag": "element(s) with an invalid tag name unwrapped, their content kept (e.g. <{x}>)",
            "important": "!important in inline styles dropped (e.g. {x}): React style objects cannot carry it",
        }
        return [f"{self.counts[k]} " + what[k].format(x=self.examples[k]) for k in what if k in self.counts]


def _parent_is_block(parent: Element | None) -> bool:
    return parent is None or parent.tag in BLOCK_ELEMENTS or parent.tag == "#document"


def _block_neighbours(parent: Element | None, nodes: Sequence[Element | Text], i: int) -> tuple[bool, bool]:
    """Whether the nearest sibling before and after ``nodes[i]`` (whitespace-only text skipped) is a
    block, counting the parent's edges as blocks when the parent is one."""

    def side(step: int) -> bool:
        j = i + step
        while 0 <= j < len(nodes):
            n = nodes[j]
            if isinstance(n, Element):
                return n.tag in BLOCK_ELEMENTS or n.tag in _DROPPED
            if n.data.strip(_WS):
                return False
            j += step
        return _parent_is_block(parent)

    return side(-1), side(1)


def _whitespace_roles(parent: Element | None, nodes: Sequence[Element | Text]) -> list[str]:
    """For each node of ``nodes``: ``element``, ``text``, or for whitespace-only text ``drop`` (not
    rendered) or ``space``.

    Whitespace next to a block element (or at the edge of a block parent) is not rendered; inside
    table rows, lists and selects, whitespace-only text is not either.
    """
    parent_tag = parent.tag if parent is not None else "body"
    roles: list[str] = []
    for i, node in enumerate(nodes):
        if isinstance(node, Element):
            roles.append("element")
        elif node.data.strip(_WS):
            roles.append("text")
        elif parent_tag in _TABLE_LIKE or all(_block_neighbours(parent, nodes, i)):
            roles.append("drop")
        elif any(isinstance(n, Text) and not n.data.strip(_WS) for n in nodes[max(0, i - 1):i]):
            roles.append("drop")  # the space is already there
        else:
            roles.append("space")
    return roles


def _text_parts(nodes: Sequence[Element | Text], i: int, parent: Element | None) -> tuple[bool, str, bool]:
    """(leading space kept, collapsed core text, trailing space kept) of the text node ``nodes[i]``."""
    node = nodes[i]
    assert isinstance(node, Text)
    data = node.data
    before, after = _block_neighbours(parent, nodes, i)
    lead = data[:1] in tuple(_WS) and data != "" and not before
    trail = data[-1:] in tuple(_WS) and data != "" and not after
    return lead, _WS_RUN.sub(" ", data).strip(" "), trail


def _in_pre(el: Element | None) -> bool:
    while el is not None:
        if el.tag in _PRE_LIKE:
            return True
        el = el.parent
    return False


def _pre_text(parent: Element, index: int, data: str) -> str:
    """Text in a ``<pre>``: a newline right after the start tag is not rendered (HTML's rule)."""
    if index == 0 and parent.tag in _PRE_LIKE:
        if data.startswith("\r\n"):
            return data[2:]
        if data.startswith(("\n", "\r")):
            return data[1:]
    return data


def _split_declarations(style: str) -> list[tuple[str, str]]:
    """``prop: value`` pairs of a style attribute, ``;`` and ``:`` inside quotes and ``url()`` respected."""
    decls: list[tuple[str, str]] = []
    buf: list[str] = []
    parts: list[str] = []
    quote = ""
    depth = 0
    i = 0
    while i < len(style):
        ch = style[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < len(style):
                buf.append(style[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif style.startswith("/*", i):
            end = style.find("*/", i + 2)
            i = len(style) if end < 0 else end + 2
            continue
        elif ch in "\"'":
            quote = ch
            buf.append(ch)
        elif ch == "(":
            depth += 1
            buf.append(ch)
        elif ch == ")":
            depth = max(0, depth - 1)
            buf.append(ch)
        elif ch == ";" and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    for part in parts:
        name, sep, value = part.partition(":")
        name = name.strip()
        value = value.strip()
        if sep and name and value and re.fullmatch(r"-{0,2}[A-Za-z_][A-Za-z0-9_-]*", name):
            decls.append((name, value))
    return decls


def _css_property_key(name: str) -> str:
    """A React style key: ``background-color`` -> ``backgroundColor``, ``-webkit-x`` -> ``WebkitX``,
    ``-ms-x`` -> ``msX``; a custom property ``--x`` stays as it is."""
    if name.startswith("--"):
        return name
    name = name.lower()
    vendor = name.startswith("-")
    words = [w for w in name.split("-") if w]
    key = words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    if vendor and not name.startswith("-ms-"):
        key = key[:1].upper() + key[1:]
    return key


# ---------------------------------------------------------------- React
_REACT_NAMES = {n.lower(): n for n in (  # noqa: SIM905  (one long list reads better)
    "acceptCharset accessKey allowFullScreen autoCapitalize autoComplete autoCorrect autoFocus autoPlay autoSave "
    "cellPadding cellSpacing charSet classID colSpan contentEditable contextMenu controlsList crossOrigin "
    "dateTime disablePictureInPicture disableRemotePlayback encType enterKeyHint fetchPriority formAction "
    "formEncType formMethod formNoValidate formTarget frameBorder hrefLang htmlFor httpEquiv imageSizes "
    "imageSrcSet inputMode itemID itemProp itemRef itemScope itemType keyParams keyType marginHeight "
    "marginWidth maxLength mediaGroup minLength noModule noValidate playsInline popoverTarget "
    "popoverTargetAction radioGroup readOnly referrerPolicy rowSpan spellCheck srcDoc srcLang srcSet "
    "tabIndex useMap"
).split()}
_REACT_NAMES.update({"class": "className", "for": "htmlFor", "accept-charset": "acceptCharset",
                     "http-equiv": "httpEquiv", "xlink:href": "xlinkHref", "xml:space": "xmlSpace",
                     "xml:lang": "xmlLang", "xmlns:xlink": "xmlnsXlink", "xlink:title": "xlinkTitle",
                     "xlink:show": "xlinkShow", "xlink:role": "xlinkRole", "xlink:actuate": "xlinkActuate",
                     "xlink:arcrole": "xlinkArcrole", "xlink:type": "xlinkType", "xml:base": "xmlBase"})
_BOOLEAN_ATTRS = frozenset({
    "allowfullscreen", "async", "autofocus", "autoplay", "checked", "controls", "default", "defer",
    "disabled", "disablepictureinpicture", "disableremoteplayback", "formnovalidate", "hidden", "inert",
    "itemscope", "loop", "multiple", "muted", "nomodule", "novalidate", "open", "playsinline", "readonly",
    "required", "reversed", "selected",
})
_JSX_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "{": "&#123;", "}": "&#125;", "\xa0": "&nbsp;"}


def _jsx_text(text: str) -> str:
    return "".join(_JSX_TEXT_ESCAPES.get(ch, ch) for ch in text)


def _js_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _jsx_value(value: str) -> str:
    if any(ch in value for ch in "\"&\\\n\r{}<>") or not value.isprintable():
        return "{" + _js_string(value) + "}"
    return f'"{value}"'


def _template_literal(text: str) -> str:
    return "`" + text.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${") + "`"


def _react_style(value: str, counter: _Counter) -> str:
    items: list[str] = []
    for name, declared in _split_declarations(value):
        v = declared
        if v.lower().endswith("!important"):
            counter.add("important", f"{name}: {v}")
            v = v[: -len("!important")].rstrip()
        key = _css_property_key(name)
        key_text = key if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", key) else _js_string(key)
        items.append(f"{key_text}: {_js_string(v)}")
    return "{{ " + ", ".join(items) + " }}" if items else "{{}}"


def _react_attr_name(el: Element, name: str) -> str | None:
    if name.startswith(("data-", "aria-")):
        return name if _NAME_OK.match(name) else None
    if el.namespace == "svg":
        name = SVG_ATTRIBUTES.get(name, name)
        if name in _REACT_NAMES:
            return _REACT_NAMES[name]
        if ":" in name:
            return None
        if "-" in name:
            first, *rest = name.split("-")
            return first + "".join(w[:1].upper() + w[1:] for w in rest if w)
        return name if _NAME_OK.match(name) else None
    if name in _REACT_NAMES:
        return _REACT_NAMES[name]
    if ":" in name or not _NAME_OK.match(name) or "." in name:
        return None
    return name


def _react_attrs(el: Element, counter: _Counter, extra: Sequence[tuple[str, str]] = ()) -> str:
    out: list[str] = []
    seen: set[str] = set()
    for written, value in el.attrs:
        name = written
        if name.startswith("on"):
            counter.add("event", name)
            continue
        if value is not None and name in _URL_ATTRS and _unsafe_url(value):
            counter.add("js-url", f"{el.tag} {name}")
            continue
        if el.namespace == "html" and el.tag in ("input", "textarea", "select"):
            if name == "value":
                name = "defaultvalue"
            elif name == "checked":
                out.append("defaultChecked")
                seen.add("defaultChecked")
                continue
        if el.namespace == "html" and el.tag == "option" and name == "selected":
            continue  # the select's defaultValue says it
        jsx_name = "defaultValue" if name == "defaultvalue" else _react_attr_name(el, name)
        if jsx_name is None:
            counter.add("bad-name", name)
            continue
        if jsx_name in seen:
            continue  # a repeated attribute: browsers keep the first
        seen.add(jsx_name)
        if name == "style" and value is not None:
            out.append(f"style={_react_style(value, counter)}")
        elif value is None or (name in _BOOLEAN_ATTRS and el.namespace == "html"):
            out.append(jsx_name if name in _BOOLEAN_ATTRS else f'{jsx_name}=""')
        else:
            out.append(f"{jsx_name}={_jsx_value(value)}")
    for name, expr in extra:
        if name not in seen:
            out.append(f"{name}={expr}")
    if (el.attr("contenteditable") or "").lower() not in ("false", "") or el.attr("contenteditable") == "":
        out.append("suppressContentEditableWarning")  # the children are static markup, not React state
    return "".join(" " + a for a in out)


def _select_default(el: Element) -> str | None:
    """A ``<select>``'s selected option(s) as a React ``defaultValue`` expression."""
    chosen: list[str] = []
    for opt in el.iter():
        if opt.tag == "option" and opt.has_attr("selected"):
            value = opt.attr("value")
            chosen.append(value if value is not None else " ".join(opt.text().split()))
    if not chosen:
        return None
    if el.has_attr("multiple"):
        return "{" + json.dumps(chosen, ensure_ascii=False) + "}"
    return "{" + _js_string(chosen[0]) + "}"


def _jsx_children(parent: Element | None, nodes: Sequence[Element | Text], depth: int,
                  counter: _Counter) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    pre = _in_pre(parent)
    roles = _whitespace_roles(parent, nodes)
    for i, node in enumerate(nodes):
        if isinstance(node, Text):
            if pre:
                assert parent is not None
                data = _pre_text(parent, i, node.data)
                if data:
                    lines.append(pad + "{" + _js_string(data) + "}")
                continue
            if roles[i] == "drop":
                continue
            if roles[i] == "space":
                lines.append(pad + '{" "}')
                continue
            lead, core, trail = _text_parts(nodes, i, parent)
            lines.append(pad + ('{" "}' if lead else "") + _jsx_text(core) + ('{" "}' if trail else ""))
            continue
        lines.extend(_jsx_element(node, depth, counter))
    return lines


def _jsx_element(el: Element, depth: int, counter: _Counter) -> list[str]:
    pad = "  " * depth
    if el.tag in _DROPPED and el.namespace == "html":
        return []
    tag = el.real_tag
    if not _TAG_OK.match(tag):
        counter.add("bad-tag", tag)
        return _jsx_children(el, el.children, depth, counter)
    extra: list[tuple[str, str]] = []
    children = el.children
    if el.namespace == "html" and el.tag == "textarea":
        text = _pre_text(el, 0, "".join(c.data for c in children if isinstance(c, Text)))
        if text:
            extra.append(("defaultValue", "{" + _js_string(text) + "}"))
        children = []
    if el.namespace == "html" and el.tag == "select":
        default = _select_default(el)
        if default is not None:
            extra.append(("defaultValue", default))
    attrs = _react_attrs(el, counter, extra)
    if el.namespace == "html" and el.tag in VOID_ELEMENTS:
        return [f"{pad}<{tag}{attrs} />"]
    inner = _jsx_children(el, children, depth + 1, counter)
    if not inner:
        return [f"{pad}<{tag}{attrs} />"]
    if len(inner) == 1 and not inner[0].lstrip().startswith("<") and len(pad + tag + attrs + inner[0]) < 110:
        return [f"{pad}<{tag}{attrs}>{inner[0].strip()}</{tag}>"]
    return [f"{pad}<{tag}{attrs}>", *inner, f"{pad}</{tag}>"]


def _header_comment(kind: str, source_name: str, notes: Sequence[str], *, js: bool) -> str:
    lines = [f"{kind} exported by Web2Code from {source_name}."]
    lines += [f"Note: {n}" for n in notes]
    if js:
        return "".join(f"// {line}\n" for line in lines)
    body = "\n".join(line.replace("--", "- -") for line in lines)
    return f"<!--\n{body}\n-->\n"


def to_react(source: str, name: str = "Page", *, source_name: str = "the page") -> tuple[str, list[str]]:
    """A React function component (JSX, default export) that renders the page's body."""
    page = _collect(source)
    counter = _Counter()
    body = _jsx_children(None, page.nodes, 3, counter)
    notes = page.notes + counter.notes()
    out = [_header_comment("React component", source_name, notes, js=True)]
    if page.css:
        out.append(f"\nconst css = {_template_literal(chr(10).join(page.css))};\n")
    out.append(f"\nexport default function {name}() {{\n  return (\n    <>\n")
    if page.css:
        out.append("      <style>{css}</style>\n")
    out.extend(line + "\n" for line in body)
    out.append("    </>\n  );\n}\n")
    return "".join(out), notes


# ---------------------------------------------------------------- Vue
def _vue_escape_text(text: str) -> str:
    return html.escape(text, quote=False).replace("{{", "&#123;&#123;").replace("\xa0", "&nbsp;")


def _vue_attrs(el: Element, counter: _Counter) -> str:
    out: list[str] = []
    seen: set[str] = set()
    for name, value in el.attrs:
        if name.startswith("on"):
            counter.add("event", name)
            continue
        if value is not None and name in _URL_ATTRS and _unsafe_url(value):
            counter.add("js-url", f"{el.tag} {name}")
            continue
        if name.startswith(("v-", ":", "@", "#")):
            counter.add("framework", name)
            continue
        real = SVG_ATTRIBUTES.get(name, name) if el.namespace == "svg" else name
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]*", real):
            counter.add("bad-name", name)
            continue
        if real in seen:
            continue
        seen.add(real)
        if value is None:
            out.append(real)
        else:
            out.append(f'{real}="{html.escape(value, quote=True)}"')
    return "".join(" " + a for a in out)


def _vue_children(parent: Element | None, nodes: Sequence[Element | Text], depth: int, counter: _Counter) -> str:
    pre = _in_pre(parent)
    roles = _whitespace_roles(parent, nodes)
    out: list[str] = []
    for i, node in enumerate(nodes):
        if isinstance(node, Text):
            if pre:
                assert parent is not None
                out.append(_vue_escape_text(_pre_text(parent, i, node.data)))
            elif roles[i] == "drop":
                last = all(isinstance(n, Text) and roles[j] == "drop" for j, n in enumerate(nodes) if j > i)
                out.append("\n" + "  " * (depth - 1 if last else depth))
            elif roles[i] == "space":
                out.append(" ")
            else:
                lead, core, trail = _text_parts(nodes, i, parent)
                out.append((" " if lead else "") + _vue_escape_text(core) + (" " if trail else ""))
            continue
        out.append(_vue_element(node, depth, counter))
    return "".join(out)


def _vue_element(el: Element, depth: int, counter: _Counter) -> str:
    if el.tag in _DROPPED and el.namespace == "html":
        return ""
    tag = el.real_tag
    if not _TAG_OK.match(tag):
        counter.add("bad-tag", tag)
        return _vue_children(el, el.children, depth, counter)
    attrs = _vue_attrs(el, counter)
    if el.namespace == "html" and el.tag in VOID_ELEMENTS:
        return f"<{tag}{attrs} />"
    inner = _vue_children(el, el.children, depth + 1, counter)
    if not inner and el.namespace != "html":
        return f"<{tag}{attrs} />"
    if el.tag in _PRE_LIKE and inner.startswith("\n"):
        inner = "\n" + inner  # the parser drops one newline after <pre>
    return f"<{tag}{attrs}>{inner}</{tag}>"


def to_vue(source: str, name: str = "Page", *, source_name: str = "the page") -> tuple[str, list[str]]:
    """A Vue 3 single-file component: the page's body as its template, its CSS as a ``<style>`` block."""
    page = _collect(source)
    counter = _Counter()
    body = _vue_children(None, page.nodes, 1, counter).strip("\n ")
    notes = page.notes + counter.notes()
    out = [_header_comment("Vue component", source_name, notes, js=False)]
    out.append(f"<template>\n  {body}\n</template>\n")
    out.append(f"\n<script>\nexport default {{ name: {_js_string(name)} }};\n</script>\n")
    if page.css:
        css = "\n".join(page.css).replace("</style", "<\\/style")
        out.append(f"\n<style>\n{css}\n</style>\n")
    return "".join(out), notes


# ---------------------------------------------------------------- self-contained HTML
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_MAX_ASSET = 64 * 1024 * 1024
_EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp", "image/svg+xml": ".svg",
    "image/avif": ".avif", "image/x-icon": ".ico", "image/vnd.microsoft.icon": ".ico", "image/bmp": ".bmp",
    "text/css": ".css", "text/javascript": ".js", "application/javascript": ".js", "font/woff2": ".woff2",
    "font/woff": ".woff", "font/ttf": ".ttf", "font/otf": ".otf", "application/font-woff": ".woff",
    "video/mp4": ".mp4", "video/webm": ".webm", "audio/mpeg": ".mp3", "audio/ogg": ".ogg",
    "application/json": ".json", "text/plain": ".txt", "application/pdf": ".pdf",
}
_MIME_BY_SUFFIX = {".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf", ".otf": "font/otf",
                   ".svg": "image/svg+xml", ".webp": "image/webp", ".avif": "image/avif", ".js": "text/javascript",
                   ".css": "text/css", ".ico": "image/x-icon"}


class _Inliner:
    """Turns references to files in the page's folder into ``data:`` URIs, and says what it left alone."""

    def __init__(self, base: Path) -> None:
        self.root = base.resolve()
        self.remote: list[str] = []
        self.outside: list[str] = []
        self.missing: list[str] = []
        self.inlined = 0

    def local(self, url: str, folder: Path) -> Path | None:
        """The file a relative ``url`` names in ``folder``, or ``None`` (with the reason recorded)."""
        url = url.strip(_WS)
        if not url or url.startswith("#"):
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https", "ftp") or (not scheme and parts.netloc):
            self.remote.append(url)
            return None
        if scheme == "file" or (not scheme and url.startswith("/")):
            self.outside.append(url)
            return None
        if scheme or len(parts.scheme) == 1:  # data:, mailto:, blob: ... (or a drive letter)
            return None
        try:
            path = (folder / unquote(parts.path)).resolve()
        except (OSError, ValueError):
            self.missing.append(url)
            return None
        if not path.is_relative_to(self.root):
            self.outside.append(url)
            return None
        if not path.is_file():
            self.missing.append(url)
            return None
        return path

    def data_uri(self, url: str, folder: Path, depth: int = 0) -> str | None:
        path = self.local(url, folder)
        if path is None:
            return None
        try:
            if path.stat().st_size > _MAX_ASSET:
                self.missing.append(url + " (over 64 MiB)")
                return None
            data = path.read_bytes()
        except OSError:
            self.missing.append(url)
            return None
        mime = _MIME_BY_SUFFIX.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
        mime = mime or "application/octet-stream"
        if mime == "text/css" and depth < 5:
            css = data.decode("utf-8", errors="replace")
            data = self.css(css, path.parent, depth + 1).encode("utf-8")
        self.inlined += 1
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def css(self, text: str, folder: Path, depth: int = 0) -> str:
        def url(m: re.Match[str]) -> str:
            ref = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
            new = self.data_uri(ref, folder, depth)
            return m.group(0) if new is None else f'url("{new}")'

        def imp(m: re.Match[str]) -> str:
            ref = m.group(1) if m.group(1) is not None else m.group(2)
            new = self.data_uri(ref, folder, depth)
            return m.group(0) if new is None else f'@import url("{new}")'

        return _CSS_IMPORT.sub(imp, _CSS_URL.sub(url, text))

    def srcset(self, value: str, folder: Path) -> str:
        out: list[str] = []
        for candidate in value.split(","):
            bits = candidate.strip(_WS).split(None, 1)
            if not bits:
                continue
            new = self.data_uri(bits[0], folder)
            out.append(" ".join([new or bits[0], *bits[1:]]))
        return ", ".join(out)

    def notes(self) -> list[str]:
        notes: list[str] = []
        for what, urls in (("remote URL(s) left as they are (the file needs the network for them)", self.remote),
                           ("reference(s) outside the page's folder left as they are (not read)", self.outside),
                           ("local file(s) not found, references left as they are", self.missing)):
            unique = list(dict.fromkeys(urls))
            if unique:
                shown = ", ".join(unique[:5]) + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")
                notes.append(f"{len(unique)} {what}: {shown}")
        return notes


_INLINED_SRC = {"img", "source", "video", "audio", "track", "embed", "input", "image", "iframe", "use", "feimage"}


def _rewrite_urls(source: str, on_attr: Callable[[Element, str, str], str | None],
                  on_css: Callable[[str], str], on_element: Callable[[Element], str | None] | None = None,
                  ) -> str:
    """Apply rewrites to the page: whole elements, URL attributes (rebuilding only the start tags
    that change), ``style`` attributes and ``<style>`` contents. Everything else is left as written."""
    doc = parse(source)
    edits: list[tuple[int, int, str]] = []
    for el in doc.root.iter():
        if el.tag == "#document" or el.implied:
            continue
        if on_element is not None:
            whole = on_element(el)
            if whole is not None:
                edits.append((el.start, el.end, whole))
                continue
        if el.tag == "style" and el.namespace == "html":
            content = source[el.content_start:el.content_end]
            new = on_css(content)
            if new != content:
                edits.append((el.content_start, el.content_end, new))
            continue
        changed = False
        attrs: list[tuple[str, str | None]] = []
        for name, value in el.attrs:
            new_value = None
            if value is not None:
                new_value = on_css(value) if name == "style" else on_attr(el, name, value)
            if new_value is not None and new_value != value:
                changed = True
                attrs.append((name, new_value))
            else:
                attrs.append((name, value))
        if changed:
            edits.append((el.start, el.content_start, start_tag(el, attrs, source)))
    for start, end, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[end:]
    return source


def to_self_contained(source: str, base: Path) -> tuple[str, list[str]]:
    """The page with its local assets (files in ``base``, the page's folder) inlined as ``data:`` URIs."""
    inl = _Inliner(base)
    folder = inl.root

    def on_attr(el: Element, name: str, value: str) -> str | None:
        if name == "srcset":
            return inl.srcset(value, folder)
        if el.tag == "link" and name == "href":
            rel = (el.attr("rel") or "").lower().split()
            if {"icon", "preload", "apple-touch-icon", "prefetch", "manifest"} & set(rel):
                return inl.data_uri(value, folder)
            return None
        if (name in ("src", "href", "xlink:href") and el.tag in _INLINED_SRC and el.tag != "iframe") or \
                (name == "poster" and el.tag == "video") or (name == "data" and el.tag == "object") or \
                (name == "background" and el.tag in ("body", "table", "td", "th")):
            return inl.data_uri(value, folder)
        if name in ("src", "href", "xlink:href") and el.tag in _INLINED_SRC | {"a"} and value:
            inl.local(value, folder)  # only record remote references of frames and links, never inline them
        return None

    def on_element(el: Element) -> str | None:
        if el.tag == "link" and el.namespace == "html":
            rel = (el.attr("rel") or "").lower().split()
            href = el.attr("href")
            if "stylesheet" in rel and href:
                path = inl.local(href, folder)
                if path is None:
                    return None
                try:
                    css = path.read_text("utf-8", errors="replace")
                except OSError:
                    inl.missing.append(href)
                    return None
                inl.inlined += 1
                css = inl.css(css, path.parent, 1).replace("</style", "<\\/style")
                media = el.attr("media")
                media_attr = f' media="{html.escape(media, quote=True)}"' if media else ""
                return f"<style{media_attr}>\n{css}\n</style>"
        if el.tag == "script" and el.namespace == "html":
            src = el.attr("src")
            if not src:
                return None
            path = inl.local(src, folder)
            if path is None:
                return None
            try:
                js = path.read_text("utf-8", errors="replace")
            except OSError:
                inl.missing.append(src)
                return None
            inl.inlined += 1
            js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
            attrs = [(k, v) for k, v in el.attrs if k not in ("src", "integrity", "crossorigin")]
            return start_tag(el, attrs, source) + js + "</script>"
        return None

    out = _rewrite_urls(source, on_attr, lambda css: inl.css(css, folder), on_element)
    notes = [f"{inl.inlined} local asset(s) inlined"] if inl.inlined else []
    return out, notes + inl.notes()


# ---------------------------------------------------------------- ZIP
_DATA_URI = re.compile(r"data:([^,]*?),(.*)", re.DOTALL | re.IGNORECASE)


def _decode_data_uri(uri: str) -> tuple[str, bytes] | None:
    m = _DATA_URI.fullmatch(uri.strip(_WS))
    if m is None:
        return None
    meta, payload = m.group(1), m.group(2)
    params = [p.strip() for p in meta.split(";")]
    mime = (params[0] or "text/plain").lower()
    try:
        if any(p.lower() == "base64" for p in params[1:]):
            data = base64.b64decode(unquote(payload).replace(" ", "").replace("\n", ""), validate=False)
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        return None
    return mime, data


def to_zip(source: str, base: Path) -> tuple[bytes, list[str]]:
    """``index.html`` plus ``assets/``: local assets and ``data:`` URIs become files named by their hash."""
    page, notes = to_self_contained(source, base)
    assets: dict[str, bytes] = {}

    def extract(uri: str) -> str | None:
        decoded = _decode_data_uri(uri)
        if decoded is None:
            return None
        mime, data = decoded
        ext = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"
        name = f"assets/{hashlib.sha256(data).hexdigest()[:16]}{ext}"
        assets[name] = data
        return name

    def on_attr(el: Element, name: str, value: str) -> str | None:
        if name == "srcset":
            out: list[str] = []
            for candidate in value.split(","):
                bits = candidate.strip(_WS).split(None, 1)
                if bits:
                    new = extract(bits[0]) if bits[0].lower().startswith("data:") else None
                    out.append(" ".join([new or bits[0], *bits[1:]]))
            return ", ".join(out)
        if name in _URL_ATTRS and value.strip(_WS).lower().startswith("data:") and el.tag != "a":
            return extract(value)
        return None

    def on_css(text: str) -> str:
        def url(m: re.Match[str]) -> str:
            ref = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
            if not ref.lower().startswith("data:"):
                return m.group(0)
            new = extract(ref)
            return m.group(0) if new is None else f'url("{new}")'

        return _CSS_URL.sub(url, text)

    index = _rewrite_urls(page, on_attr, on_css)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in [("index.html", index.encode("utf-8")), *sorted(assets.items())]:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    if assets:
        notes.append(f"{len(assets)} asset file(s) in assets/")
    return buf.getvalue(), notes


# ---------------------------------------------------------------- one call
def default_output(page: Path, fmt: str) -> Path:
    """Where an export goes when no target is given: next to the page, never over it."""
    name = component_name(page.stem)
    return {
        "html": page.with_name(page.stem + ".inline.html"),
        "zip": page.with_suffix(".zip"),
        "react": page.with_name(name + ".jsx"),
        "vue": page.with_name(name + ".vue"),
    }[fmt]


def export_source(source: str, fmt: str, base: Path, stem: str, source_name: str = "the page") -> Exported:
    """Export page text (already read) whose assets live in ``base``."""
    if fmt == "html":
        text, notes = to_self_contained(source, base)
        return Exported(text.encode("utf-8"), notes)
    if fmt == "zip":
        data, notes = to_zip(source, base)
        return Exported(data, notes)
    if fmt == "react":
        text, notes = to_react(source, component_name(stem), source_name=source_name)
        return Exported(text.encode("utf-8"), notes)
    if fmt == "vue":
        text, notes = to_vue(source, component_name(stem), source_name=source_name)
        return Exported(text.encode("utf-8"), notes)
    raise ExportError(f"unknown export format {fmt!r} (use one of: {', '.join(FORMATS)})")


def export_page(page: Path, fmt: str) -> Exported:
    """Read ``page`` and export it as ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (use one of: {', '.join(FORMATS)})")
    return export_source(read_page(page), fmt, page.parent, page.stem, page.name)
