"""The engine in this process (LocalBackend): time to first token cold vs reuse, and variants.

Run as a child of ``bench.run`` (``python -m bench.inproc ...``) so the model's
memory leaves with it; prints one JSON object on stdout.

* cold: a new image on a loaded model (what a user waits for after dropping a
  page in): image encode + prefill of every position after the shared system
  text, timed from the request to the first ``Token`` event;
* reuse: the same image again with another seed (the "regenerate" button):
  the encoded image and the KV prefix are reused;
* variants: ``n_variants=3`` vs one, same image, same tokens per variant, warm
  (the first multi-variant request grows the context, moving the prompt's KV
  cells into it, and is reported apart).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def timed_request(backend: Any, image: Any, params: Any) -> dict[str, Any]:
    """Wall-clock phases of one request, from its events."""
    from web2code.app.engine.events import Failed, Finished, Token

    t0 = time.perf_counter()
    first: float | None = None
    per_variant: dict[int, int] = {}
    stats: dict[int, Any] = {}
    for ev in backend.generate(image, params):
        if isinstance(ev, Token):
            if first is None:
                first = time.perf_counter() - t0
            per_variant[ev.variant] = per_variant.get(ev.variant, 0) + 1
        elif isinstance(ev, Finished):
            stats[ev.stats.variant] = ev.stats
        elif isinstance(ev, Failed):
            raise RuntimeError(f"request failed: {ev.message} {ev.detail}")
    wall = time.perf_counter() - t0
    s0 = stats.get(0)
    return {
        "wall_s": wall, "ttft_s": first if first is not None else wall,
        "n_generated": [per_variant.get(v, 0) for v in sorted(stats)],
        "image_encode_s": s0.image_encode_s if s0 else 0.0, "prefill_s": s0.prefill_s if s0 else 0.0,
        "decode_s": s0.decode_s if s0 else 0.0, "load_s": s0.load_s if s0 else 0.0,
        "reused_image": bool(s0 and s0.reused_image), "reused_prefix_tokens": s0.reused_prefix_tokens if s0 else 0,
        "n_prompt_tokens": s0.n_prompt_tokens if s0 else 0,
        "finish_reasons": [stats[v].finish_reason for v in sorted(stats)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--mmproj", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--images", type=Path, nargs="+", required=True,
                    help="model-ready page images: the first warms up (load), the rest are timed cold")
    ap.add_argument("--variant-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list: reuse, variants")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    from PIL import Image

    from web2code.app.engine.backend import LocalBackend
    from web2code.app.engine.events import GenerationParams
    from web2code.app.engine.pair import ModelPair
    from web2code.app.engine.session import EngineOptions

    pair = ModelPair(model=args.model, mmproj=args.mmproj, name=args.model.stem)
    # Speculation off: these figures are about reuse and parallel sequences (one variant would
    # otherwise draft and three would not), measured on their own; bench.replay measures speculation.
    opts = EngineOptions(n_gpu_layers=None if args.gpu_layers < 0 else args.gpu_layers, n_threads=args.threads,
                         speculative=False)
    images = [Image.open(p).convert("RGB") for p in args.images]
    out: dict[str, Any] = {"threads": opts.threads()}
    seed = 1000
    with LocalBackend(pair, opts) as backend:
        # warm-up: loads the model (timed apart) and fills the KV cache with another image
        t0 = time.perf_counter()
        warm = timed_request(backend, images[0], GenerationParams(max_tokens=1, seed=seed))
        out["load_s"] = warm["load_s"]
        out["warmup_wall_s"] = time.perf_counter() - t0
        cold: list[dict[str, Any]] = []
        reuse: list[dict[str, Any]] = []
        if "reuse" not in skip:
            for img in images[1:1 + args.runs]:
                seed += 1
                cold.append(timed_request(backend, img, GenerationParams(max_tokens=2, seed=seed)))
                seed += 1
                reuse.append(timed_request(backend, img, GenerationParams(max_tokens=2, seed=seed)))
                print(f"  cold ttft {cold[-1]['ttft_s']:.3f}s, reuse ttft {reuse[-1]['ttft_s']:.4f}s",
                      file=sys.stderr, flush=True)
        out["cold"], out["reuse"] = cold, reuse

        if "variants" not in skip:
            img = images[-1]
            n = args.variant_tokens
            seed += 1
            # The page is in the KV cache (one variant) before the first request for three, which
            # grows the context: that request should evaluate one position, not the prompt again.
            timed_request(backend, img, GenerationParams(max_tokens=2, seed=seed))
            seed += 1
            first3 = timed_request(backend, img, GenerationParams(max_tokens=n, seed=seed, n_variants=3))
            one: list[dict[str, Any]] = []
            three: list[dict[str, Any]] = []
            for _ in range(args.runs):
                seed += 10
                one.append(timed_request(backend, img, GenerationParams(max_tokens=n, seed=seed)))
                seed += 10
                three.append(timed_request(backend, img, GenerationParams(max_tokens=n, seed=seed, n_variants=3)))
                print(f"  1 variant {one[-1]['wall_s']:.2f}s, 3 variants {three[-1]['wall_s']:.2f}s",
                      file=sys.stderr, flush=True)
            out["variants"] = {"tokens_per_variant": n, "first_multi": first3, "one": one, "three": three}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
