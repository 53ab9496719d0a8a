"""HTML extraction and the live-preview prefix, proven over generated documents (hypothesis)."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from web2code.app.engine.html import (
    VOID_ELEMENTS,
    LivePreview,
    PreviewRenderer,
    extract_html,
    live_preview,
    renderable_prefix,
)

# ------------------------------------------------------------------ checker


class _Check(HTMLParser):
    """Independent reading of a document: its text content and whether its tags nest strictly."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def analyse(doc: str) -> tuple[str, list[str], list[str], str]:
    """(text content, elements left open, nesting errors, input the parser still held back)."""
    c = _Check()
    c.feed(doc)
    pending = c.rawdata
    c.close()
    return "".join(c.text), c.stack, c.errors, pending


TRAILING_END_TAGS = re.compile(r"(?:</[a-z0-9]+>)+$")

# --------------------------------------------------------------- generators

WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?:;-()\"'>/=é中😀"
ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&copy;", "&nbsp;", "&#169;", "&#x263A;", "&eacute;"]

words = st.text(alphabet=WORD_CHARS, min_size=1, max_size=12)
text = st.lists(st.one_of(words, words, st.sampled_from(ENTITIES)), min_size=1, max_size=4).map("".join)

attr_value = st.lists(
    st.one_of(st.text(alphabet="abcxyz019 -_:;/.#>'<", max_size=8), st.sampled_from(["&amp;", "&quot;"])),
    max_size=3,
).map("".join)
attribute = st.one_of(
    st.tuples(st.sampled_from(["class", "id", "href", "title", "data-x", "style", "alt"]), attr_value).map(
        lambda kv: f' {kv[0]}="{kv[1]}"'
    ),
    st.sampled_from([" hidden", " disabled", " data-flag"]),
)
attributes = st.lists(attribute, max_size=3).map("".join)


def element(tag: str, children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(attributes, st.lists(children, max_size=4).map("".join)).map(
        lambda ac: f"<{tag}{ac[0]}>{ac[1]}</{tag}>"
    )


script_body = st.text(alphabet="abcxyz019 =<>&;(){}'\"+-*/!\n.", max_size=40).filter(lambda s: "</" not in s)
script = script_body.map(lambda s: f"<script>{s}</script>")
css_rule = st.tuples(
    st.sampled_from(["body", ".card", "#main", "ul > li", "a:hover"]),
    st.lists(
        st.tuples(
            st.sampled_from(["color", "margin", "display"]), st.sampled_from(["red", "0 auto", "flex"])
        ),
        max_size=3,
    ),
).map(lambda r: r[0] + " { " + " ".join(f"{k}: {v};" for k, v in r[1]) + " }")
style = st.lists(css_rule, max_size=3).map(lambda rules: "<style>" + "\n".join(rules) + "</style>")
# No "--" inside, no "-" at the end, and no "<!-->" / "<!--->" (browsers end the comment there).
comment = (
    st.text(alphabet="abc xyz<>!-", max_size=15)
    .filter(lambda s: "--" not in s and not s.endswith("-") and not s.startswith((">", "->")))
    .map(lambda s: f"<!--{s}-->")
)
void = st.tuples(st.sampled_from(["img", "br", "hr", "input"]), attributes, st.booleans()).map(
    lambda t: f"<{t[0]}{t[1]}{' /' if t[2] else ''}>"
)


def inline(depth: int) -> st.SearchStrategy[str]:
    leaves = st.one_of(text, text, void.filter(lambda v: not v.startswith("<hr")))
    if depth <= 0:
        return leaves
    return st.one_of(leaves, st.sampled_from(["span", "a", "b", "em", "strong", "code"]).flatmap(
        lambda tag: element(tag, inline(depth - 1))
    ))


def block(depth: int) -> st.SearchStrategy[str]:
    para = st.sampled_from(["p", "h1", "h2", "h3"]).flatmap(lambda tag: element(tag, inline(2)))
    leaves = st.one_of(para, comment, script, style, inline(1))
    if depth <= 0:
        return leaves
    inner = block(depth - 1)
    return st.one_of(
        leaves,
        st.sampled_from(["div", "section", "header", "footer", "nav", "main", "article"]).flatmap(
            lambda tag: element(tag, inner)
        ),
        st.sampled_from(["ul", "ol"]).flatmap(
            lambda tag: element(tag, element("li", st.one_of(inline(1), inner)))
        ),
        element("table", element("tr", element("td", st.one_of(inline(1), inner)))),
    )


documents = st.tuples(
    st.booleans(),
    text,
    st.lists(st.one_of(style, script), max_size=2),
    st.lists(block(3), min_size=1, max_size=4),
).map(
    lambda d: ("<!DOCTYPE html>\n" if d[0] else "")
    + '<html lang="en"><head><meta charset="utf-8"><title>'
    + d[1]
    + "</title>"
    + "".join(d[2])
    + "</head><body>"
    + "".join(d[3])
    + "</body></html>"
)

prose = st.text(alphabet="abcdefghij klmnop.,!?:'\"", min_size=1, max_size=60).map(str.strip).filter(bool)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def prefix_positions(doc: str) -> list[int]:
    """Every position of a short document; for a longer one, every position next to markup plus a stride."""
    n = len(doc)
    if n <= 400:
        return list(range(n + 1))
    special = {i + d for i, ch in enumerate(doc) if ch in "<>&;/\"" for d in (0, 1)}
    return sorted(special | set(range(0, n + 1, max(1, n // 80))) | {n})


# ----------------------------------------------------------- generated docs


@FAST
@given(documents)
def test_generated_documents_are_well_formed_for_the_checker(doc: str) -> None:
    _text, open_, errors, pending = analyse(doc)
    assert (open_, errors, pending) == ([], [], "")


@FAST
@given(documents, prose, prose)
def test_extract_html_finds_the_document_in_every_wrapping(doc: str, before: str, after: str) -> None:
    variants = [
        doc,
        f"  \n{doc}\n",
        f"```html\n{doc}\n```",
        f"```\n{doc}\n```",
        f"```html\n{doc}",  # unclosed fence: the model stopped
        f"{before}\n\n```html\n{doc}\n```\n\n{after}",
        f"{before}\n```HTML\n{doc}\n```\n{after}",
        f"{before}\n\n{doc}\n\n{after}",
        f"{before}\n```css\nbody {{ color: red; }}\n```\n```html\n{doc}\n```\n{after}",
        f"{before}\n~~~html\n{doc}\n~~~",
    ]
    for raw in variants:
        assert extract_html(raw) == doc, raw


@SLOW
@given(documents)
def test_every_prefix_renders_balanced_and_text_consistent(doc: str) -> None:
    full_text = analyse(doc)[0]
    for n in prefix_positions(doc):
        out = renderable_prefix(doc[:n])
        text, open_, errors, pending = analyse(out)
        assert errors == [], (doc[:n], out)
        assert open_ == [], (doc[:n], out)
        assert pending == "", (doc[:n], out)
        assert full_text.startswith(text), (doc[:n], out)
        # What is shown is the document so far plus nothing but end tags ...
        shown = TRAILING_END_TAGS.sub("", out)
        assert doc.startswith(shown), (doc[:n], out)
        # ... and no script runs unless it is complete in the document.
        k = out.find("<script")
        while k >= 0:
            assert out.find("</script>", k) == doc.find("</script>", k), (doc[:n], out)
            k = out.find("<script", k + 1)


@FAST
@given(documents)
def test_a_complete_document_is_rendered_unchanged(doc: str) -> None:
    assert renderable_prefix(doc) == doc


@SLOW
@given(documents, st.data())
def test_incremental_renderer_equals_rendering_from_scratch(doc: str, data: st.DataObject) -> None:
    cuts = sorted([*data.draw(st.lists(st.integers(0, len(doc)), max_size=25)), len(doc)])
    renderer = PreviewRenderer()
    for n in cuts:
        assert renderer.update(doc[:n]) == renderable_prefix(doc[:n])


@SLOW
@given(documents, prose)
def test_live_preview_of_a_streaming_fenced_answer_never_breaks(doc: str, before: str) -> None:
    raw = f"{before}\n```html\n{doc}\n```\nThat is the page."
    stream = LivePreview()
    for n in range(0, len(raw) + 1, max(1, len(raw) // 60)):
        out = live_preview(raw[:n])
        assert stream.update(raw[:n]) == out
        _text, open_, errors, pending = analyse(out)
        assert (open_, errors, pending) == ([], [], "")
    assert live_preview(raw) == doc


# ------------------------------------------------------------------ examples


def test_unfinished_script_is_dropped_whole() -> None:
    out = renderable_prefix("<html><body><p>hi</p><script>if (a < b) { alert(")
    assert out == "<html><body><p>hi</p></body></html>"


def test_cut_inside_the_script_end_tag_drops_the_script() -> None:
    assert renderable_prefix("<body><script>x()</scr") == "<body></body>"


def test_unfinished_style_keeps_its_complete_rules() -> None:
    out = renderable_prefix("<head><style>body { color: red; } .a { marg")
    assert out == "<head><style>body { color: red; }</style></head>"


def test_incomplete_tag_attribute_and_comment_are_dropped() -> None:
    assert renderable_prefix('<div><a href="x>y" cla') == "<div></div>"
    assert renderable_prefix("<div>text<!-- a comm") == "<div>text</div>"
    assert renderable_prefix("<div>text</d") == "<div>text</div>"


def test_incomplete_entity_is_dropped_but_the_text_before_it_shown() -> None:
    assert renderable_prefix("<p>Fish &amp; chips &co") == "<p>Fish &amp; chips </p>"
    assert renderable_prefix("<p>&#12") == "<p></p>"


def test_void_and_self_closed_elements_are_not_closed_again() -> None:
    out = renderable_prefix('<div><img src="a.png"><br/><svg><path d="M0"/>')
    assert out == '<div><img src="a.png"><br/><svg><path d="M0"/></svg></div>'


def test_implicitly_closed_list_items_and_paragraphs() -> None:
    assert renderable_prefix("<ul><li>one<li>two") == "<ul><li>one<li>two</li></ul>"
    assert renderable_prefix("<p>para<div>block") == "<p>para<div>block</div>"
    assert renderable_prefix("<table><tr><td>a<td>b<tr><td>c") == (
        "<table><tr><td>a<td>b<tr><td>c</td></tr></table>"
    )


def test_stray_and_misnested_end_tags_do_not_confuse_the_stack() -> None:
    assert renderable_prefix("<div></span><b><i>x</b>y") == "<div></span><b><i>x</b>y</div>"


def test_renderer_starts_over_when_the_text_is_not_a_continuation() -> None:
    r = PreviewRenderer()
    assert r.update("<div><p>abc") == "<div><p>abc</p></div>"
    assert r.update("<span>new") == "<span>new</span>"


def test_extract_prefers_the_fence_that_looks_like_a_document() -> None:
    raw = (
        "Styles:\n```css\nbody { margin: 0 }\n```\n"
        "Snippet:\n```html\n<div>card</div>\n```\n"
        "Page:\n```html\n<!DOCTYPE html><html><body><div>card</div></body></html>\n```\n"
    )
    assert extract_html(raw) == "<!DOCTYPE html><html><body><div>card</div></body></html>"


def test_extract_a_cut_off_document_and_repair_it_on_request() -> None:
    raw = "```html\n<!DOCTYPE html><html><body><div class=\"a\">Hel"
    assert extract_html(raw) == '<!DOCTYPE html><html><body><div class="a">Hel'
    repaired = '<!DOCTYPE html><html><body><div class="a">Hel</div></body></html>'
    assert extract_html(raw, repair=True) == repaired


def test_extract_a_fragment_with_prose_around_it() -> None:
    assert extract_html("Sure! Here it is: <div>hi</div>\n\nHope it helps.") == "<div>hi</div>"


def test_a_bare_document_with_fences_inside_a_pre_is_kept_whole() -> None:
    doc = "<html><body><pre>\n```python\nprint(1)\n```\n</pre></body></html>"
    assert extract_html(doc) == doc


def test_text_without_html_becomes_an_escaped_pre_document() -> None:
    out = extract_html("I cannot see an image. 1 < 2 & 3 > 2")
    assert out.startswith("<!DOCTYPE html>")
    assert "<pre" in out and "1 &lt; 2 &amp; 3 &gt; 2" in out
    assert analyse(out)[1:3] == ([], [])
    assert "<pre" in extract_html("")


def _page(kb: int) -> str:
    card = (
        '<div class="card" id="c{i}"><h2>Title {i}</h2><p>Some <b>bold</b> text &amp; a '
        '<a href="/x?a=1&amp;b=2">link</a>.</p><ul><li>one</li><li>two</li></ul>'
        '<img src="img{i}.png" alt="pic"></div>\n'
    )
    body = "".join(card.format(i=i) for i in range(kb * 1024 // len(card) + 2))
    return (
        '<!DOCTYPE html><html><head><style>.card { margin: 4px; }</style></head><body>'
        f"<main>{body}</main><script>console.log(1 < 2);</script></body></html>"
    )


def test_renderable_prefix_of_a_30_kb_page_is_fast_enough_for_a_live_preview() -> None:
    doc = _page(30)
    assert len(doc) >= 30 * 1024
    t0 = time.perf_counter()
    for n in range(len(doc) // 2, len(doc), len(doc) // 20):
        renderable_prefix(doc[:n])
    per_call = (time.perf_counter() - t0) / 10
    assert per_call < 0.1  # 10 refreshes per second must stay well below one core
    assert renderable_prefix(doc) == doc


@pytest.mark.parametrize("step", [1, 7, 64])
def test_incremental_renderer_streaming_a_page(step: int) -> None:
    doc = _page(2)
    r = PreviewRenderer()
    for n in range(0, len(doc) + 1, step):
        out = r.update(doc[:n])
        _text, open_, errors, pending = analyse(out)
        assert (open_, errors, pending) == ([], [], "")
    assert r.update(doc) == doc
