"""Editing one part of a page: element spans, the splice, undo/redo, the model's answer, images from the input."""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from web2code.app.edit import (
    Box,
    EditError,
    History,
    crop_for_box,
    element_for_box,
    extract_replacement,
    fill_images,
    locate,
    parse_path,
    read_source,
    replace_element,
    splice,
    unified_diff,
    write_source,
)
from web2code.app.htmldom import element_at, parse, path_of


# ---------------------------------------------------------------- known spans
@pytest.mark.parametrize(("page", "path", "span_text"), [
    ("<body><div>a</div><p>b</p></body>", [1], "<p>b</p>"),
    ("<p>one<p>two<div>d</div>", [1], "<p>two"),  # implied ends: the next <p>, then the <div>
    ("<ul><li>a<li>b <b>x</b>\n</ul>", [0, 1], "<li>b <b>x</b>\n"),  # the last <li> ends at </ul>
    ("<div><img src=a.png alt='a>b'><br/><input value=x></div>", [0, 0], "<img src=a.png alt='a>b'>"),
    ("<div><img src=a><br/><input value=x></div>", [0, 2], "<input value=x>"),
    ("<table><tr><td>1<td>2</table>", [0, 0, 0, 1], "<td>2"),  # implied <tbody>
    ("<svg viewBox='0 0 1 1'><path d='M0'/><g><circle r=1 /></g></svg>", [0, 1, 0], "<circle r=1 />"),
    ("<title>t</title><style>p{}</style>\n<h1>Hi</h1><p>x", [1], "<p>x"),  # no body; unclosed at the end
    ("<html><head></head><body>\n<main><script>var s = '</div>';</script><p>q</p></main>", [0, 1], "<p>q</p>"),
    ("<DIV CLASS=x>upper</div ><P>p", [0], "<DIV CLASS=x>upper</div >"),
    ("<div>a</p>b</div>", [0, 0], "</p>"),  # a stray </p> makes an empty <p>, as in browsers
])
def test_locate_finds_the_exact_source_span(page: str, path: list[int], span_text: str) -> None:
    el = locate(page, path)
    assert page[el.start:el.end] == span_text


def test_locate_refuses_a_wrong_path_or_tag() -> None:
    with pytest.raises(EditError, match="no element at 3"):
        locate("<p>a</p>", [3])
    with pytest.raises(EditError, match="<p> in the source but <div> in the render"):
        locate("<p>a</p>", [0], tag="DIV")
    with pytest.raises(EditError, match="implied"):
        locate("<table><tr><td>x</table>", [0, 0])
    assert parse_path("body>0>2") == [0, 2] == parse_path("0/2") == parse_path("[0, 2]")
    with pytest.raises(EditError, match="child indexes"):
        parse_path("div.x")


# ---------------------------------------------------------------- generated pages with known spans
@dataclass
class _Gen:
    rng: random.Random
    out: list[str] = field(default_factory=list)
    spans: dict[tuple[int, ...], list[int]] = field(default_factory=dict)  # path -> [start, end]
    pending: list[tuple[int, ...]] = field(default_factory=list)  # unclosed elements waiting for their end

    @property
    def pos(self) -> int:
        return sum(len(s) for s in self.out)

    def emit(self, text: str) -> None:
        self.out.append(text)

    def close_pending(self) -> None:
        for p in self.pending:
            self.spans[p][1] = self.pos
        self.pending.clear()

    def text(self) -> str:
        return self.rng.choice(["", "\n", " x ", "a &amp; b", "\r\n  ", "&lt;not a tag&gt;", "1 < 2",
                                "é€\udcff\r\n"])  # CRLF, and a byte that is not UTF-8 (surrogateescape)

    def element(self, path: tuple[int, ...], depth: int, last: bool, inline: bool = False) -> None:
        rng = self.rng
        if inline:  # in a <p> or <span>: a block would end the <p> (HTML's rule), so none here
            kind = rng.choice(["span", "img", "br/"] if depth < 3 else ["img", "br/"])
        else:
            kind = rng.choice(["div", "span", "p-open", "img", "br/", "ul", "script", "section", "P"]
                              if depth < 3 else ["span", "img", "p-open", "br/"])
        if kind == "script" and depth == 0:
            kind = "div"  # a page without <body> that starts with a script has it in the head
        if kind == "p-open" and not last:
            kind = "div"  # an unclosed <p> here is closed by the block that follows
        self.close_pending()
        start = self.pos
        self.spans[path] = [start, -1]
        attrs = rng.choice(["", ' class="a b"', " title='x>y'", ' data-x="&quot;q&quot;"', " hidden", "\nid=z"])
        if kind in ("img", "br/"):
            tag = "img" if kind == "img" else "br"
            self.emit(f"<{tag}{attrs}{rng.choice(['>', '/>', ' />'])}")
            self.spans[path][1] = self.pos
            return
        if kind == "p-open":
            self.emit(f"<p{attrs}>{self.text()}")
            self.pending.append(path)
            return
        if kind == "script":
            self.emit(f"<script{attrs}>var s = '</div><p>';</script>")
            self.spans[path][1] = self.pos
            return
        if kind == "ul":
            self.emit(f"<ul{attrs}>")
            for i in range(rng.randint(1, 3)):
                self.emit(self.text() if i else "")
                self.close_pending()  # an open <li> ends where the next one starts
                self.spans[(*path, i)] = [self.pos, -1]
                self.emit(f"<li>{self.text()}")
                if rng.random() < 0.5:
                    self.emit("</li>")
                    self.spans[(*path, i)][1] = self.pos
                else:
                    self.pending.append((*path, i))
            self.close_pending()
            self.emit("</ul>")
            self.spans[path][1] = self.pos
            return
        tag = "p" if kind == "P" else kind
        self.emit(f"<{kind}{attrs}>")
        n = rng.randint(0, 3)
        for i in range(n):
            self.emit(self.text())
            self.element((*path, i), depth + 1, i == n - 1, inline=kind in ("P", "span"))
        self.emit(self.text())
        self.close_pending()
        self.emit(rng.choice([f"</{tag}>", f"</{tag.upper()}>", f"</{tag} >"]))
        self.spans[path][1] = self.pos

    def page(self) -> str:
        head = self.rng.choice(["", "<!DOCTYPE html>\n<html><head><title>t</title></head>\n<body>\n",
                                "<style>p { color: red }</style>\n"])
        self.emit(head)
        n = self.rng.randint(1, 4)
        for i in range(n):
            self.emit(self.text() if i else "")
            self.element((i,), 0, i == n - 1)
        if head.startswith("<!DOCTYPE"):
            self.emit("\n")  # text before </body> is still in an open <p>
            self.close_pending()
            self.emit("</body></html>\n")
        self.close_pending()
        return "".join(self.out)


def _generated(seed: int) -> tuple[str, dict[tuple[int, ...], list[int]]]:
    g = _Gen(random.Random(seed))
    page = g.page()
    return page, {p: s for p, s in g.spans.items() if s[1] >= 0}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_element_of_a_generated_page_is_found_at_its_span(seed: int) -> None:
    page, spans = _generated(seed)
    doc = parse(page)
    for path, (start, end) in spans.items():
        el = element_at(doc, path)
        assert el is not None, (path, page)
        assert (el.start, el.end) == (start, end), (path, page[start:end], page[el.start:el.end])
        assert path_of(doc, el) == list(path)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.text(st.characters(codec="utf-8"), max_size=40), st.data())
def test_splice_leaves_everything_outside_the_element_byte_identical(seed: int, new: str, data: st.DataObject,
                                                                  ) -> None:
    page, spans = _generated(seed)
    path = data.draw(st.sampled_from(sorted(spans)))
    edit = replace_element(page, path, new)
    start, end = spans[path]
    before = page.encode("utf-8", "surrogateescape")
    after = edit.after.encode("utf-8", "surrogateescape")
    head, tail = page[:start].encode("utf-8", "surrogateescape"), page[end:].encode("utf-8", "surrogateescape")
    assert after.startswith(head) and after.endswith(tail)
    assert after == head + new.encode("utf-8") + tail
    assert before == head + page[start:end].encode("utf-8", "surrogateescape") + tail
    assert edit.after[edit.new_span[0]:edit.new_span[1]] == new


def test_pages_are_read_and_written_byte_for_byte(tmp_path: Path) -> None:
    raw = b"\xef\xbb\xbf<p>caf\xe9 \xff</p>\r\n<div>x</div>\r\n"  # BOM, Latin-1 bytes, CRLF
    page = tmp_path / "p.html"
    page.write_bytes(raw)
    text = read_source(page)
    edit = replace_element(text, [1], "<div>new</div>")
    out = tmp_path / "out.html"
    write_source(out, edit.after)
    assert out.read_bytes() == raw.replace(b"<div>x</div>", b"<div>new</div>")
    assert [p.name for p in tmp_path.iterdir()] == ["p.html", "out.html"] or sorted(
        p.name for p in tmp_path.iterdir()) == ["out.html", "p.html"]


# ---------------------------------------------------------------- history
@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.just("undo"), st.just("redo"), st.text(min_size=1, max_size=8)), max_size=30))
def test_undo_and_redo_restore_the_exact_text(ops: list[str]) -> None:
    h = History("v0")
    model, index = ["v0"], 0
    for op in ops:
        if op == "undo":
            if index == 0:
                with pytest.raises(EditError):
                    h.undo()
                continue
            index -= 1
            assert h.undo() == model[index]
        elif op == "redo":
            if index + 1 == len(model):
                with pytest.raises(EditError):
                    h.redo()
                continue
            index += 1
            assert h.redo() == model[index]
        else:
            text = model[index] + op
            h.push(text, "edit")
            del model[index + 1:]
            model.append(text)
            index += 1
        assert h.current == model[index]
        assert h.can_undo() == (index > 0) and h.can_redo() == (index + 1 < len(model))


def test_diff_shows_the_change() -> None:
    d = unified_diff("<p>a</p>\n<p>b</p>\n", "<p>a</p>\n<p>B!</p>\n", "page.html")
    assert "--- a/page.html" in d and "-<p>b</p>" in d and "+<p>B!</p>" in d and " <p>a</p>" in d
    h = History("x\n")
    h.push("y\n", "edit")
    assert "-x" in h.diff() and "+y" in h.diff()


# ---------------------------------------------------------------- the model's answer
@pytest.mark.parametrize(("raw", "want"), [
    ("<!DOCTYPE html><html><head><style>a{}</style></head><body>\n<div>new</div>\n</body></html>", "<div>new</div>"),
    ("Sure! Here it is:\n```html\n<button class=b>Go</button>\n```\nHope it helps.", "<button class=b>Go</button>"),
    ("<html><head><title>t</title></head><section>s</section></html>", "<section>s</section>"),
    ("<div>cut off <span>mid", "<div>cut off <span>mid"),
])
def test_extract_replacement_takes_the_elements_html(raw: str, want: str) -> None:
    assert extract_replacement(raw) == want


# ---------------------------------------------------------------- images from the input
COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (240, 200, 20), (150, 40, 200)]


def _crop_colour(uri: str) -> tuple[int, int, int]:
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    px = img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(px, tuple)
    return px[0], px[1], px[2]


def test_crops_land_in_the_right_boxes(tmp_path: Path) -> None:
    # The page as rendered 400 px wide; the input screenshot is 2x (800 px).
    page = ("<!DOCTYPE html><html><body>\n<h1>Shop</h1>\n<div class=grid>"
            "<img class=a>"                                         # no src
            "<img src='https://placehold.co/100x80' alt='two'>"     # a placeholder service
            "<img src=\"photo.jpg\" srcset=\"photo.jpg 2x\">"         # a file that is not there
            "<img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='>"  # a real image: kept
            "<div class=empty></div>"                               # an empty box
            "<img src=a.png>"                                       # below the screenshot: skipped
            "</div>\n<p>text stays</p>\n</body></html>\n")
    boxes = [{"path": [1, i], "tag": t, "x": 10 + 90 * i, "y": 50, "w": 80, "h": 60}
             for i, t in enumerate(["img", "img", "img", "img", "div"])]
    boxes.append({"path": [1, 5], "tag": "img", "x": 10, "y": 900, "w": 80, "h": 60})
    boxes.append({"path": [0], "tag": "h1", "x": 10, "y": 5, "w": 300, "h": 30})  # not an image: untouched
    screenshot = Image.new("RGB", (800, 700), (255, 255, 255))
    for i, colour in enumerate(COLORS):
        x, y = (10 + 90 * i) * 2, 50 * 2
        screenshot.paste(colour, (x, y, x + 160, y + 120))

    out, filled = fill_images(page, screenshot, 400, boxes, empty_boxes=True, base=tmp_path)
    assert [(f.path, f.kind) for f in filled] == [((1, 0), "img"), ((1, 1), "img"), ((1, 2), "img"),
                                                 ((1, 4), "box")]
    assert filled[0].crop == (20, 100, 180, 220)
    doc = parse(out)
    for f, colour in zip(filled, [COLORS[0], COLORS[1], COLORS[2], COLORS[4]], strict=True):
        el = element_at(doc, list(f.path))
        assert el is not None
        img = el if el.tag == "img" else el.elements[0]
        got = _crop_colour(img.attr("src") or "")
        assert all(abs(a - b) <= 3 for a, b in zip(got, colour, strict=True)), (f.path, got, colour)
    two = element_at(doc, [1, 1])
    assert two is not None and two.attr("alt") == "two" and two.attr("class") is None
    three = element_at(doc, [1, 2])
    assert three is not None and three.attr("srcset") is None  # it would win over the crop
    # everything that was not filled is as it was
    assert out.startswith("<!DOCTYPE html><html><body>\n<h1>Shop</h1>\n<div class=grid>")
    assert "<img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='>" in out
    assert out.endswith("<img src=a.png></div>\n<p>text stays</p>\n</body></html>\n")
    # without empty_boxes the empty <div> stays empty; a real local file is not a placeholder
    (tmp_path / "photo.jpg").write_bytes(b"x")
    out2, filled2 = fill_images(page, screenshot, 400, boxes, base=tmp_path)
    assert [f.path for f in filled2] == [(1, 0), (1, 1)] and "<div class=empty></div>" in out2


def test_crop_scaling_and_box_choice() -> None:
    img = Image.new("RGB", (1000, 500))
    assert crop_for_box(img, 500, (10, 20, 30, 40)) == (20, 40, 80, 120)
    assert crop_for_box(img, 500, (10, 400, 30, 40)) is None
    boxes = [Box((0,), "div", 0, 0, 400, 300), Box((0, 1), "p", 10, 10, 100, 50), Box((1,), "p", 0, 400, 10, 10)]
    assert element_for_box(boxes, (12, 8, 100, 52)).path == (0, 1)
    with pytest.raises(EditError):
        element_for_box(boxes, (900, 900, 5, 5))


def test_splice_rejects_a_span_outside_the_page() -> None:
    with pytest.raises(EditError):
        splice("abc", (2, 9), "x")
