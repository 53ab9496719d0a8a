"""The Export dialog writes each format, valid, and shows the notes the export returns.

The JSX and Vue output are compiled and rendered by the real tools when node and the tools
of ``packaging/node-tools.sh`` are here (the helpers of tests/unit/test_export.py); the
Python-side JSX scan runs always.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from web2code.app.export import ExportError, visible_text
from web2code.app.htmldom import parse
from web2code.app.ui.export_dialog import ExportDialog

from ..unit.test_export import _jsx_tags, _node_missing, render_with_node

OUT = Path(os.environ.get("WEB2CODE_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))

PAGE = """<!DOCTYPE html><html><head><title>Shop</title>
<style>.hero { background: #3366cc; color: white; padding: 12px } .card { border: 1px solid #ccc }</style>
<script>console.log("page script")</script></head>
<body><div class="hero" onclick="go()"><h1>Spring sale</h1><p style="font-size: 18px; margin-top: 4px">Up to
<b>50%</b> off {everything}</p></div>
<div class="card"><img src="logo.png" alt="logo"><label for="q">Search</label><input id="q" readonly>
<a href="javascript:alert(1)">Details</a></div></body></html>"""


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def dialog(qtbot: QtBot, tmp_path: Path) -> ExportDialog:
    site = tmp_path / "site"
    site.mkdir()
    (site / "logo.png").write_bytes(_png((200, 30, 30)))
    dlg = ExportDialog(PAGE, base=site, stem="spring sale")
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    return dlg


def test_each_format_is_written_and_valid(dialog: ExportDialog, tmp_path: Path) -> None:
    out = tmp_path / "out"
    html = dialog.export_to(out / "page.html", "html").read_text("utf-8")
    assert "data:image/png;base64," in html and 'src="logo.png"' not in html  # the local image is inlined
    assert visible_text(html) == visible_text(PAGE)

    with zipfile.ZipFile(dialog.export_to(out / "page.zip", "zip")) as zf:
        names = zf.namelist()
        index = zf.read("index.html").decode("utf-8")
        assets = [n for n in names if n.startswith("assets/")]
        assert len(assets) == 1 and zf.read(assets[0]) == _png((200, 30, 30))
    assert f'src="{assets[0]}"' in index and visible_text(index) == visible_text(PAGE)

    jsx = dialog.export_to(out / "SpringSale.jsx", "react").read_text("utf-8")
    assert "export default function SpringSale" in jsx
    stack: list[str] = []
    for kind, name, attrs in _jsx_tags(jsx):
        if kind == "open":
            stack.append(name)
        elif kind == "close":
            assert stack.pop() == name
        assert "class" not in attrs and "onclick" not in attrs and "for" not in attrs
    assert stack == []
    vue = dialog.export_to(out / "SpringSale.vue", "vue").read_text("utf-8")
    template = vue[vue.index("<template>") + len("<template>"):vue.rindex("</template>")]
    assert visible_text(template.replace("&#123;&#123;", "{{")) == visible_text(PAGE)
    assert not any(k.startswith("on") for el in parse(template).root.iter() for k, _ in el.attrs)
    assert sorted(p.name for p in out.iterdir()) == ["SpringSale.jsx", "SpringSale.vue", "page.html", "page.zip"]

    reason = _node_missing()
    if reason:
        pytest.skip(reason)
    react, vue_r = render_with_node([{"kind": "react", "code": jsx, "name": "SpringSale"},
                                     {"kind": "vue", "code": vue, "name": "SpringSale"}], tmp_path)
    for r in (react, vue_r):
        assert r["ok"], r.get("error")
        assert not [w for w in r["warnings"] if "Warning" in w or "warn" in w.lower()], r["warnings"]
        assert visible_text(r["html"]) == visible_text(PAGE)


def test_notes_are_shown_and_follow_the_format(dialog: ExportDialog) -> None:
    dialog.set_format("react")
    notes = [dialog.notes.item(i).text() for i in range(dialog.notes.count())]
    assert any("<script>" in n for n in notes), notes
    assert any("event attribute" in n for n in notes), notes
    assert any("javascript: URL" in n for n in notes), notes
    assert "export default function SpringSale" in dialog.preview.toPlainText()
    dialog.set_format("zip")
    assert "index.html" in dialog.preview.toPlainText() and "assets/" in dialog.preview.toPlainText()
    assert any("asset file" in dialog.notes.item(i).text() for i in range(dialog.notes.count()))
    dialog.set_format("html")
    assert not dialog.name_edit.isEnabled()  # the name is a component's only


def test_a_folder_or_unwritable_target_is_one_line_and_writes_nothing(dialog: ExportDialog, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is a folder"):
        dialog.export_to(tmp_path, "react")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot write"):
        dialog.export_to(blocker / "sub" / "page.vue", "vue")
    assert blocker.read_text() == "x" and not list(tmp_path.glob("**/*.incomplete"))
    with pytest.raises(ExportError, match="unknown export format"):
        dialog.export_to(tmp_path / "x.png", "png")


def test_a_generated_page_without_a_folder_exports(qtbot: QtBot, tmp_path: Path) -> None:
    dlg = ExportDialog(PAGE, stem="page")
    qtbot.addWidget(dlg)
    html = dlg.export_to(tmp_path / "p.html", "html").read_text("utf-8")
    assert 'src="logo.png"' in html  # nothing to inline: left as it was, and said so
    assert any("logo.png" in dlg.notes.item(i).text() for i in range(dlg.notes.count()))


def test_screenshot_export_dialog(qtbot: QtBot, dialog: ExportDialog) -> None:
    dialog.set_format("react")
    qtbot.wait(300)
    OUT.mkdir(parents=True, exist_ok=True)
    img: QImage = dialog.grab().toImage()
    assert img.save(str(OUT / "export_dialog.png"))
    arr = np.frombuffer(bytes(img.convertToFormat(QImage.Format.Format_RGB32).constBits()), np.uint8)
    assert len(np.unique(arr.reshape(-1, 4), axis=0)) > 8
    assert re.search(r"className=\"hero\"", dialog.preview.toPlainText())
