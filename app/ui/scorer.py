"""Score generated pages against the input image off the GUI thread.

Rendering needs the GUI thread (QtWebEngine), but it is asynchronous and cheap
there; the OCR of the input image and the scoring itself run on a worker thread,
and the OCR starts at once, in parallel with the render. Results come back as a
queued signal, so streaming never waits for a score. Requests are queued and
rendered one at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, Signal

from ..fidelity import Fidelity, Page, reference_page, score_pages
from .render import Rendered, Renderer, render_html_sync


@dataclass
class Scored:
    token: Any  # whatever the caller passed (an entry id, a variant number)
    fidelity: Fidelity
    rendered: Rendered


def candidate_page(r: Rendered) -> Page:
    return Page(r.width, r.height, r.image, r.blocks, r.boxes)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fidelity")
        return _pool


class Scorer(QObject):
    """``score(token, image, html)`` → ``scored(Scored)`` or ``failed(token, message)``."""

    scored = Signal(object)
    failed = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.renderer = Renderer(self)
        self._queue: deque[tuple[Any, Image.Image, str, str, Future[Page]]] = deque()
        self._refs: dict[int, tuple[Image.Image, Future[Page]]] = {}
        self._closed = False

    def _reference(self, image: Image.Image) -> Future[Page]:
        key = id(image)
        hit = self._refs.get(key)
        if hit is not None and hit[0] is image:
            return hit[1]
        fut = _executor().submit(reference_page, image)
        self._refs = {key: (image, fut)}  # the latest input only
        return fut

    def prefetch(self, image: Image.Image) -> None:
        """Read the input's text now (a worker thread, cached by content): the score will need it, and
        the engine drafts from it as soon as it is in the cache (EngineOptions.ocr_run)."""
        if not self._closed:
            self._reference(image)

    def score(self, token: Any, image: Image.Image, html: str, mode: str = "auto") -> None:
        if self._closed:
            return
        self._queue.append((token, image, html, mode, self._reference(image)))
        self._next()

    def pending(self) -> int:
        return len(self._queue) + (1 if self.renderer.busy else 0)

    def cancel(self) -> None:
        self._queue.clear()

    def _next(self) -> None:
        if self.renderer.busy or not self._queue or self._closed:
            return
        token, image, html, mode, ref = self._queue.popleft()

        def rendered(r: Rendered | None, err: str) -> None:
            if r is None:
                self.failed.emit(token, f"could not render the page: {err}")
            else:
                fut = _executor().submit(self._score, ref, r, mode)
                fut.add_done_callback(lambda f: self._done(token, r, f))
            self._next()

        self.renderer.render_html(html, image.width, image.height, rendered)

    @staticmethod
    def _score(ref: Future[Page], r: Rendered, mode: str) -> Fidelity:
        return score_pages(ref.result(), candidate_page(r), mode)

    def _done(self, token: Any, r: Rendered, fut: Future[Fidelity]) -> None:  # on the worker thread
        if self._closed:
            return
        try:
            fid = fut.result()
        except Exception as exc:  # an OCR or scoring failure is a message, not a crash
            self.failed.emit(token, f"could not score the page: {exc}")
            return
        self.scored.emit(Scored(token, fid, r))

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        self.renderer.close()


def score_sync(image: Image.Image, html: str, mode: str = "auto", *, renderer: Renderer | None = None,
               on_reference: Callable[[Page], None] | None = None) -> Scored:
    """Score ``html`` against ``image`` now (the command line): OCR and render overlap."""
    ref_future = _executor().submit(reference_page, image)
    rendered = render_html_sync(html, image.width, image.height, renderer=renderer)
    ref = ref_future.result()
    if on_reference is not None:
        on_reference(ref)
    return Scored(None, score_pages(ref, candidate_page(rendered), mode), rendered)
