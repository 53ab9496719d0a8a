"""The window scores what it generates: score and sub-scores shown, matched blocks drawn, variants ranked,
the score kept in the history; scoring never holds up the GUI thread."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from pytestqt.qtbot import QtBot

from tests import fidelity_pages as fp
from web2code.app.history import History
from web2code.app.ui.render import render_html_sync

from .helpers import close_window, make_window, page_image, wait_idle

OUT = Path(os.environ.get("WEB2CODE_SCREENSHOTS", Path(__file__).resolve().parents[2] / "build" / "screenshots"))


@pytest.fixture
def with_model(tiny_pair: object, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(tiny_pair.dir))  # type: ignore[attr-defined]
    return tiny_pair


def test_variants_are_scored_ranked_best_first_and_the_best_is_shown(qtbot: QtBot, tmp_path: Path) -> None:
    site = fp.make_site(41)
    shot = render_html_sync(site.html(), 1024, 700)
    image = Image.fromarray(shot.image)
    win = make_window(qtbot)
    try:
        win.resize(1500, 950)
        win.inputs.set_input(image, "site.png")
        pages = {0: fp.make_site(77).html(), 1: fp.change_text(site, 1, seed=3).html(), 2: site.html()}
        chosen: list[int] = []
        win.page.fidelity.variant_chosen.connect(lambda n, _h: chosen.append(n))
        # the GUI thread stays free while pages render and the OCR and the metrics run: timer ticks
        # keep coming until the last score arrives (showing the chosen page afterwards is not scoring)
        ticks: list[float] = []
        from PySide6.QtCore import QTimer

        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        scored: list[object] = []
        win.page.fidelity.scorer.scored.connect(lambda r: (scored.append(r), len(scored) == 3 and timer.stop()))
        timer.start(20)
        t0 = time.monotonic()
        win.page.fidelity.score(image, pages, token=0)
        qtbot.waitUntil(lambda: bool(chosen), timeout=120000)
        elapsed = time.monotonic() - t0
        timer.stop()
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(scored) == 3 and max(gaps) < 0.5, \
            f"GUI thread blocked for {max(gaps):.2f} s while scoring ({elapsed:.1f} s)"
        ranked = win.page.fidelity.ranked()
        assert [v.number for v in ranked] == [2, 1, 0]  # identical, one text changed, another page
        assert ranked[0].fidelity is not None and ranked[0].fidelity.score >= 0.9
        assert chosen == [2] and win.page.code.editor.toPlainText() == pages[2]
        labels = [win.page.fidelity.variants.item(i).text() for i in range(win.page.fidelity.variants.count())]
        assert labels[0].startswith("Variant 3:") and len(labels) == 3
        assert win.page.fidelity.button.text() == f"Fidelity {ranked[0].fidelity.score:.2f}"
        # another variant from the list goes to the code view and the preview
        win.page.fidelity._chosen(win.page.fidelity.variants.item(2))
        assert win.page.code.editor.toPlainText() == pages[0]
        win.page.compare_box.setCurrentIndex(3)
        assert win.page.preview_stack.currentWidget() is win.page.fidelity
        qtbot.wait(200)
        OUT.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(OUT / "fidelity_compare.png"))
        fid = ranked[0].fidelity
        assert fid.pairs and "Blocks" in win.page.fidelity.summary.text()
        win.page.compare_box.setCurrentIndex(0)
        assert win.page.preview_stack.currentWidget() is win.page.preview_area
    finally:
        close_window(qtbot, win)


def test_a_generated_page_is_scored_and_its_score_kept_in_history(qtbot: QtBot, with_model: object,
                                                                   tmp_path: Path) -> None:
    win = make_window(qtbot, max_tokens=32)
    try:
        win.inputs.open_path(page_image(tmp_path / "page.png", size=(480, 320)))
        win.params.variants.setValue(2)
        win.params.temperature.setValue(0.8)
        stored: list[dict[str, object]] = []
        win.page.fidelity.scored.connect(lambda _t, payload: stored.append(payload))
        assert win.requests.generate()
        wait_idle(qtbot, win)
        qtbot.waitUntil(lambda: bool(stored), timeout=120000)
        payload = stored[0]
        assert 0.0 <= float(payload["score"]) <= 1.0  # type: ignore[arg-type]
        assert set(payload["variants"]) == {"0", "1"}  # type: ignore[arg-type]
        entry = History().get(win.requests.current_entry_id)
        assert entry is not None and entry.fidelity["score"] == payload["score"]
        assert entry.params.get("n_variants") == 2
        win.page.fidelity.show_stored({})
        assert win.page.fidelity.button.text() == "Fidelity –"
        win.reopen_entry(entry)
        assert win.page.fidelity.button.text() == f"Fidelity {float(payload['score']):.2f}"  # type: ignore[arg-type]
    finally:
        close_window(qtbot, win)
