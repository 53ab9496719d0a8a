"""A llama.cpp context: the KV cache, batched decoding, logits, sequences."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import Cancelled, GenerationError, ModelError
from . import log
from .handle import Handle
from .model import Model

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ContextParams:
    n_ctx: int = 2048
    n_batch: int = 1024
    n_ubatch: int = 512
    n_seq_max: int = 1
    kv_unified: bool = True  # sequences share cells (variants share the prompt instead of copying it)
    n_threads: int = 1
    flash_attention: bool = False
    kv_f32: bool = False  # F32 KV cache for exactness checks; F16 otherwise


class Context(Handle):
    """``llama_context`` of a :class:`Model`. One caller at a time; ``cancel``/``close`` from any thread.

    ``abort`` (optional) is an event whose setting stops a running decode at
    the next graph node while the context is abortable (see :meth:`set_abortable`).
    """

    kind = "context"

    def __init__(self, model: Model, params: ContextParams, *, abort: threading.Event | None = None) -> None:
        super().__init__()
        import llama_cpp

        log.init()
        self.model = model
        self.params = params
        self._abort_event = abort or threading.Event()
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = params.n_ctx
        cp.n_batch = params.n_batch
        cp.n_ubatch = params.n_ubatch
        cp.n_seq_max = params.n_seq_max
        cp.kv_unified = params.kv_unified
        cp.n_threads = params.n_threads
        cp.n_threads_batch = params.n_threads
        cp.no_perf = True
        cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if params.flash_attention
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        if params.kv_f32:
            cp.type_k = llama_cpp.GGML_TYPE_F32
            cp.type_v = llama_cpp.GGML_TYPE_F32

        def _abort(_user: ctypes.c_void_p) -> bool:
            return self._abort_event.is_set() or self.stopping

        self._abort_cb = llama_cpp.ggml_abort_callback(_abort)
        self._no_abort_cb = llama_cpp.ggml_abort_callback(0)
        cp.abort_callback = self._abort_cb
        self._abortable = True
        with model.use() as m:
            ptr = llama_cpp.llama_init_from_model(m, cp)
            if not ptr:
                raise ModelError("llama.cpp could not create a context (out of memory?).",
                                 detail="\n".join(log.recent_log()))
            self._adopt(ptr, llama_cpp.llama_free, parent=model)
        self.n_ctx = int(llama_cpp.llama_n_ctx(ptr))
        self.n_vocab = model.n_vocab
        self.n_embd = model.n_embd

    # ------------------------------------------------------------ decoding
    def set_abortable(self, on: bool) -> None:
        """Whether a running llama_decode checks for cancel. llama.cpp calls the callback after every
        graph node (~870 per step at 7B), each a Python call taking the GIL: worth it for prefill
        batches that run for seconds, not for generation steps, which check between them (~1%)."""
        import llama_cpp

        if on != self._abortable:
            with self.use() as ctx:
                llama_cpp.llama_set_abort_callback(ctx, self._abort_cb if on else self._no_abort_cb, None)
            self._abortable = on

    def decode(self, *, positions: Sequence[int], tokens: Sequence[int] | None = None,
               embd: F32 | None = None, seq_ids: Sequence[Sequence[int]] | None = None,
               logits: Sequence[bool] | None = None) -> None:
        """Evaluate one batch: token ids or embedding rows at ``positions``.

        ``seq_ids``: the sequences of each row (default: sequence 0). ``logits``:
        which rows keep their logits (default: the last one).
        """
        import llama_cpp

        n = len(positions)
        if (tokens is None) == (embd is None):
            raise ValueError("decode() takes tokens or embd")
        if n == 0:
            return
        n_embd_in = 0 if embd is None else int(embd.shape[1])
        n_seq = 1 if seq_ids is None else max(len(x) for x in seq_ids)
        with self.use() as ctx:
            batch = llama_cpp.llama_batch_init(n, n_embd_in, n_seq)
            try:
                if embd is not None:
                    data = np.ascontiguousarray(embd, dtype=np.float32)
                    if data.shape != (n, n_embd_in):
                        raise ValueError(f"embd has shape {data.shape}, expected ({n}, {n_embd_in})")
                    ctypes.memmove(batch.embd, data.ctypes.data, data.nbytes)
                for i in range(n):
                    if tokens is not None:
                        tok = int(tokens[i])
                        if not 0 <= tok < self.n_vocab:
                            raise GenerationError(f"Token id {tok} is outside the vocabulary.")
                        batch.token[i] = tok
                    batch.pos[i] = int(positions[i])
                    sids = seq_ids[i] if seq_ids is not None else (0,)
                    batch.n_seq_id[i] = len(sids)
                    for j, s in enumerate(sids):
                        batch.seq_id[i][j] = int(s)
                    batch.logits[i] = bool(logits[i]) if logits is not None else (i == n - 1)
                batch.n_tokens = n
                rc = llama_cpp.llama_decode(ctx, batch)
            finally:
                llama_cpp.llama_batch_free(batch)
        if rc == 0:
            return
        if self._abort_event.is_set() or self.stopping:
            raise Cancelled()
        if rc == 1:
            raise GenerationError(f"The context is full: the prompt and answer do not fit in {self.n_ctx} "
                                  "tokens.")
        raise GenerationError(f"llama.cpp failed to evaluate the batch (code {rc}).",
                              detail="\n".join(log.recent_log()))

    def logits(self, i: int) -> F32:
        """A copy of the raw logits of row ``i`` of the last batch (-1: the last row with logits)."""
        import llama_cpp

        with self.use() as ctx:
            ptr = llama_cpp.llama_get_logits_ith(ctx, i)
            if not ptr:
                raise GenerationError(f"No logits for row {i} of the last batch.")
            out: F32 = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
            return out

    # ------------------------------------------------------------- memory
    def _memory(self, ctx: Any) -> Any:
        import llama_cpp

        return llama_cpp.llama_get_memory(ctx)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        """Drop sequence ``seq``'s cells in [p0, p1) (-1: open end); False if llama.cpp cannot."""
        import llama_cpp

        with self.use() as ctx:
            return bool(llama_cpp.llama_memory_seq_rm(self._memory(ctx), seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        import llama_cpp

        with self.use() as ctx:
            llama_cpp.llama_memory_seq_cp(self._memory(ctx), src, dst, p0, p1)

    def clear(self) -> None:
        import llama_cpp

        with self.use() as ctx:
            llama_cpp.llama_memory_clear(self._memory(ctx), True)

    def seq_pos_max(self, seq: int) -> int:
        """The last position sequence ``seq`` holds (-1: none)."""
        import llama_cpp

        with self.use() as ctx:
            return int(llama_cpp.llama_memory_seq_pos_max(self._memory(ctx), seq))

    def seq_state(self, seq: int) -> bytes | None:
        """Sequence ``seq``'s KV cells as bytes (to move them into another context)."""
        import llama_cpp

        with self.use() as ctx:
            size = llama_cpp.llama_state_seq_get_size(ctx, seq)
            buf = (ctypes.c_uint8 * size)()
            if llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq) != size:
                return None
            return bytes(buf)

    def set_seq_state(self, data: bytes, seq: int) -> bool:
        import llama_cpp

        with self.use() as ctx:
            buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            return bool(llama_cpp.llama_state_seq_set_data(ctx, buf, len(data), seq) > 0)
