"""Cold time to first token: the prompt head kept from load, and the OCR thread beside the encode (issue 16).

Each measurement is a fresh in-process Session (the first request after load, a
new image: the cold case) in one of three configurations, run side by side in
rounds (the machine may be shared):

* ``before``: nothing kept from load (the text before the image is evaluated by the request);
* ``prefix``: the text before the image evaluated at load, its KV cells kept;
* ``prefix+ocr``: the same, and the image's text read by the OCR thread during the
  encode and prefill (its cache is emptied first, so it really runs).

The image is a corpus page's screenshot (bench/ocr_pages.py). Time to first token
is wall time from the request to its first token.

    .venv/bin/python -m bench.ttft_prefix --pair bench/cache/1b/pair [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .ocr_pages import DEFAULT_OUT, load_texts

MODES = {"before": {"warm_prefix": False, "ocr_drafts": False},
         "prefix": {"warm_prefix": True, "ocr_drafts": False},
         "prefix+ocr": {"warm_prefix": True, "ocr_drafts": True}}


def one(pair: Any, image: Path, mode: str, threads: int, tokens: int) -> dict[str, Any]:
    from web2code.app.engine.events import Finished, GenerationParams, Token
    from web2code.app.engine.session import EngineOptions, Session

    home = tempfile.mkdtemp(prefix="w2c-ttft-")
    os.environ["WEB2CODE_HOME"] = home  # an empty OCR cache: the thread really reads the image
    try:
        with Session(pair, EngineOptions(n_gpu_layers=0, n_threads=threads, **MODES[mode])) as s:  # type: ignore[arg-type]
            t0 = time.perf_counter()
            ttft = 0.0
            fin = None
            for ev in s.run(image, GenerationParams(temperature=0.0, max_tokens=tokens)):
                if isinstance(ev, Token) and not ttft:
                    ttft = time.perf_counter() - t0
                elif isinstance(ev, Finished):
                    fin = ev.stats
            t_all = time.perf_counter() - t0
            assert fin is not None
            return {"mode": mode, "ttft_s": round(ttft, 3), "load_s": round(s.load_s, 3),
                    "prefix_at_load_s": round(s.prefix_s, 3), "image_encode_s": round(fin.image_encode_s, 3),
                    "prefill_s": round(fin.prefill_s, 3), "positions_evaluated": fin.n_prompt_tokens
                    - fin.reused_prefix_tokens, "n_prompt": fin.n_prompt_tokens, "request_s": round(t_all, 3),
                    "ocr_ready_at_step": s.last_ocr_ready_step,
                    "ocr_lines": len(s.last_ocr.blocks) if s.last_ocr else None}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=24, help="tokens per request (the OCR may join the decode)")
    ap.add_argument("--page", default="01-landing-saas")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from web2code.app.engine.pair import choose, discover

    pair = choose(discover(args.pair))
    if pair is None:
        print(f"error: no model pair in {args.pair}", file=sys.stderr)
        return 2
    load_texts(DEFAULT_OUT)  # renders the screenshots once
    image = DEFAULT_OUT / f"{args.page}.png"
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for mode in MODES:
            row = one(pair, image, mode, args.threads, args.tokens)
            row["round"] = r
            row["load_average_1m"] = round(os.getloadavg()[0], 2)
            runs.append(row)
            print(json.dumps(row), flush=True)
    summary: dict[str, Any] = {"image": str(image), "runs": runs}
    for mode in MODES:
        summary[f"{mode}_ttft_median_s"] = statistics.median(x["ttft_s"] for x in runs if x["mode"] == mode)
    base = [x["ttft_s"] for x in runs if x["mode"] == "before"]
    for mode in ("prefix", "prefix+ocr"):
        ratios = [x["ttft_s"] / b for x, b in zip([x for x in runs if x["mode"] == mode], base, strict=True)]
        summary[f"{mode}_vs_before"] = round(statistics.median(ratios), 3)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
