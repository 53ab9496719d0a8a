"""What crosses the worker pipe: the image the model sees, not the user's full-resolution picture.

The window hands the worker a Pillow image of whatever the user opened (a 4000×3000
screenshot is 36 MB of pixels). The model sees a padded square at its tower's size;
the pipe must carry that (losslessly), and the engine's caches must behave as if the
whole picture had been sent: the encoded image is found again by its pixels, and the
text the window read in the original (the OCR cache) still drafts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.fixtures_models import TinyPair
from tests.integration.test_ocr_drafts import INSTRUCTION, TEXT, _ocr_cache, _text_image  # noqa: F401
from tests.integration.test_ocr_drafts import pair as ocr_pair  # noqa: F401
from tests.offload import OFFLOAD
from web2code.app.engine.backend import LocalBackend, Request
from web2code.app.engine.events import Event, Failed, Finished, GenerationParams, Token
from web2code.app.engine.pair import ModelPair, discover
from web2code.app.engine.session import EngineOptions
from web2code.app.engine.worker import WorkerBackend

PIPE_LIMIT = 1_000_000  # bytes a request may cost the pipe, whatever the picture's size
PARAMS = GenerationParams(temperature=0.0, max_tokens=16, seed=1)


@pytest.fixture(scope="module")
def pair(tiny_pair: TinyPair) -> ModelPair:
    return next(p for p in discover(tiny_pair.dir) if p.quant == "F32")


def _big_page(size: tuple[int, int] = (4000, 3000)) -> Image.Image:
    """A large screenshot: flat regions, text-like lines and a photo-like band of noise (a big PNG)."""
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, size[0], 240), fill="#2255aa")
    for y in range(1400, size[1] - 100, 60):
        d.line((200, y, size[0] - 600, y), fill="#333333", width=12)
    rng = np.random.default_rng(7)
    band = rng.integers(0, 256, (800, size[0], 3), dtype=np.uint8)
    img.paste(Image.fromarray(band), (0, 400))
    return img


def _run(backend: WorkerBackend | LocalBackend, request: Request) -> tuple[list[int], Finished]:
    events: list[Event] = list(backend.stream(request))
    failed = [e for e in events if isinstance(e, Failed)]
    assert not failed, failed
    fin = events[-1]
    assert isinstance(fin, Finished), events[-3:]
    return [e.token_id for e in events if isinstance(e, Token)], fin


def _sent(worker: WorkerBackend, request: Request) -> tuple[int, list[int], Finished]:
    """Bytes this request wrote to the child's stdin, its tokens and its end."""
    child = worker._child  # the pipe under test
    before = child.sent_bytes if child is not None else 0
    ids, fin = _run(worker, request)
    child = worker._child
    assert child is not None
    before = before if child.sent_bytes >= before else 0
    return child.sent_bytes - before, ids, fin


@pytest.fixture
def worker(pair: ModelPair) -> Iterator[WorkerBackend]:
    w = WorkerBackend(pair, EngineOptions(**OFFLOAD))  # type: ignore[arg-type]
    yield w
    w.close()


def test_a_big_image_crosses_the_pipe_small_and_the_model_sees_the_same_pixels(
        pair: ModelPair, worker: WorkerBackend, tmp_path: Path) -> None:
    img = _big_page()
    path = tmp_path / "big.png"
    img.save(path)
    png = path.read_bytes()
    assert len(png) > 5 * PIPE_LIMIT  # the picture itself would not fit the budget
    with LocalBackend(pair, EngineOptions(**OFFLOAD)) as local:  # type: ignore[arg-type]
        expected, _ = _run(local, Request(img, PARAMS))
    # A path: the child reads the file itself, the whole picture (the reference for the cache below).
    _, by_path, first = _sent(worker, Request(path, PARAMS))
    assert not first.stats.reused_image
    for source in (img, png):  # what the window sends (a Pillow image), and a file's bytes
        sent, ids, fin = _sent(worker, Request(source, PARAMS))
        assert sent < PIPE_LIMIT, f"{type(source).__name__}: {sent} bytes written to the worker's pipe"
        assert ids == expected == by_path
        # The encoded-image cache is keyed by the model-ready pixels: a hit proves they are identical.
        assert fin.stats.reused_image, type(source).__name__


def test_a_small_image_is_sent_as_it_is(pair: ModelPair, worker: WorkerBackend) -> None:
    """Below the tower's size there is nothing to save: the request still works and stays small."""
    img = Image.new("RGB", (20, 12), "#884422")
    sent, ids, fin = _sent(worker, Request(img, PARAMS))
    assert sent < 20_000 and fin.stats.n_generated == len(ids) > 0
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with LocalBackend(pair, EngineOptions(**OFFLOAD)) as local:  # type: ignore[arg-type]
        assert _run(local, Request(buf.getvalue(), PARAMS))[0] == ids


def test_the_worker_drafts_from_the_text_the_window_read_in_the_full_picture(ocr_pair: ModelPair) -> None:  # noqa: F811
    """The window reads the original's text into the OCR cache (keyed by its full-resolution pixels);
    the worker only gets the small image, and must still find that text and draft from it."""
    from web2code.app.fidelity import ocr

    img = _text_image().resize((2000, 520))
    img.putpixel((1999, 519), (251, 251, 251))  # pixels of its own: no cache entry from other tests
    ocr.read_blocks(img)  # what the window does when an image is opened (Scorer.prefetch)
    params = GenerationParams(instruction=INSTRUCTION, temperature=0.0, max_tokens=48)
    opts = EngineOptions(**OFFLOAD, kv_f32=True, speculative=True, ocr_drafts=True)  # type: ignore[arg-type]
    with LocalBackend(ocr_pair, opts) as local:
        expected, _ = _run(local, Request(img, params))
    w = WorkerBackend(ocr_pair, opts)
    try:
        sent, ids, fin = _sent(w, Request(img, params))
    finally:
        w.close()
    assert sent < PIPE_LIMIT
    assert ids == expected
    assert fin.stats.image_text_draft_tokens > 0, (TEXT, fin.stats)
