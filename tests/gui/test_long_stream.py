"""Real-length pages through the real window: thousands of tokens, several regenerations.

PySide6 6.12.0 dropped a reference to ``True`` on every signal emit and the
window died after about a thousand tokens; no earlier GUI test streamed more
than a few hundred. The model here has the real 2,048-token context, so each
generation is as long as a real page.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from web2code.app.ui.generation import FRAME_MS

from .helpers import close_window, make_window, page_image, wait_idle

TARGET_TOKENS = 5000


def test_thousands_of_tokens_across_regenerations_keep_the_window_alive(
        qtbot: QtBot, long_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB2CODE_MODELS_DIR", str(long_pair))
    win = make_window(qtbot)
    win.inputs.open_path(page_image(tmp_path / "page.png"))
    win.params.max_tokens.setValue(2048)  # the engine clamps to what the context leaves
    win.params.temperature.setValue(0.8)
    batches: list[int] = []
    streamed_s = 0.0
    total = runs = 0
    before = sys.getrefcount(True), sys.getrefcount(False)
    while total < TARGET_TOKENS and runs < 10:
        started = win.requests.generate() if runs == 0 else win.requests.regenerate()
        assert started, win.banner.text()
        job = win.requests.job
        assert job is not None
        job.delivered.connect(lambda evs: batches.append(len(evs)))
        t0 = time.monotonic()
        wait_idle(qtbot, win, 300_000)
        streamed_s += time.monotonic() - t0
        assert "Finished" in win.status.phase_label.text(), (win.status.phase_label.text(), win.banner.text())
        assert win.status.tokens_label.text() == f"{win.status.n_tokens} tokens"
        total += win.status.n_tokens
        runs += 1
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert total >= TARGET_TOKENS, f"{total} tokens in {runs} generations"
    assert runs >= 2
    assert win.isVisible() and win.page.code.editor.toPlainText().strip()
    # No references to True or False go missing (a leaking binding loses one per signal, ~1,000 here;
    # objects created meanwhile, e.g. history rows, may hold a few more).
    assert after[0] - before[0] >= -64 and after[1] - before[1] >= -64, (before, after)
    # Events reach the window in batches, at most about one per frame, not one signal per token.
    assert sum(batches) >= total
    assert len(batches) <= streamed_s * 1000 / FRAME_MS + 4 * runs, (len(batches), streamed_s)
    print(f"\n{total} tokens in {runs} generations, {streamed_s:.1f} s; {len(batches)} deliveries "
          f"({total / len(batches):.1f} events each); refcount of True {before[0]} -> {after[0]}")
    close_window(qtbot, win)
