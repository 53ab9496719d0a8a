"""One engine run of a pair, recorded for the offload tests (``python -m tests.integration.offload_probe``).

The offload tests run this in child processes, one per device set-up: the CPU
reference (with the CPU build's Python where there is one) and the GPU run, so
each loads llama.cpp with its own environment (``GGML_VK_VISIBLE_DEVICES``,
simulated device limits) and its log is read from a fresh process.

It runs the engine's greedy generation (the same Session the app uses), then
replays the generated ids teacher-forced to record every step's raw logits, and
writes ``result.json`` (ids, devices, layers offloaded, warnings) with
``logits.npy``, ``offset.npy`` and ``embeddings.npy`` into ``--out``. A load
error is recorded as ``{"error": ...}`` (exit status 0): the tests judge it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def image(seed: int, size: int = 336) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--mmproj", type=Path, required=True)
    ap.add_argument("--gpu-layers", default="0", help="auto or a number")
    ap.add_argument("--no-vision-gpu", action="store_true")
    ap.add_argument("--kv-f32", action="store_true")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from web2code.app.engine.events import Failed, Finished, GenerationParams, Token
    from web2code.app.engine.image import prepare_for_model
    from web2code.app.engine.llama import log
    from web2code.app.engine.pair import ModelPair
    from web2code.app.engine.prompt import DEFAULT_INSTRUCTION, build_prompt
    from web2code.app.engine.session import EngineOptions, Session
    from web2code.app.errors import Web2CodeError

    log.init()  # WEB2CODE_LLAMA_LOG=1 passes llama.cpp's whole log to stderr, for the tests to read
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {}
    opts = EngineOptions(n_gpu_layers=None if args.gpu_layers == "auto" else int(args.gpu_layers),
                         vision_gpu=not args.no_vision_gpu, kv_f32=args.kv_f32, speculative=False)
    img = image(args.seed)
    try:
        with Session(ModelPair(args.model, args.mmproj), opts) as s:
            ids: list[int] = []
            for ev in s.run(img, GenerationParams(temperature=0.0, max_tokens=args.tokens)):
                if isinstance(ev, Token):
                    ids.append(ev.token_id)
                elif isinstance(ev, Finished):
                    result["tokens_per_s"] = ev.stats.tokens_per_s
                    result["image_encode_s"] = ev.stats.image_encode_s
                elif isinstance(ev, Failed):
                    raise ev.to_exception()
            # Teacher-forced replay of the same ids: every step's raw logits.
            prepared = prepare_for_model(img, image_size=s.info.image_size)
            fp, emb, _ = s.encode_image(prepared)
            keys = s.prompt_items(build_prompt(DEFAULT_INSTRUCTION), fp, emb)
            s._kv_keys = []  # a full prefill
            for _ in s._prefill(keys, emb):
                pass
            rows = []
            pos = len(keys)
            for tok in ids:
                rows.append(np.array(s.logits(), dtype=np.float32))
                s._decode_tokens([tok], pos)
                s._kv_keys.append(tok)
                pos += 1
            np.save(args.out / "logits.npy", np.stack(rows) if rows else np.zeros((0, 0), np.float32))
            np.save(args.out / "embeddings.npy", np.asarray(emb, dtype=np.float32))
            offset = s.info.logit_offset
            np.save(args.out / "offset.npy", np.zeros(s.info.n_vocab, np.float32) if offset is None else offset)
            result.update(ids=ids, devices=list(s.devices), offloaded=s.n_gpu_layers_offloaded,
                          warnings=list(s.warnings))
    except Web2CodeError as exc:
        result["error"] = exc.message
    (args.out / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
