"""The engine on a tiny converted pair, through the real llama.cpp.

The tiny model has a "copy head" (converters/synthetic.py) that attends
COPY_DISTANCE positions back: its greedy output replays the image rows and then
the instruction's tokens, so the output depends on the image, on the exact
prompt ids and on the logit offset. These tests prove the engine drives
llama.cpp the way the model was trained: exact prompt ids, the logit offset on
every step, determinism, cancel, and reuse of the encoded image and KV prefix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import TinyPair
from tests.offload import OFFLOAD
from tests.unit.test_prompt import expected_prompt_token_ids
from web2code.app.engine.backend import LocalBackend
from web2code.app.engine.events import Event, Failed, Finished, GenerationParams, Progress, Started, Token
from web2code.app.engine.image import prepare_for_model
from web2code.app.engine.pair import ModelPair, discover
from web2code.app.engine.prompt import DEFAULT_INSTRUCTION, build_prompt
from web2code.app.engine.session import EngineOptions, Session


def _image(seed: int = 0, size: int = 336) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


#: Far enough back that the first generated tokens copy image rows (4 on the tiny tower).
COPY_DISTANCE = 20


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> ModelPair:
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.synthetic import write_checkpoint

    root = tmp_path_factory.mktemp("engine-pair")
    ckpt = write_checkpoint(root / "ckpt", seed=1, tokenizer_json=reference_tokenizer, copy_distance=COPY_DISTANCE)
    convert(ConvertOptions(outdir=root / "out", source=str(ckpt), quants=["F32"], name="tiny-engine"))
    found = [p for p in discover(root / "out") if p.quant == "F32"]
    assert found, "the converter's manifest lists the F32 model"
    return found[0]


@pytest.fixture(scope="module")
def backend(pair: ModelPair) -> Iterator[LocalBackend]:
    b = LocalBackend(pair, EngineOptions(**OFFLOAD, kv_f32=True))
    yield b
    b.close()


def _run(events: Iterator[Event]) -> tuple[list[int], str, Finished | None, list[Event]]:
    ids: list[int] = []
    text: list[str] = []
    fin = None
    seen: list[Event] = []
    for ev in events:
        seen.append(ev)
        if isinstance(ev, Token):
            ids.append(ev.token_id)
            text.append(ev.text)
        elif isinstance(ev, Finished):
            fin = ev
        elif isinstance(ev, Failed):
            pytest.fail(f"request failed: {ev.message} {ev.detail}")
    return ids, "".join(text), fin, seen


def _manual_greedy(session: Session, image: Image.Image, n: int, *, with_offset: bool) -> list[int]:
    """Greedy decoding computed here from llama.cpp's raw logits, token by token."""
    prepared = prepare_for_model(image, image_size=session.info.image_size)
    fp, emb, _ = session.encode_image(prepared)
    keys = session.prompt_items(build_prompt(DEFAULT_INSTRUCTION), fp, emb)
    session._kv_keys = []  # force a full prefill
    for _ in session._prefill(keys, emb):
        pass
    offset = session.info.logit_offset
    assert offset is not None
    out: list[int] = []
    pos = len(keys)
    for _ in range(n):
        logits = session.logits().astype(np.float64)
        if with_offset:
            logits = logits + offset
        tok = int(np.argmax(logits))
        if tok == 2:
            break
        out.append(tok)
        session._decode_tokens([tok], pos)
        session._kv_keys.append(tok)
        pos += 1
    return out


def test_greedy_generation_equals_llama_cpp_logits_plus_offset(backend: LocalBackend) -> None:
    img = _image(1)
    ids, _, fin, _ = _run(backend.generate(img, GenerationParams(temperature=0.0, max_tokens=24)))
    assert fin is not None and fin.stats.n_generated == len(ids) > 0
    session = backend.session
    assert session is not None
    manual = _manual_greedy(session, img, len(ids), with_offset=True)
    assert ids == manual
    # The offset matters for this model: without it greedy decoding goes elsewhere,
    # so the equality above could not hold by accident.
    without = _manual_greedy(session, img, len(ids), with_offset=False)
    assert without != manual


def test_greedy_is_deterministic_and_depends_on_image_and_prompt(backend: LocalBackend) -> None:
    p = GenerationParams(temperature=0.0, max_tokens=24)
    a, _, _, _ = _run(backend.generate(_image(2), p))
    b, _, _, _ = _run(backend.generate(_image(2), p))
    c, _, _, _ = _run(backend.generate(_image(1), p))
    assert a == b
    assert len(a) == 24
    assert c != a, "the copied image rows differ between the two images"
    # After the image rows the copy head replays the text after the image: the
    # exact ids of "▁\n" + instruction, as in training (chunk-wise, '▁' first).
    session = backend.session
    assert session is not None
    after = session.tokenize("\n" + DEFAULT_INSTRUCTION)
    assert after[:2] == [29871, 13]
    assert any(a[i:i + len(after)] == after for i in range(len(a))), (a, after)


def test_prompt_token_ids_equal_the_tokenizers_library(backend: LocalBackend, reference_tokenizer: Path) -> None:
    session = backend.session
    if session is None:
        _run(backend.generate(_image(0), GenerationParams(temperature=0.0, max_tokens=1)))
        session = backend.session
    assert session is not None
    for instruction in (DEFAULT_INSTRUCTION, "Recreate this screenshot as one HTML file, <b>exactly</b> é 😀"):
        got = session.prompt_token_ids(_image(0), instruction)
        assert got == expected_prompt_token_ids(reference_tokenizer, instruction)
    assert got[0] != 1, "no BOS"


def test_same_seed_same_text_and_other_seed_differs(backend: LocalBackend) -> None:
    img = _image(4)
    p = GenerationParams(temperature=1.5, max_tokens=24, seed=1234)
    a, ta, fa, _ = _run(backend.generate(img, p))
    b, tb, _, _ = _run(backend.generate(img, p))
    assert (a, ta) == (b, tb)
    assert fa is not None and fa.stats.seed == 1234
    others = {tuple(_run(backend.generate(img, p.replace(seed=s)))[0]) for s in (1, 2, 3)}
    assert len(others | {tuple(a)}) > 1


def test_regenerating_for_the_same_image_reuses_the_encoding_and_kv_prefix(backend: LocalBackend) -> None:
    img = _image(5)
    p = GenerationParams(temperature=0.0, max_tokens=8)
    _, _, first, _ = _run(backend.generate(img, p))
    _, _, second, events = _run(backend.generate(img, p.replace(temperature=0.7, seed=9)))
    _, _, third, _ = _run(backend.generate(img, p.replace(instruction="Describe the page layout")))
    assert first is not None and second is not None and third is not None
    assert not first.stats.reused_image
    assert second.stats.reused_image and second.stats.image_encode_s == 0.0
    # Everything but the last prompt position is reused (its logits are needed again).
    assert second.stats.reused_prefix_tokens == second.stats.n_prompt_tokens - 1
    assert third.stats.reused_image
    # A new instruction keeps the system text and the image: only the instruction is evaluated again.
    n_before = len(session_tokens(backend, "")) + third.stats.n_image_tokens
    assert third.stats.reused_prefix_tokens >= n_before
    prefill = [e for e in events if isinstance(e, Progress) and e.phase == "prefill"]
    assert prefill and prefill[-1].total == 1


def session_tokens(backend: LocalBackend, _: str) -> list[int]:
    s = backend.session
    assert s is not None
    return s.tokenize(build_prompt().before_image)


def test_cancel_stops_within_one_token(backend: LocalBackend) -> None:
    img = _image(6)
    n_at_cancel = None
    tokens = 0
    fin = None
    for ev in backend.generate(img, GenerationParams(temperature=0.0, max_tokens=400)):
        if isinstance(ev, Token):
            tokens += 1
            if tokens == 5:
                backend.cancel()
                n_at_cancel = tokens
        elif isinstance(ev, Finished):
            fin = ev
    assert n_at_cancel == 5
    assert tokens <= n_at_cancel + 1
    assert fin is not None and fin.stats.finish_reason == "cancelled"
    # The engine is still usable afterwards.
    ids, _, fin2, _ = _run(backend.generate(img, GenerationParams(temperature=0.0, max_tokens=4)))
    assert fin2 is not None and fin2.stats.finish_reason == "length" and len(ids) == 4


def test_cancel_from_another_thread(backend: LocalBackend) -> None:
    got_tokens = threading.Event()
    results: list[Event] = []

    def consume() -> None:
        for ev in backend.generate(_image(7), GenerationParams(temperature=0.0, max_tokens=1000)):
            results.append(ev)
            if isinstance(ev, Token):
                got_tokens.set()

    t = threading.Thread(target=consume)
    t.start()
    assert got_tokens.wait(60)
    backend.cancel()
    t.join(30)
    assert not t.is_alive()
    fin = [e for e in results if isinstance(e, Finished)]
    assert fin and fin[-1].stats.finish_reason == "cancelled"
    assert sum(isinstance(e, Token) for e in results) < 1000


def test_max_tokens_is_clamped_to_the_context(backend: LocalBackend) -> None:
    # Ask for the whole context: the prompt's positions must come off it.
    _, _, fin, _ = _run(backend.generate(_image(8), GenerationParams(temperature=0.0, max_tokens=2048)))
    session = backend.session
    assert session is not None and fin is not None
    assert fin.stats.max_tokens_clamped
    assert fin.stats.n_prompt_tokens + fin.stats.n_generated == session.info.n_ctx_train


def test_variants_decode_in_parallel_and_greedy_variants_agree(backend: LocalBackend) -> None:
    img = _image(9)
    single, _, _, _ = _run(backend.generate(img, GenerationParams(temperature=0.0, max_tokens=12)))
    events = list(backend.generate(img, GenerationParams(temperature=0.0, max_tokens=12, n_variants=3)))
    per: dict[int, list[int]] = {}
    for ev in events:
        if isinstance(ev, Token):
            per.setdefault(ev.variant, []).append(ev.token_id)
    assert sorted(per) == [0, 1, 2]
    assert all(v == single for v in per.values())
    assert sum(isinstance(e, Started) for e in events) == 3
    assert sum(isinstance(e, Finished) for e in events) == 3
    sampled = list(backend.generate(img, GenerationParams(temperature=1.5, max_tokens=12, n_variants=3, seed=5)))
    texts: dict[int, list[int]] = {}
    for ev in sampled:
        if isinstance(ev, Token):
            texts.setdefault(ev.variant, []).append(ev.token_id)
    assert len({tuple(v) for v in texts.values()}) > 1


def test_quantized_pair_loads_and_generates(tiny_pair: TinyPair) -> None:
    q8 = [p for p in discover(tiny_pair.dir) if p.quant == "Q8_0"]
    assert q8
    with LocalBackend(q8[0], EngineOptions(**OFFLOAD)) as b:
        ids, _, fin, _ = _run(b.generate(_image(0), GenerationParams(temperature=0.0, max_tokens=8)))
    assert fin is not None and len(ids) == 8


def test_speculative_decoding_leaves_greedy_output_unchanged(pair: ModelPair) -> None:
    img = _image(11)
    p = GenerationParams(temperature=0.0, max_tokens=64)
    with LocalBackend(pair, EngineOptions(**OFFLOAD, kv_f32=True, speculative=False)) as plain:
        expected, _, fin_plain, _ = _run(plain.generate(img, p))
    with LocalBackend(pair, EngineOptions(**OFFLOAD, kv_f32=True, speculative=True)) as spec:
        got, _, fin, _ = _run(spec.generate(img, p))
        # Reuse after a speculative run: its KV bookkeeping must still be exact.
        again, _, _, _ = _run(spec.generate(img, p))
    assert fin_plain is not None and fin_plain.stats.draft_tokens == 0
    assert fin is not None
    assert got == expected and again == expected
    # The copy head replays the prompt, so drafts are found and most are accepted.
    assert fin.stats.draft_tokens > 0 and fin.stats.accepted_draft_tokens > 0


def test_speculative_sampling_is_reproducible_by_seed(pair: ModelPair) -> None:
    img = _image(12)
    p = GenerationParams(temperature=1.0, max_tokens=32, seed=77)
    with LocalBackend(pair, EngineOptions(**OFFLOAD, speculative=True)) as spec:
        a, _, fa, _ = _run(spec.generate(img, p))
        b, _, _, _ = _run(spec.generate(img, p))
    assert a == b and fa is not None and fa.stats.seed == 77


def test_unpatched_llama_cpp_is_detected_and_image_generation_refused(pair: ModelPair,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from web2code.app.engine import clsprobe

    real = clsprobe.probe()
    assert real.class_token_first  # our build
    # Simulate the stock graph: what the probe reports on an unpatched llama.cpp.
    monkeypatch.setattr(clsprobe, "probe", lambda workdir=None: clsprobe.ProbeResult(False, 0.69, 0.0004))
    with LocalBackend(pair, EngineOptions(**OFFLOAD)) as b:
        events = list(b.generate(_image(), GenerationParams(max_tokens=2)))
        assert b.session is not None and not b.session.cls_order_ok
        assert any("class-token bug" in w for w in b.session.warnings)
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed and "class-token bug" in failed[0].message
    assert not any(isinstance(e, Token) for e in events)


def _decode_rows(session: Session) -> list[int]:
    """Record the rows of every generation step's llama_decode (prefill batches have no seq_ids)."""
    rows: list[int] = []
    real = session._decode_tokens

    def spy(tokens, pos0, seq_ids=None, want_logits=None, positions=None):  # type: ignore[no-untyped-def]
        if seq_ids is not None:
            rows.append(len(tokens))
        real(tokens, pos0, seq_ids=seq_ids, want_logits=want_logits, positions=positions)

    session._decode_tokens = spy  # type: ignore[method-assign]
    return rows


def test_padding_rows_change_neither_the_variants_nor_the_kept_kv_cache(pair: ModelPair) -> None:
    img = _image(13)
    p = GenerationParams(temperature=1.5, max_tokens=10, n_variants=3, seed=21)
    out: dict[bool, dict[int, list[int]]] = {}
    for pad in (False, True):
        with Session(pair, EngineOptions(**OFFLOAD, kv_f32=True, pad_batches=pad)) as s:
            rows = _decode_rows(s)
            per: dict[int, list[int]] = {}
            for ev in s.run(img, p):
                if isinstance(ev, Token):
                    per.setdefault(ev.variant, []).append(ev.token_id)
            out[pad] = per
            # Three variants step together: 4 rows when padded, 3 when not.
            assert rows and set(rows) == ({4} if pad else {3})
            if pad:
                assert s._ctx is not None and s._ctx.seq_pos_max(s._n_seq_max) == -1  # padding freed
                # Sequence 0 (prompt + variant 0) is intact: the same page again reuses all of it.
                again = [e for e in s.run(img, GenerationParams(temperature=0.0, max_tokens=2))
                         if isinstance(e, Finished)]
                assert again[0].stats.reused_prefix_tokens == again[0].stats.n_prompt_tokens - 1
    assert sorted(out[True]) == [0, 1, 2]
    assert out[True] == out[False]


def test_speculative_verify_batches_are_padded_on_the_cpu(pair: ModelPair) -> None:
    img = _image(11)
    p = GenerationParams(temperature=0.0, max_tokens=48)
    seen: dict[bool, list[int]] = {}
    texts: dict[bool, list[int]] = {}
    with Session(pair, EngineOptions(n_gpu_layers=0)) as s:
        assert s.new_drafter().draft_max == 3  # the default on the CPU: one 4-row batch
    for pad in (False, True):
        # Two drafts: 3-row verify batches, which padding turns into 4.
        with Session(pair, EngineOptions(**OFFLOAD, kv_f32=True, speculative=True, draft_max=2,
                                         pad_batches=pad)) as s:
            rows = _decode_rows(s)
            texts[pad] = [e.token_id for e in s.run(img, p) if isinstance(e, Token)]
            seen[pad] = rows
    assert texts[True] == texts[False]
    assert 3 in seen[False] and 4 not in seen[False]
    assert 4 in seen[True] and not {2, 3} & set(seen[True])


def test_html_requests_seed_the_drafter_with_the_prior(pair: ModelPair) -> None:
    from web2code.app.engine.speculative import prior_text

    with Session(pair, EngineOptions(**OFFLOAD)) as s:
        prior = s.tokenize(prior_text())
        html = s.new_drafter(html=True).index.tokens
        plain = s.new_drafter(html=False).index.tokens
    assert len(prior) > 1000
    assert html[:len(prior) + 1] == [*prior, -1]
    assert plain == html[len(prior) + 1:]  # the rest: what the KV cache holds (the last prompt)


def test_growing_the_context_for_variants_keeps_the_prompt_in_the_kv_cache(pair: ModelPair) -> None:
    img = _image(14)
    with Session(pair, EngineOptions(**OFFLOAD, kv_f32=True)) as s:
        first = [e for e in s.run(img, GenerationParams(temperature=0.0, max_tokens=6))]
        single = [e.token_id for e in first if isinstance(e, Token)]
        n_seq_before = s._n_seq_max
        events = list(s.run(img, GenerationParams(temperature=0.0, max_tokens=6, n_variants=3)))
        assert s._n_seq_max == 3 > n_seq_before  # a new, larger context ...
    fins = [e for e in events if isinstance(e, Finished)]
    # ... that still held the prompt: only the last position was evaluated again.
    assert fins and all(f.stats.reused_prefix_tokens == f.stats.n_prompt_tokens - 1 for f in fins)
    per: dict[int, list[int]] = {}
    for ev in events:
        if isinstance(ev, Token):
            per.setdefault(ev.variant, []).append(ev.token_id)
    assert per and all(v == single for v in per.values())  # and its cells are the right ones
