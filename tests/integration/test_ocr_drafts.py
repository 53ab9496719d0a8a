"""Drafts from the image's own text, and the prompt head kept from load, through the real llama.cpp.

The model here has a copy head 20 positions back (converters/synthetic.py): its
greedy output replays the end of the instruction, which repeats the text drawn
in the image, so the OCR source (real rapidocr on a real image) has something
to propose and the model something to accept. Whatever is proposed, the tokens
must be exactly those of plain decoding: the sampler decides (sampling.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.fixtures_models import TinyPair
from tests.offload import OFFLOAD
from web2code.app.engine.events import Event, Finished, GenerationParams, Token
from web2code.app.engine.ocrdraft import build_text_source, read_image_text
from web2code.app.engine.pair import ModelPair, discover
from web2code.app.engine.prompt import SYSTEM
from web2code.app.engine.session import EngineOptions, Session
from web2code.app.engine.speculative import NGRAM, OCR

COPY_DISTANCE = 20
TEXT = "Simple pricing for growing teams everywhere"
INSTRUCTION = f"Please write the page that says {TEXT}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> ModelPair:
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.synthetic import write_checkpoint

    root = tmp_path_factory.mktemp("ocr-pair")
    ckpt = write_checkpoint(root / "ckpt", seed=1, tokenizer_json=reference_tokenizer, copy_distance=COPY_DISTANCE)
    convert(ConvertOptions(outdir=root / "out", source=str(ckpt), quants=["F32"], name="tiny-ocr"))
    return next(p for p in discover(root / "out") if p.quant == "F32")


@pytest.fixture(scope="module", autouse=True)
def _ocr_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("WEB2CODE_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


def _text_image() -> Image.Image:
    img = Image.new("RGB", (1000, 260), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((30, 30), TEXT, fill=(17, 24, 39), font=ImageFont.load_default(size=40))
    d.rectangle((30, 150, 320, 215), fill=(59, 130, 246))
    d.text((50, 160), "Get started", fill=(255, 255, 255), font=ImageFont.load_default(size=40))
    return img


def _sketch() -> Image.Image:
    """A wireframe: boxes and lines, no text."""
    img = Image.new("RGB", (800, 600), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rectangle((40, 40, 760, 120), outline=(30, 30, 30), width=4)
    d.rectangle((40, 160, 380, 560), outline=(30, 30, 30), width=4)
    d.line((420, 200, 760, 200), fill=(30, 30, 30), width=4)
    d.line((420, 260, 700, 260), fill=(30, 30, 30), width=4)
    return img


def _run(session: Session, img: Image.Image, params: GenerationParams) -> tuple[list[int], Finished]:
    ids: list[int] = []
    fin: Finished | None = None
    for ev in session.run(img, params):
        if isinstance(ev, Token):
            ids.append(ev.token_id)
        elif isinstance(ev, Finished):
            fin = ev
    assert fin is not None
    return ids, fin


def _options(**kw: object) -> EngineOptions:
    return EngineOptions(**OFFLOAD, kv_f32=True, speculative=True, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("params", [
    GenerationParams(instruction=INSTRUCTION, temperature=0.0, max_tokens=48),
    # The tiny model's logits are flat: at 0.03 it still mostly copies (drafts kept, one word drawn
    # differently), at 0.05 it writes random tokens after a few words (the text's drafts rejected).
    GenerationParams(instruction=INSTRUCTION, temperature=0.03, max_tokens=48, seed=1234),
    GenerationParams(instruction=INSTRUCTION, temperature=0.05, max_tokens=48, seed=1234),
], ids=["greedy", "sampled-mostly-kept", "sampled-rejected"])
def test_output_is_identical_with_and_without_the_image_text_source(pair: ModelPair,
                                                                     params: GenerationParams) -> None:
    img = _text_image()
    with Session(pair, _options(ocr_drafts=False)) as plain:
        expected, fin_plain = _run(plain, img, params)
        assert OCR not in plain.last_drafts and plain.last_ocr is None
    with Session(pair, _options(ocr_drafts=True, ocr_wait=True)) as s:
        got, fin = _run(s, img, params)
        by_source = dict(s.last_drafts)
        assert s.last_ocr is not None and any(TEXT in b[0] for b in s.last_ocr.blocks), s.last_ocr
        again, _ = _run(s, img, params)  # reuse after drafted runs: the KV bookkeeping stays exact
    assert got == expected and again == expected
    # The image's text really drafted, and (but where sampling strays) the model kept some of it.
    assert by_source[OCR][0] > 0, by_source
    assert by_source[OCR][1] > 0 or params.temperature >= 0.05, by_source
    if params.temperature >= 0.05:
        assert by_source[OCR][1] < by_source[OCR][0]  # rejected text drafts rolled back exactly
    assert fin.stats.draft_tokens == by_source[OCR][0] + by_source[NGRAM][0]
    assert fin.stats.accepted_draft_tokens == by_source[OCR][1] + by_source[NGRAM][1]
    assert (fin.stats.image_text_draft_tokens, fin.stats.image_text_accepted_tokens) == by_source[OCR][:2]
    assert fin_plain.stats.image_text_draft_tokens == 0
    assert fin_plain.stats.finish_reason == fin.stats.finish_reason


def test_a_sketch_gives_no_text_drafts_and_costs_nothing_on_the_decoding_thread(pair: ModelPair) -> None:
    img = _sketch()
    text = read_image_text(img, nice=False)
    assert text.blocks == ()  # nothing to read
    p = GenerationParams(temperature=0.0, max_tokens=32)
    with Session(pair, _options(ocr_drafts=False)) as plain:
        expected, _ = _run(plain, img, p)
    with Session(pair, _options(ocr_drafts=True, ocr_wait=True)) as s:
        got, _ = _run(s, img, p)
        assert s.last_ocr is not None and s.last_ocr.blocks == ()
        assert s.last_drafts.get(OCR, (0, 0, 0)) == (0, 0, 0)
        # What the decoding thread pays per step for the source: a few dictionary lookups.
        src = build_text_source(text, s.tokenize, s.token_bytes)
        history = list(range(1000, 1400))
        t0 = time.perf_counter()
        for i in range(2000):
            if src is not None:
                assert src.draft(history[: 100 + i % 300], 3) == ([], 0)
        assert time.perf_counter() - t0 < 0.2
    assert got == expected


def test_the_prompt_head_kept_from_load_gives_the_tokens_of_a_fresh_evaluation(tiny_pair: TinyPair) -> None:
    pairs = [p for p in discover(tiny_pair.dir) if p.quant == "F32"]
    img = _text_image()
    runs: dict[bool, list[list[int]]] = {}
    for warm in (False, True):
        with Session(pairs[0], EngineOptions(**OFFLOAD, kv_f32=True, warm_prefix=warm)) as s:
            head = s.tokenize(f"{SYSTEM} USER: ")
            assert [k for k in s._kv_keys] == (head if warm else [])
            out = []
            for p in (GenerationParams(temperature=0.0, max_tokens=24),
                      GenerationParams(temperature=0.9, max_tokens=24, seed=99),
                      GenerationParams(temperature=0.9, max_tokens=24, seed=99, n_variants=2)):
                ids, fin = _run(s, img, p) if p.n_variants == 1 else _run_first_variant(s, img, p)
                out.append(ids)
                if warm and not out[1:]:
                    # The first request after load evaluates only the image and what follows it.
                    assert fin.stats.reused_prefix_tokens == len(head)
            runs[warm] = out
    assert runs[True] == runs[False]


def _run_first_variant(session: Session, img: Image.Image, params: GenerationParams) -> tuple[list[int], Finished]:
    events: list[Event] = list(session.run(img, params))
    ids = [e.token_id for e in events if isinstance(e, Token) and e.variant == 0]
    fin = next(e for e in events if isinstance(e, Finished) and e.stats.variant == 0)
    return ids, fin


def test_the_engine_drafts_from_text_the_client_read_without_loading_an_ocr(
        pair: ModelPair, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the engine only takes the text the window or the command line left in the OCR cache
    (it polls for it, never waits); the OCR engine, a quarter of a GiB, never loads in its process."""
    from web2code.app.fidelity import ocr

    img = _text_image()
    img.putpixel((999, 259), (254, 254, 254))  # pixels of its own: no cache entry from the tests above
    params = GenerationParams(instruction=INSTRUCTION, temperature=0.0, max_tokens=48)
    real_engine = ocr._get_engine
    monkeypatch.setattr(ocr, "_get_engine", lambda: (_ for _ in ()).throw(AssertionError("OCR loaded")))
    with Session(pair, _options(ocr_drafts=True)) as s:
        expected, _ = _run(s, img, params)
        assert s.last_ocr is None and OCR not in s.last_drafts  # nothing cached: no text drafts
        monkeypatch.setattr(ocr, "_get_engine", real_engine)
        ocr.read_blocks(img)  # the client reads the text (as the window does when an image is opened)
        monkeypatch.setattr(ocr, "_get_engine", lambda: (_ for _ in ()).throw(AssertionError("OCR loaded")))
        got, _ = _run(s, img, params)
        assert s.last_ocr is not None and any(TEXT in b[0] for b in s.last_ocr.blocks)
        assert s.last_drafts[OCR][0] > 0
    assert got == expected


def test_the_command_line_reports_text_drafts_and_no_ocr_drafts_turns_them_off(
        pair: ModelPair, tmp_path: Path) -> None:
    """``generate --json`` says how many drafts came from the image's text; ``--no-ocr-drafts`` leaves
    that source out and nothing else: the same tokens, the n-gram drafts still on."""
    import json
    import os
    import subprocess
    import sys

    from web2code.app.fidelity import ocr

    img = _text_image()
    img.putpixel((998, 258), (253, 253, 253))  # pixels of its own
    path = tmp_path / "page.png"
    img.save(path)
    ocr.read_blocks(img)  # in the cache before the engine's first step: the result does not race the OCR
    runs = {}
    for flag in ((), ("--no-ocr-drafts",)):
        r = subprocess.run([sys.executable, "-m", "web2code.app", "generate", str(path), "--model", str(pair.model),
                            "--mmproj", str(pair.mmproj), "--instruction", INSTRUCTION, "--temperature", "0",
                            "--max-tokens", "48", "--json", *flag],
                           capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)
        assert r.returncode == 0, r.stderr
        runs[bool(flag)] = json.loads(r.stdout)
    with_text, without = runs[False], runs[True]
    assert with_text["image_text_draft_tokens"] > 0 and with_text["image_text_accepted_tokens"] > 0
    assert without["image_text_draft_tokens"] == 0 and without["draft_tokens"] > 0
    assert with_text["token_ids"] == without["token_ids"]


def test_the_session_measures_what_a_step_and_a_verify_batch_cost_on_its_device(pair: ModelPair) -> None:
    """The pause rule weighs accepted drafts against this device's own batch cost, measured as it decodes
    (one-row steps and verify batches), and the next request starts from those figures."""
    img = _text_image()
    params = GenerationParams(instruction=INSTRUCTION, temperature=0.0, max_tokens=48)
    with Session(pair, _options(ocr_drafts=False)) as s:
        _run(s, img, params)
        costs = s.step_costs
        assert costs is not None and len(costs.batch) > 0  # the copy head's drafts were verified in batches
        assert all(t > 0 for t in [*costs.single, *costs.batch])
        n = len(costs.batch)
        _run(s, img, params)
        assert s.step_costs is costs and len(costs.batch) > n  # kept and added to across requests
        d = s.new_drafter()
        assert d.costs is costs
        if costs.calibrated:
            assert d.extra_cost == costs.extra
