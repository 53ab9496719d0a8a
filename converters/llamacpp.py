"""The converter's view of llama.cpp (verification, tokenizer checks), on the application's adapter.

Exact control over the KV-cache type (F32 for exactness checks), logits at
every position, embeddings fed in place of tokens, and mtmd's image encoder:
the same calls the engine makes, through ``web2code.app.engine.llama``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from web2code.app.engine import llama
from web2code.app.errors import Web2CodeError

from .errors import ConvertError


def _threads(n: int | None) -> int:
    return n or max(1, min(8, os.cpu_count() or 1))


class TextModel:
    """A GGUF text model with one context that returns logits for every position."""

    def __init__(self, path: Path, *, n_ctx: int = 512, f32_kv: bool = True, n_threads: int | None = None,
                 flash_attn: bool = False) -> None:
        try:
            self.model = llama.Model(path, n_gpu_layers=0)
        except Web2CodeError as exc:
            raise ConvertError(f"llama.cpp cannot load {path}") from exc
        try:
            self.ctx = llama.Context(self.model, llama.ContextParams(
                n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=_threads(n_threads),
                flash_attention=flash_attn, kv_f32=f32_kv))
        except Web2CodeError as exc:
            self.model.close()
            raise ConvertError(f"llama.cpp cannot create a context for {path}") from exc
        self.n_vocab = self.model.n_vocab
        self.n_embd = self.model.n_embd
        self.n_ctx = n_ctx
        self.n_past = 0

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        """Token ids of ``text`` exactly as llama.cpp makes them (no BOS: the model does not add one)."""
        return self.model.tokenize(text, parse_special=parse_special)

    def reset(self) -> None:
        self.ctx.clear()
        self.n_past = 0

    def _decode(self, tokens: list[int] | None, embd: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        n = len(tokens) if tokens is not None else int(embd.shape[0])  # type: ignore[union-attr]
        if self.n_past + n > self.n_ctx:
            raise ValueError(f"sequence of {self.n_past + n} exceeds n_ctx {self.n_ctx}")
        self.ctx.decode(tokens=tokens, embd=embd, positions=range(self.n_past, self.n_past + n),
                        logits=[True] * n)
        self.n_past += n
        return np.stack([self.ctx.logits(i) for i in range(n)])

    def decode_tokens(self, tokens: list[int]) -> np.ndarray[Any, Any]:
        """Append ``tokens``; raw logits (no logit offset) for each of them."""
        return self._decode(tokens, None)

    def decode_embd(self, embd: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Append rows of input embeddings (an encoded image); logits for each row."""
        return self._decode(None, embd)

    def close(self) -> None:
        self.model.close()  # and its context and encoders

    def __enter__(self) -> TextModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageEncoder:
    """mtmd's CLIP + projector for one mmproj, paired with a loaded :class:`TextModel`."""

    def __init__(self, mmproj: Path, text: TextModel, *, n_threads: int | None = None,
                 flash_attn: bool = False) -> None:
        try:
            self.vision = llama.Vision(mmproj, text.model, use_gpu=False, n_threads=_threads(n_threads),
                                       flash_attention=flash_attn)
        except Web2CodeError as exc:
            raise ConvertError(f"llama.cpp (mtmd) cannot load {mmproj}") from exc
        self.n_embd = text.n_embd

    def encode(self, rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Image embeddings ``[n_tokens, n_embd]`` for an RGB uint8 ``[H, W, 3]`` image."""
        return self.vision.encode(rgb)

    def close(self) -> None:
        self.vision.close()

    def __enter__(self) -> ImageEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
