"""Speculative decoding measured by replay: real HTML pages forced as the model's output.

Random weights cannot show how often the real model's next tokens repeat what
it wrote before, so we replay real pages (``bench/corpus/``): each page's
tokens are taken as what the model generates, and we time producing them
through the real llama.cpp at the benchmark shapes

* plainly: one ``llama_decode`` of one token per step (what any engine does), and
* speculatively: the engine's own drafting policy (``Session.new_drafter``:
  the HTML prior, the draft length and the pause rule for this device) proposes
  tokens, the engine's ``_decode_step`` verifies them in one batch (padded to
  4 rows on the CPU), and the accepted prefix is exactly the part of the draft
  that equals the page's next tokens (for greedy decoding of a model that
  writes this page, that is what verification accepts).

Both modes also fetch the logits of every evaluated position and compute the
sampling distribution from them, as the engine does, so the comparison holds
the per-token overhead too. Prints tokens/s for both and their ratio.

With ``--ocr`` a third mode adds the image-text draft source (issue 16): each
page is rendered to a screenshot and read by the OCR (bench/ocr_pages.py, cached),
and the drafter gets that text as the engine gives it once its OCR thread is
done (``Session.attach_image_text``). Acceptance is reported per source.
``--costs 1:0.2933,4:0.4572`` prices the model-free prediction with given step
costs (e.g. the 7B ones of a report) instead of those measured here.

    .venv/bin/python -m bench.replay --pair bench/cache/7b/pair [--pages 3] [--tokens 160] [--ocr]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _prefill(session: Any) -> int:
    """Evaluate the real prompt with an image once; returns the number of prompt positions."""
    from PIL import Image

    from web2code.app.engine.events import Finished, GenerationParams

    img = Image.new("RGB", (336, 336), (245, 245, 245))
    n_prompt = 0
    for ev in session.run(img, GenerationParams(temperature=0.0, max_tokens=1)):
        if isinstance(ev, Finished):
            n_prompt = ev.stats.n_prompt_tokens
    return n_prompt


def _reset(session: Any, n_prompt: int) -> None:
    session._ctx.seq_rm(0, n_prompt, -1)
    session._kv_keys = session._kv_keys[:n_prompt]


def _choose(session: Any, i: int, sampler: Any) -> None:
    """What the engine does per evaluated position: fetch logits, choose the token."""
    sampler.choose(session.logits(i))


def _sampler(session: Any) -> Any:
    from web2code.app.engine.events import GenerationParams

    return session._sampler(GenerationParams(temperature=0.0), 0)


def replay_plain(session: Any, tokens: list[int], n_prompt: int) -> float:
    sampler = _sampler(session)
    t0 = time.perf_counter()
    for k, tok in enumerate(tokens):
        session._decode_tokens([tok], n_prompt + k)
        _choose(session, 0, sampler)
    return time.perf_counter() - t0


def forced_steps(drafter: Any, tokens: list[int]) -> Iterator[tuple[int, list[int], int]]:
    """The drafting policy over tokens forced as the output: per verify step, (index of the
    step's token, the drafts, how many of them equal the next forced tokens). The drafter
    learns what was kept once the caller has handled the step."""
    i = 0
    while i < len(tokens):
        drafter.append(tokens[i])
        drafts = drafter.propose(len(tokens) - i - 1)
        ok = 0
        while ok < len(drafts) and drafts[ok] == tokens[i + 1 + ok]:
            ok += 1
        yield i, drafts, ok
        drafter.record(len(drafts), ok)
        drafter.extend(tokens[i + 1:i + 1 + ok])
        i += 1 + ok


def new_drafter(session: Any, text: Any = None) -> Any:
    """The engine's drafter for a page, with the page's image text when given (as after the OCR thread)."""
    drafter = session.new_drafter(html=True)
    if text is not None:
        session.attach_image_text(drafter, text)
    return drafter


def replay_speculative(session: Any, tokens: list[int], n_prompt: int, text: Any = None
                       ) -> tuple[float, int, int, dict[str, Any]]:
    sampler = _sampler(session)
    drafted = accepted = 0
    drafter = new_drafter(session, text)
    t0 = time.perf_counter()
    for i, drafts, ok in forced_steps(drafter, tokens):
        pos = n_prompt + i
        batch = [tokens[i], *drafts]
        session._decode_step(batch, range(pos, pos + len(batch)), [0] * len(batch), [True] * len(batch))
        # The engine reads the distribution at every verified position: the accepted drafts,
        # then the one that chooses the next token (a rejected draft's replacement or the bonus).
        for j in range(ok + 1):
            _choose(session, j, sampler)
        drafted += len(drafts)
        accepted += ok
        if ok < len(drafts):
            session._ctx.seq_rm(0, pos + 1 + ok, -1)
    return time.perf_counter() - t0, drafted, accepted, _sources(drafter)


def _sources(drafter: Any) -> dict[str, Any]:
    return {k: {"drafted": d, "accepted": a, "steps": n, "acceptance": round(a / d, 3) if d else 0.0}
            for k, (d, a, n) in drafter.by_source().items()}


def step_costs(session: Any, n_prompt: int, reps: int = 5) -> dict[int, float]:
    """Median seconds of one generation step of 1 row and of a verify batch (1 + draft_max rows,
    padded as the engine pads), measured through the engine's own _decode_step."""
    k = session.new_drafter().draft_max
    out: dict[int, float] = {}
    for rows in (1, 1 + k):
        times = []
        for _ in range(reps):
            _reset(session, n_prompt)
            toks = list(range(1000, 1000 + rows))
            t0 = time.perf_counter()
            session._decode_step(toks, range(n_prompt, n_prompt + rows), [0] * rows, [True] * rows)
            times.append(time.perf_counter() - t0)
        out[rows] = statistics.median(times)
    _reset(session, n_prompt)
    return out


def simulate(session: Any, tokens: list[int], costs: dict[int, float], text: Any = None
             ) -> tuple[float, float, dict[str, Any]]:
    """The same drafting policy without the model: (plain seconds, speculative seconds, per-source
    acceptance) predicted from the step costs (a verify step costs the same whatever its draft
    length: padded on the CPU; ``costs`` has 1 and 1 + draft_max rows)."""
    drafter = new_drafter(session, text)
    k = drafter.draft_max
    spec = sum(costs[1 + k] if drafts else costs[1] for _, drafts, _ in forced_steps(drafter, tokens))
    return len(tokens) * costs[1], spec, _sources(drafter)


def _total(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per-source drafted/accepted summed over pages."""
    out: dict[str, Any] = {}
    for r in rows:
        for src, v in r.get(key, {}).items():
            o = out.setdefault(src, {"drafted": 0, "accepted": 0, "steps": 0})
            for f in ("drafted", "accepted", "steps"):
                o[f] += v[f]
    for o in out.values():
        o["acceptance"] = round(o["accepted"] / o["drafted"], 3) if o["drafted"] else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", type=Path, help="a folder with manifest.json (Q4_K_M pair)")
    ap.add_argument("--model", type=Path, help="instead of --pair: the text GGUF ...")
    ap.add_argument("--mmproj", type=Path, help="... and the projector GGUF")
    ap.add_argument("--gpu-layers", type=int, default=0, help="-1: auto (every layer that fits); 0: the CPU")
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--only", default="", metavar="PREFIXES",
                    help="replay these corpus pages instead of the first --pages (name prefixes, e.g. 02,04)")
    ap.add_argument("--tokens", type=int, default=160, help="tokens replayed per page (0: the whole page)")
    ap.add_argument("--draft-max", type=int, default=0, help="0: the engine's default for the device")
    ap.add_argument("--no-pad", action="store_true", help="do not pad verify batches to 4 rows on the CPU")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--no-simulate", action="store_true",
                    help="skip the model-free prediction over every whole corpus page")
    ap.add_argument("--ocr", action="store_true",
                    help="also replay with the image-text draft source (screenshots OCR'd by bench.ocr_pages)")
    ap.add_argument("--ocr-dir", type=Path, default=HERE / "cache" / "ocr-pages")
    ap.add_argument("--costs", default="", help="step costs for the prediction, e.g. 1:0.2933,4:0.4572")
    args = ap.parse_args(argv)
    texts: dict[str, Any] = {}
    if args.ocr:
        from .ocr_pages import load_texts

        texts = load_texts(args.ocr_dir)

    from web2code.app.engine.pair import ModelPair, choose, discover
    from web2code.app.engine.session import EngineOptions, Session

    if args.model and args.mmproj:
        pair: ModelPair | None = ModelPair(model=args.model, mmproj=args.mmproj, name=args.model.stem)
    elif args.pair:
        pair = choose(discover(args.pair))
    else:
        print("error: give --pair DIR or --model and --mmproj", file=sys.stderr)
        return 2
    if pair is None:
        print(f"error: no model pair in {args.pair}", file=sys.stderr)
        return 2
    gpu = args.gpu_layers != 0
    session = Session(pair, EngineOptions(n_gpu_layers=None if args.gpu_layers < 0 else args.gpu_layers,
                                          n_threads=args.threads, draft_max=args.draft_max,
                                          pad_batches=False if args.no_pad else (None if gpu else True),
                                          ocr_drafts=False))
    n_prompt = _prefill(session)
    probe = session.new_drafter()
    # Warm up llama.cpp's kernels and caches so the first timed page is not the slow one.
    warm = session.tokenize("<div class=\"card\"><h2>Warm up</h2></div>")
    replay_plain(session, warm, n_prompt)
    _reset(session, n_prompt)
    replay_speculative(session, warm, n_prompt)
    _reset(session, n_prompt)
    pages = sorted((HERE / "corpus").glob("*.html"))
    if args.only:
        wanted = tuple(x.strip() for x in args.only.split(",") if x.strip())
        pages = [p for p in pages if p.name.startswith(wanted)]
    else:
        pages = pages[: args.pages]
    rows = []
    for page in pages:
        toks = session.tokenize(page.read_text(encoding="utf-8"))[: args.tokens or None]
        _reset(session, n_prompt)
        t_plain = replay_plain(session, toks, n_prompt)
        _reset(session, n_prompt)
        t_spec, drafted, accepted, srcs = replay_speculative(session, toks, n_prompt)
        _reset(session, n_prompt)
        row = {"page": page.name, "tokens": len(toks), "plain_tok_s": round(len(toks) / t_plain, 3),
               "spec_tok_s": round(len(toks) / t_spec, 3), "speedup": round(t_plain / t_spec, 3),
               "drafted": drafted, "accepted": accepted,
               "acceptance": round(accepted / drafted, 3) if drafted else 0.0, "sources": srcs}
        if page.name in texts:
            t_ocr, d_ocr, a_ocr, srcs_ocr = replay_speculative(session, toks, n_prompt, texts[page.name])
            _reset(session, n_prompt)
            row.update({"ocr_tok_s": round(len(toks) / t_ocr, 3), "ocr_speedup": round(t_plain / t_ocr, 3),
                        "ocr_drafted": d_ocr, "ocr_accepted": a_ocr, "ocr_sources": srcs_ocr})
        rows.append(row)
        print(json.dumps(row), flush=True)
    predicted: dict[str, Any] = {}
    if not args.no_simulate:
        measured = step_costs(session, n_prompt)
        costs = ({int(a): float(b) for a, b in (c.split(":") for c in args.costs.split(","))}
                 if args.costs else measured)
        sims = []
        for page in sorted((HERE / "corpus").glob("*.html")):
            toks = session.tokenize(page.read_text(encoding="utf-8"))
            plain, spec, srcs = simulate(session, toks, costs)
            sim: dict[str, Any] = {"page": page.name, "tokens": len(toks), "speedup": round(plain / spec, 3),
                                   "plain_s": plain, "spec_s": spec, "sources": srcs}
            if page.name in texts:
                _, spec_ocr, srcs_ocr = simulate(session, toks, costs, texts[page.name])
                sim.update({"ocr_speedup": round(plain / spec_ocr, 3), "ocr_spec_s": spec_ocr,
                            "ocr_sources": srcs_ocr})
            sims.append(sim)
            print(json.dumps({k: v for k, v in sim.items() if not k.endswith("_s")}), flush=True)
        predicted = {"step_costs_s": {str(k): round(v, 4) for k, v in costs.items()},
                     "measured_step_costs_s": {str(k): round(v, 4) for k, v in measured.items()}, "pages": sims,
                     "median_speedup": round(statistics.median(x["speedup"] for x in sims), 3),
                     "total_speedup": round(sum(x["plain_s"] for x in sims) / sum(x["spec_s"] for x in sims), 3),
                     "sources": _total(sims, "sources")}
        if texts:
            predicted.update({
                "ocr_median_speedup": round(statistics.median(x["ocr_speedup"] for x in sims), 3),
                "ocr_total_speedup": round(sum(x["plain_s"] for x in sims) / sum(x["ocr_spec_s"] for x in sims), 3),
                "ocr_sources": _total(sims, "ocr_sources")})
        print(json.dumps({k: v for k, v in predicted.items() if k != "pages"}), flush=True)
    session.close()
    summary: dict[str, Any] = {
        "pair": str(pair.model), "draft_max": probe.draft_max, "padded_to": session._pad_rows,
        "prior_tokens": len(session._prior_tokens or []), "pages": rows,
        "median_speedup": round(statistics.median(r["speedup"] for r in rows), 3) if rows else 0.0,
        "total_speedup": round(sum(r["tokens"] / r["plain_tok_s"] for r in rows)
                               / sum(r["tokens"] / r["spec_tok_s"] for r in rows), 3) if rows else 0.0,
        "median_acceptance": round(float(np.median([r["acceptance"] for r in rows])), 3) if rows else 0.0,
        "sources": _total(rows, "sources"),
        "predicted_whole_corpus": predicted,
    }
    ocr_rows = [r for r in rows if "ocr_tok_s" in r]
    if ocr_rows:
        summary.update({
            "ocr_total_speedup": round(sum(r["tokens"] / r["plain_tok_s"] for r in ocr_rows)
                                       / sum(r["tokens"] / r["ocr_tok_s"] for r in ocr_rows), 3),
            "ocr_sources": _total(ocr_rows, "ocr_sources")})
    print(json.dumps({k: v for k, v in summary.items() if k != "pages"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
