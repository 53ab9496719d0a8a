"""The few llama.cpp calls the converter needs (verification, tokenizer checks), through llama-cpp-python.

Deliberately the low-level C API: exact control over the KV-cache type (F32
for exactness checks), logits at every position, embeddings fed in place of
tokens, and mtmd's image encoder, as the engine will use them.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp

from .errors import ConvertError

_LOG_ENV = "WEB2CODE_LLAMA_LOG"


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _discard_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every tensor it loads; keep our output readable."""


def quiet_logs() -> None:
    """Silence llama.cpp and mtmd unless ``WEB2CODE_LLAMA_LOG=1``."""
    if os.environ.get(_LOG_ENV) == "1":
        return
    llama_cpp.llama_log_set(_discard_log, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_log_set(_discard_log, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_discard_log, ctypes.c_void_p(0))


class TextModel:
    """A GGUF text model with one context that returns logits for every position."""

    def __init__(self, path: Path, *, n_ctx: int = 512, f32_kv: bool = True, n_threads: int | None = None,
                 flash_attn: bool = False) -> None:
        quiet_logs()
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise ConvertError(f"llama.cpp cannot load {path}")
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = n_ctx
        threads = n_threads or max(1, min(8, os.cpu_count() or 1))
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        if f32_kv:
            cp.type_k = cp.type_v = llama_cpp.GGML_TYPE_F32
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise ConvertError(f"llama.cpp cannot create a context for {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(llama_cpp.llama_model_n_embd(self.model))
        self.n_ctx = n_ctx
        self.n_past = 0

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        """Token ids of ``text`` exactly as llama.cpp makes them (no BOS: the model does not add one)."""
        raw = text.encode("utf-8")
        buf = (llama_cpp.llama_token * (len(raw) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), False, parse_special)
        if n < 0:
            raise RuntimeError("llama_tokenize: buffer too small")
        return list(buf[:n])

    def reset(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self.n_past = 0

    def _decode(self, tokens: list[int] | None, embd: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        n = len(tokens) if tokens is not None else int(embd.shape[0])  # type: ignore[union-attr]
        if self.n_past + n > self.n_ctx:
            raise ValueError(f"sequence of {self.n_past + n} exceeds n_ctx {self.n_ctx}")
        batch = llama_cpp.llama_batch_init(n, 0 if embd is None else self.n_embd, 1)
        try:
            if embd is not None:
                flat = np.ascontiguousarray(embd, dtype=np.float32).ravel()
                ctypes.memmove(batch.embd, flat.ctypes.data, flat.nbytes)
            for i in range(n):
                if tokens is not None:
                    batch.token[i] = tokens[i]
                batch.pos[i] = self.n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            batch.n_tokens = n
            rc = llama_cpp.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        finally:
            llama_cpp.llama_batch_free(batch)
        self.n_past += n
        out = np.empty((n, self.n_vocab), dtype=np.float32)
        for i in range(n):
            ptr = llama_cpp.llama_get_logits_ith(self.ctx, i)
            out[i] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return out

    def decode_tokens(self, tokens: list[int]) -> np.ndarray[Any, Any]:
        """Append ``tokens``; raw logits (no logit offset) for each of them."""
        return self._decode(tokens, None)

    def decode_embd(self, embd: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Append rows of input embeddings (an encoded image); logits for each row."""
        return self._decode(None, embd)

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __enter__(self) -> TextModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageEncoder:
    """mtmd's CLIP + projector for one mmproj, paired with a loaded :class:`TextModel`."""

    def __init__(self, mmproj: Path, text: TextModel, *, n_threads: int | None = None,
                 flash_attn: bool = False) -> None:
        quiet_logs()
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.warmup = False
        params.n_threads = n_threads or max(1, min(8, os.cpu_count() or 1))
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), text.model, params)
        if not self.ctx:
            raise ConvertError(f"llama.cpp (mtmd) cannot load {mmproj}")
        self.n_embd = text.n_embd

    def encode(self, rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Image embeddings ``[n_tokens, n_embd]`` for an RGB uint8 ``[H, W, 3]`` image."""
        ny, nx, _ = rgb.shape
        data = np.ascontiguousarray(rgb, dtype=np.uint8)
        buf = (ctypes.c_uint8 * data.nbytes).from_buffer_copy(data.tobytes())
        bitmap = mtmd_cpp.mtmd_bitmap_init(nx, ny, buf)
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        try:
            text = mtmd_cpp.mtmd_input_text()
            marker = mtmd_cpp.mtmd_default_marker()
            text.text, text.text_len = marker, len(marker)
            text.add_special, text.parse_special = False, True
            bitmaps = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mtmd_cpp.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if rc != 0:
                raise RuntimeError(f"mtmd_tokenize returned {rc}")
            for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
                chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
                if mtmd_cpp.mtmd_input_chunk_get_type(chunk) != mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    continue
                n = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk))
                rc = mtmd_cpp.mtmd_encode_chunk(self.ctx, chunk)
                if rc != 0:
                    raise RuntimeError(f"mtmd_encode_chunk returned {rc}")
                ptr = mtmd_cpp.mtmd_get_output_embd(self.ctx)
                return np.ctypeslib.as_array(ptr, shape=(n * self.n_embd,)).reshape(n, self.n_embd).copy()
            raise RuntimeError("mtmd produced no image chunk")
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
            mtmd_cpp.mtmd_bitmap_free(bitmap)

    def close(self) -> None:
        if self.ctx:
            mtmd_cpp.mtmd_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> ImageEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
