"""The llama.cpp adapter and the engine after close: no Python call can reach a freed pointer.

Each crash-prone case runs in a child process first, so that a segfault is a
clear test failure (exit by signal) instead of the death of the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import TinyPair
from tests.offload import OFFLOAD
from web2code.app.engine import llama
from web2code.app.engine.backend import LocalBackend
from web2code.app.engine.events import Failed, Finished, GenerationParams, Token
from web2code.app.engine.pair import ModelPair, discover
from web2code.app.engine.session import EngineOptions, Session
from web2code.app.errors import Cancelled, EngineClosed, ModelError, RequestError

REPO = Path(__file__).resolve().parents[2]


def _pair(tp: TinyPair) -> ModelPair:
    return next(p for p in discover(tp.dir) if p.quant == "F32")


def _image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def _child(folder: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` with ``pair`` (the first pair in ``folder``) in a fresh interpreter."""
    code = textwrap.dedent("""
        import sys, threading, time
        import numpy as np
        from PIL import Image
        from web2code.app.engine.pair import discover
        from web2code.app.engine.session import EngineOptions, Session
        from web2code.app.engine.backend import LocalBackend
        from web2code.app.engine.events import GenerationParams, Token, Finished, Failed
        from web2code.app.errors import EngineClosed
        from pathlib import Path
        from tests.offload import OFFLOAD
        pair = discover(Path(sys.argv[1]))[0]
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=240,
                          cwd=REPO, check=False)


@pytest.mark.parametrize("call", [
    "s.tokenize('<div>')",
    "list(s.run(img, GenerationParams(temperature=0.0, max_tokens=4)))",
    "s.logits()",
    "s.encode_image(img.resize((28, 28)))",
    "s.token_bytes(5)",
    "s.new_drafter()",
])
def test_a_session_used_after_close_raises_the_projects_error(tiny_pair: TinyPair, call: str) -> None:
    r = _child(tiny_pair.dir, f"""
        s = Session(pair, EngineOptions(**OFFLOAD))
        s.close()
        s.close()  # idempotent
        try:
            {call}
        except EngineClosed as exc:
            print("EngineClosed:", exc)
        else:
            print("no error")
    """)
    assert r.returncode == 0, f"exit {r.returncode} (negative: killed by a signal)\n{r.stderr[-2000:]}"
    assert "EngineClosed: The model session is closed." in r.stdout, r.stdout + r.stderr[-2000:]


def test_closing_a_local_backend_during_a_run_ends_the_run_cleanly(long_pair: Path) -> None:
    r = _child(long_pair, """
        b = LocalBackend(pair, EngineOptions(**OFFLOAD, speculative=False))
        events = []
        started = threading.Event()
        def consume():
            for ev in b.generate(img, GenerationParams(temperature=0.0, max_tokens=2048)):
                events.append(ev)
                if isinstance(ev, Token) and ev.index == 10:
                    started.set()
        t = threading.Thread(target=consume)
        t.start()
        assert started.wait(120), "no tokens"
        t0 = time.monotonic()
        b.close()
        t.join(30)
        assert not t.is_alive(), "the run did not end"
        last = events[-1]
        print("LAST", type(last).__name__, getattr(getattr(last, "stats", None), "finish_reason", None),
              f"{time.monotonic() - t0:.2f}s")
        after = list(b.generate(img, GenerationParams(temperature=0.0, max_tokens=4)))
        print("AFTER", type(after[-1]).__name__, after[-1].error_type, after[-1].message)
    """)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert "LAST Finished cancelled" in r.stdout, r.stdout
    assert "AFTER Failed EngineClosed" in r.stdout, r.stdout


def test_close_from_another_thread_during_prefill_cancels_it(tiny_pair: TinyPair) -> None:
    """Prefill runs with llama.cpp's abort callback: close() stops the decode and frees after it."""
    model = llama.Model(_pair(tiny_pair).model, n_gpu_layers=OFFLOAD["n_gpu_layers"])
    ctx = llama.Context(model, llama.ContextParams(n_ctx=512, n_batch=512, n_ubatch=512))
    ctx.set_abortable(True)
    closer = threading.Timer(0.001, model.close)
    closer.start()
    with pytest.raises((Cancelled, EngineClosed)):
        for _ in range(200):  # the timer fires during one of these
            ctx.decode(tokens=[5] * 500, positions=range(500))
            ctx.clear()
    closer.join()
    assert model.closed and ctx.closed
    with pytest.raises(EngineClosed):
        ctx.logits(-1)
    with pytest.raises(EngineClosed):
        model.tokenize("x")


def _hold(h: llama.Handle) -> tuple[threading.Thread, threading.Event]:
    """A call on another thread that holds ``h`` until the returned event is set."""
    inside, release = threading.Event(), threading.Event()

    def call() -> None:
        with h.use():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=call)
    t.start()
    assert inside.wait(5)
    return t, release


def test_a_handle_closed_while_a_call_holds_it_is_freed_when_the_call_returns() -> None:
    freed: list[object] = []
    h = llama.Handle()
    h._adopt("ptr", freed.append)
    t, release = _hold(h)
    t0 = time.monotonic()
    assert h.close(wait_s=0.2) is False  # still in use: not freed under the call
    assert time.monotonic() - t0 < 1.0 and freed == []
    with pytest.raises(EngineClosed), h.use():
        pass
    release.set()
    t.join()
    assert freed == ["ptr"]  # freed by the call as it returned, once
    assert h.close() is True and freed == ["ptr"]


def test_a_load_that_fails_half_way_frees_the_model(tiny_pair: TinyPair, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[llama.Model] = []
    real = llama.Model

    def spy(*a: object, **k: object) -> llama.Model:
        m = real(*a, **k)  # type: ignore[arg-type]
        made.append(m)
        return m

    def broken_vision(*_a: object, **_k: object) -> None:
        raise ModelError("llama.cpp could not load the vision projector.")

    monkeypatch.setattr(llama, "Model", spy)
    monkeypatch.setattr(llama, "Vision", broken_vision)
    with pytest.raises(ModelError):
        Session(_pair(tiny_pair), EngineOptions(**OFFLOAD))
    assert made and all(m.closed for m in made)  # the pair's model (and the CLS probe's)


def test_absurd_thread_counts_are_refused_before_llama_cpp_sees_them() -> None:
    for bad in (-1, 65535, 100000):
        with pytest.raises(RequestError, match="Threads"):
            EngineOptions(n_threads=bad)
    assert EngineOptions(n_threads=0).threads() >= 1


# ------------------------------------------------------------------ one sampler
def _tokens(events: list[object], variant: int = 0) -> list[int]:
    return [e.token_id for e in events if isinstance(e, Token) and e.variant == variant]


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.5])
def test_the_same_seed_gives_the_same_tokens_on_every_path(tiny_pair: TinyPair, temperature: float) -> None:
    """Speculation on and off, and variant 0 of 2, choose every token with the same sampler and stream."""
    pair = _pair(tiny_pair)
    img = _image(3)
    # top_k 3 makes the random model repeat itself, so drafts are made, accepted and rejected.
    p = GenerationParams(temperature=temperature, top_k=3, top_p=0.95, repeat_penalty=1.1, max_tokens=160,
                         seed=2**32 - 1)
    out = {}
    for name, opts, params in (
            ("plain", EngineOptions(**OFFLOAD, speculative=False), p),
            ("speculative", EngineOptions(**OFFLOAD, speculative=True), p),
            ("variant 0 of 2", EngineOptions(**OFFLOAD), p.replace(n_variants=2))):
        with LocalBackend(pair, opts) as b:
            events = list(b.generate(img, params))
        assert not [e for e in events if isinstance(e, Failed)], events[-1]
        fin = [e for e in events if isinstance(e, Finished) and e.stats.variant == 0]
        assert fin and fin[0].stats.seed == 2**32 - 1
        out[name] = _tokens(events)
        if name == "speculative":
            assert fin[0].stats.accepted_draft_tokens > 0  # drafting really happened
    assert len(out["plain"]) > 20
    assert out["speculative"] == out["plain"]
    assert out["variant 0 of 2"] == out["plain"]


def test_a_seed_beyond_32_bits_is_refused() -> None:
    with pytest.raises(RequestError, match="seed"):
        GenerationParams(seed=2**32)


def test_the_cli_prints_the_same_token_ids_with_and_without_speculation_and_as_variant_0(
        tiny_pair: TinyPair, tmp_path: Path) -> None:
    import json
    import os

    page = tmp_path / "page.png"
    _image(4).save(page)
    common = ["generate", str(page), "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj),
              "--temperature", "0.8", "--top-k", "3", "--seed", "7", "--max-tokens", "120", "--json",
              "--gpu-layers", "0"]

    def ids(*extra: str) -> list[int]:
        r = subprocess.run([sys.executable, "-m", "web2code.app", *common, *extra], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout)
        assert out["seed"] == 7
        got: list[int] = out["token_ids"]  # variant 0's
        return got

    plain = ids("--no-speculative")
    assert len(plain) > 20
    assert ids() == plain
    assert ids("--variants", "2", "-o", str(tmp_path / "v.html")) == plain


def test_a_parent_waits_for_a_dependent_that_is_still_running() -> None:
    """A model closed while its context decodes is freed after the context, never before it."""
    freed: list[str] = []
    model, ctx = llama.Handle(), llama.Handle()
    model._adopt("model", freed.append)
    ctx._adopt("ctx", freed.append, parent=model)
    t, release = _hold(ctx)  # a decode in progress
    assert model.close(wait_s=0.2) is False and freed == []
    release.set()
    t.join()
    assert freed == ["ctx", "model"]
