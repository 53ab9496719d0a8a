"""The served page of the preview: what is taken out of or put into a generated document before it is shown.

* connection hints (``<link rel=preconnect|dns-prefetch|prefetch|prerender>``) are taken out of every
  document, in frames written with ``srcdoc`` too: Chromium opens them below the request interceptor;
* the final page carries a Content-Security-Policy that allows no fetch/XHR/WebSocket, plug-ins,
  workers or form posts;
* the preview's own light/dark switch: ``prefers-color-scheme`` media queries are answered as the user
  chose, in style sheets, ``media`` attributes and ``matchMedia()`` (the engine's own answer follows
  the system and cannot be set per page).
"""

from __future__ import annotations

import html as htmllib
import json
import re

#: The served final page: no fetch/XHR/WebSocket/EventSource/beacon, no plug-ins, no workers, no form posts.
_DOC_CSP = "connect-src 'none'; object-src 'none'; worker-src 'none'; form-action 'none'"

# ---------------------------------------------------------------- resource hints
_HINTS = {"preconnect", "dns-prefetch", "prefetch", "prerender"}
_TAG = r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*"
_LINK_RE = re.compile(r"<link(?=[\s/>])" + _TAG + ">", re.IGNORECASE)
_ATTR = r"(?<=[\s/\"'])({name})(\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+)"
_REL_RE = re.compile(_ATTR.format(name="rel"), re.IGNORECASE)
_SRCDOC_RE = re.compile(_ATTR.format(name="srcdoc"), re.IGNORECASE)
_ELEMENT_RE = re.compile(r"<[a-z][^\s/>]*" + _TAG + ">", re.IGNORECASE)


_PROLOGUE_RE = re.compile(r"\A(?:\ufeff)?(?:\s|<!--.*?-->)*(?:<!doctype[^>]*>)?", re.IGNORECASE | re.DOTALL)


def csp_meta(policy: str) -> str:
    return f'<meta http-equiv="Content-Security-Policy" content="{htmllib.escape(policy)}">'


def final_document(html: str) -> bytes:
    """The served final page: connection hints out, :data:`_DOC_CSP` in first (after the doctype: no quirks mode)."""
    html = strip_resource_hints(html)
    m = _PROLOGUE_RE.match(html)
    end = m.end() if m else 0
    return (html[:end] + csp_meta(_DOC_CSP) + html[end:]).encode("utf-8", "replace")


def _attr_value(raw: str) -> str:
    return htmllib.unescape(raw[1:-1] if raw[:1] in "\"'" else raw)


def strip_resource_hints(html: str) -> str:
    """``html`` with the connection hints (preconnect, dns-prefetch, ...) taken out of every ``<link>``.

    Chromium opens these below the request interceptor. ``srcdoc`` frames are treated the same way.
    """

    def rel(m: re.Match[str]) -> str:
        tokens = [t for t in _attr_value(m.group(3)).split() if t.lower() not in _HINTS]
        return f'{m.group(1)}{m.group(2)}"{htmllib.escape(" ".join(tokens))}"'

    def link(m: re.Match[str]) -> str:
        return _REL_RE.sub(rel, m.group(0))

    def srcdoc(m: re.Match[str]) -> str:
        inner = strip_resource_hints(_attr_value(m.group(3)))
        return f'{m.group(1)}{m.group(2)}"{htmllib.escape(inner)}"'

    def element(m: re.Match[str]) -> str:
        return _SRCDOC_RE.sub(srcdoc, m.group(0))

    out = _LINK_RE.sub(link, html)
    return _ELEMENT_RE.sub(element, out) if "srcdoc" in out.lower() else out


# ---------------------------------------------------------------- the preview's light/dark switch
COLOR_SCHEMES = ("auto", "light", "dark")
_SCHEME_RE = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(light|dark)\s*\)", re.IGNORECASE)
#: Media features with a fixed answer on every screen (``grid`` is 0 on bitmap displays).
_ALWAYS, _NEVER = "(grid: 0)", "(grid: 1)"


def with_color_scheme(html: str, scheme: str) -> str:
    """``html`` with each ``(prefers-color-scheme: light|dark)`` answered as ``scheme`` ("auto": unchanged)."""
    if scheme not in ("light", "dark"):
        return html
    return _SCHEME_RE.sub(lambda m: _ALWAYS if m.group(1).lower() == scheme else _NEVER, html)


_MATCH_MEDIA_JS = """
(function (scheme, always, never) {
  var mm = window.matchMedia;
  if (typeof mm !== "function") return;
  var re = /\\(\\s*prefers-color-scheme\\s*:\\s*(light|dark)\\s*\\)/gi;
  window.matchMedia = function matchMedia(query) {
    return mm.call(window, String(query).replace(re, function (_m, s) {
      return s.toLowerCase() === scheme ? always : never;
    }));
  };
})(SCHEME, ALWAYS, NEVER);
"""


def color_scheme_script(scheme: str) -> str:
    """Runs before the page's scripts: ``matchMedia()`` answers ``prefers-color-scheme`` as ``scheme``."""
    return (_MATCH_MEDIA_JS.replace("SCHEME", json.dumps(scheme)).replace("ALWAYS", json.dumps(_ALWAYS))
            .replace("NEVER", json.dumps(_NEVER)))
