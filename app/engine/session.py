"""One loaded model pair in llama.cpp, driven through its low-level API and mtmd.

Why not llama-cpp-python's ``Llava15ChatHandler``: it clears the KV cache and
re-encodes the image on every call, and formats a different prompt. Here:

* the prompt is the training template (prompt.py), tokenized chunk by chunk
  with no BOS, the image embeddings from mtmd spliced in between;
* encoded images are cached by pixel fingerprint, and the KV cache keeps the
  previous request: a new request only evaluates the positions after the
  longest common prefix (a new seed, temperature or instruction for the same
  image skips the image encode and most of the prefill);
* the model's final-LayerNorm bias, which a llama GGUF cannot hold, is added to
  every step's logits by llama.cpp's logit-bias sampler (CONVERSION.md §3.7);
* ``n_variants`` sequences decode in parallel in one context, sharing the
  image and prompt prefix;
* cancel is checked between tokens and inside llama_decode (abort callback).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..errors import Cancelled, GenerationError, ImageError, ModelError
from . import llamalib
from .events import Event, Finished, GenerationParams, Progress, Started, Stats, Token
from .image import image_fingerprint, prepare_for_model
from .pair import ModelPair, PairInfo, inspect_pair
from .prompt import EOS_ID, Exchange, PartKind, Prompt, build_prompt
from .speculative import (
    CPU_BATCH_ROWS,
    CPU_EXTRA_COST,
    GPU_DRAFT_MAX,
    GPU_EXTRA_COST,
    Drafter,
    SamplingRule,
    prior_text,
    sample,
    verify,
)

F32 = npt.NDArray[np.float32]

#: Key of one KV position: a text token id, or (image fingerprint, row) for an image row.
PosKey = int | tuple[str, int]

IMAGE_CACHE_SIZE = 4
#: KV cells kept free beyond n_ctx for the padding rows of a batch.
PAD_CELLS = 8


def physical_cores() -> int:
    """Physical cores (llama.cpp decodes fastest with one thread per core)."""
    try:
        with Path("/proc/cpuinfo").open(encoding="ascii", errors="replace") as fh:
            cores = set()
            phys = core = ""
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":", 1)[1].strip()
                    cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    n = os.cpu_count() or 2
    return max(1, n // 2) if n >= 4 else n


@dataclass(frozen=True)
class EngineOptions:
    """How to run the pair: offload, threads, context, precision of the KV cache."""

    n_gpu_layers: int | None = None  # None = auto (all that fit), 0 = CPU only, N = N layers
    vision_gpu: bool = True
    n_threads: int = 0  # 0 = physical cores
    flash_attention: bool = False
    n_ctx: int = 2048
    n_batch: int = 1024
    n_ubatch: int = 512
    kv_f32: bool = False  # exactness tests; F16 otherwise
    max_variants: int = 4
    # n-gram drafts verified in one batch (single sequence only; see speculative.py). None = auto (on).
    speculative: bool | None = None
    draft_max: int = 0  # 0 = auto: 3 on the CPU (one 4-row batch), 8 with GPU offload
    # Pad decode batches of 2-3 rows to 4 with throw-away rows: on the CPU a 4-row batch runs the
    # repacked GEMM kernel and costs less than 3 rows (7B Q4_K_M, 2 threads: 1.53x vs 2.07x one row).
    # None = auto: on when no layer runs on a GPU.
    pad_batches: bool | None = None

    def threads(self) -> int:
        return self.n_threads if self.n_threads > 0 else physical_cores()


@dataclass
class _Seq:
    """One generated sequence (variant)."""

    seq_id: int
    sampler: Any
    decoder: codecs.IncrementalDecoder
    pos: int
    n_generated: int = 0
    done: bool = False
    finish_reason: str = "stop"
    logits_index: int = -1
    t_first: float = 0.0


@dataclass
class _SpecResult:
    n_generated: int = 0
    drafted: int = 0
    accepted: int = 0
    finish_reason: str = "stop"


class Session:
    """A loaded pair. Not thread-safe: one request at a time (``cancel`` may be called from any thread)."""

    def __init__(self, pair: ModelPair, options: EngineOptions | None = None,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.pair = pair
        self.options = options or EngineOptions()
        self.info: PairInfo = inspect_pair(pair)
        self.warnings: list[str] = list(self.info.warnings)
        self._cancel = threading.Event()
        self._model: Any = None
        self._ctx: Any = None
        self._mtmd: Any = None
        self._vocab: Any = None
        self._n_ctx = 0
        self._n_seq_max = 1  # sequences for variants; the context has one more for padding rows
        self._pad_rows = 0  # pad batches of 2..this-1 rows up to this many (0: never)
        self._prior_tokens: list[int] | None = None
        self._kv_keys: list[PosKey] = []  # what sequence 0 holds in the KV cache
        self._images: OrderedDict[str, F32] = OrderedDict()
        self._abort_cb: Any = None
        self._abortable = False  # whether llama.cpp calls _abort_cb during llama_decode
        self._bias_array: Any = None
        self._progress_cb: Any = None
        self.load_s = 0.0
        self.devices: tuple[str, ...] = ()
        self.n_gpu_layers_offloaded = 0
        self.cls_order_ok: bool | None = None
        self._load(on_progress)

    # ------------------------------------------------------------------ loading
    def _load(self, on_progress: Callable[[Progress], None] | None) -> None:
        import llama_cpp

        llamalib.init()
        t0 = time.perf_counter()
        mparams = llama_cpp.llama_model_default_params()
        ngl = self.options.n_gpu_layers
        mparams.n_gpu_layers = -1 if ngl is None else int(ngl)
        if ngl == 0 or not llama_cpp.llama_supports_gpu_offload():
            # On the CPU llama.cpp repacks the weights into its own layout; with mmap
            # the mapped file stays resident beside that copy (8.5 GiB instead of
            # 5.5 GiB for the 7B Q4_K_M pair). Reading the file instead keeps one copy.
            mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
        if on_progress is not None:
            def _progress(fraction: float, _user: ctypes.c_void_p) -> bool:
                on_progress(Progress("load", float(fraction), "Loading the model"))
                return not self._cancel.is_set()
            self._progress_cb = llama_cpp.llama_progress_callback(_progress)
            mparams.progress_callback = self._progress_cb
        mark = llamalib.log_mark()
        self._model = llama_cpp.llama_model_load_from_file(str(self.pair.model).encode(), mparams)
        if not self._model and ngl is None and not self._cancel.is_set() and llama_cpp.llama_supports_gpu_offload():
            # "auto" asked for every layer on the GPU and that did not fit: run on the CPU instead.
            self.warnings.append("The model did not fit on the GPU; running on the CPU.")
            mparams.n_gpu_layers = 0
            self._model = llama_cpp.llama_model_load_from_file(str(self.pair.model).encode(), mparams)
        if not self._model:
            if self._cancel.is_set():
                raise Cancelled("Loading the model was cancelled.")
            raise ModelError(f"llama.cpp could not load {self.pair.model.name}.",
                             detail="\n".join(llamalib.recent_log()))
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._parse_devices(llamalib.log_since(mark))
        # Millisecond probe: does this llama.cpp put CLIP's class token first?
        from .clsprobe import probe

        self.cls_order_ok = probe().class_token_first
        if not self.cls_order_ok:
            self.warnings.append("This llama.cpp has the llava class-token bug: image generation is disabled.")
        pad = self.options.pad_batches
        if pad is None:
            pad = self.n_gpu_layers_offloaded == 0
        self._pad_rows = CPU_BATCH_ROWS if pad else 0
        self._create_context(self.options.n_ctx, 1)
        from llama_cpp import mtmd_cpp as mtmd

        mp = mtmd.mtmd_context_params_default()
        mp.use_gpu = bool(self.options.vision_gpu)
        mp.print_timings = False
        mp.n_threads = self.options.threads()
        mp.warmup = False
        mp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.options.flash_attention
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self._mtmd = mtmd.mtmd_init_from_file(str(self.pair.mmproj).encode(), self._model, mp)
        if not self._mtmd:
            self.close()
            raise ModelError(f"llama.cpp could not load the vision projector {self.pair.mmproj.name}.",
                             detail="\n".join(llamalib.recent_log()))
        self.load_s = time.perf_counter() - t0

    def _parse_devices(self, lines: Sequence[str]) -> None:
        devices: list[str] = []
        offloaded = 0
        for ln in lines:
            m = re.search(r"using device (\S+) \(([^)]*)\)", ln)
            if m:
                devices.append(f"{m.group(1)} ({m.group(2)})")
            m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", ln)
            if m:
                offloaded = int(m.group(1))
        self.devices = tuple(devices) or ("CPU",)
        self.n_gpu_layers_offloaded = offloaded

    def _create_context(self, n_ctx: int, n_seq_max: int) -> None:
        """A new llama.cpp context. Sequence 0's KV cells (the last prompt and answer) move
        into it, so growing the context for variants does not evaluate the prompt again."""
        import llama_cpp

        saved: Any = None
        if self._ctx and self._kv_keys:
            size = llama_cpp.llama_state_seq_get_size(self._ctx, 0)
            saved = (ctypes.c_uint8 * size)()
            if llama_cpp.llama_state_seq_get_data(self._ctx, saved, size, 0) != size:
                saved = None
        keys = self._kv_keys
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx + (PAD_CELLS if self._pad_rows else 0)
        cp.n_batch = self.options.n_batch
        cp.n_ubatch = self.options.n_ubatch
        cp.n_seq_max = n_seq_max + (1 if self._pad_rows else 0)  # the last one holds padding rows
        cp.kv_unified = True  # variants share the prompt's cells instead of copying them
        cp.n_threads = self.options.threads()
        cp.n_threads_batch = self.options.threads()
        cp.no_perf = True
        cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.options.flash_attention
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        if self.options.kv_f32:
            cp.type_k = llama_cpp.GGML_TYPE_F32
            cp.type_v = llama_cpp.GGML_TYPE_F32

        def _abort(_user: ctypes.c_void_p) -> bool:
            return self._cancel.is_set()

        self._abort_cb = llama_cpp.ggml_abort_callback(_abort)
        cp.abort_callback = self._abort_cb
        self._abortable = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise ModelError("llama.cpp could not create a context (out of memory?).",
                             detail="\n".join(llamalib.recent_log()))
        self._n_ctx = n_ctx
        self._n_seq_max = n_seq_max
        self._kv_keys = []
        if saved is not None and llama_cpp.llama_state_seq_set_data(self._ctx, saved, len(saved), 0) > 0:
            self._kv_keys = keys

    def close(self) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp as mtmd

        if self._mtmd:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """Stop the running request within one token (or one llama_decode call)."""
        self._cancel.set()

    # --------------------------------------------------------------- tokenizing
    def tokenize(self, text: str) -> list[int]:
        """One chunk, as in training: no BOS, special tokens stay text, leading '▁' added by SPM."""
        import llama_cpp

        raw = text.encode("utf-8")
        n_max = len(raw) + 16
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, n_max, False, False)
        if n < 0:
            raise GenerationError("The prompt could not be tokenized.")
        return list(buf[:n])

    def token_bytes(self, token: int) -> bytes:
        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    # ------------------------------------------------------------------- images
    def encode_image(self, img: Image.Image) -> tuple[str, F32, bool]:
        """Embeddings of a model-ready RGB image, from the cache when possible."""
        fp = image_fingerprint(img)
        hit = self._images.get(fp)
        if hit is not None:
            self._images.move_to_end(fp)
            return fp, hit, True
        if not self.cls_order_ok:
            raise GenerationError(
                "This llama.cpp build has the llava class-token bug (upstream issue 25814) and would "
                "produce wrong image features; reinstall Web2Code to get its patched llama.cpp build.")
        emb = self._mtmd_encode(img)
        self._images[fp] = emb
        while len(self._images) > IMAGE_CACHE_SIZE:
            self._images.popitem(last=False)
        return fp, emb, False

    def _mtmd_encode(self, img: Image.Image) -> F32:
        import llama_cpp
        from llama_cpp import mtmd_cpp as mtmd

        rgb = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
        h, w = rgb.shape[:2]
        buf = (ctypes.c_uint8 * rgb.size).from_buffer_copy(rgb.tobytes())
        bitmap = mtmd.mtmd_bitmap_init(w, h, buf)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            marker = mtmd.mtmd_default_marker()
            text = mtmd.mtmd_input_text(text=marker, text_len=len(marker), add_special=False,
                                        parse_special=True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            if mtmd.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                raise ImageError("The vision encoder could not take this image.")
            chunk = None
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                c = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(c) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    chunk = c
            if chunk is None:
                raise ImageError("The vision encoder produced no image tokens.")
            n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            if mtmd.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                raise GenerationError("Encoding the image failed.", detail="\n".join(llamalib.recent_log()))
            n_embd = llama_cpp.llama_model_n_embd(self._model)
            out = mtmd.mtmd_get_output_embd(self._mtmd)
            arr: F32 = np.ctypeslib.as_array(out, shape=(n_tokens * n_embd,)).astype(np.float32)
            return arr.reshape(n_tokens, n_embd)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    # ------------------------------------------------------------------ prompt
    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids in order (text chunk by chunk, EOS as its id), -1 at the image."""
        ids: list[int] = []
        for part in prompt.parts:
            if part.kind is PartKind.TEXT:
                ids.extend(self.tokenize(part.text))
            elif part.kind is PartKind.EOS:
                ids.append(EOS_ID)
            else:
                ids.append(-1)
        return ids

    def prompt_items(self, prompt: Prompt, fp: str, emb: F32) -> list[PosKey]:
        """KV keys of every prompt position: token ids, and (fingerprint, row) for each image row."""
        keys: list[PosKey] = []
        for t in self._prompt_ids(prompt):
            if t == -1:
                keys.extend((fp, r) for r in range(emb.shape[0]))
            else:
                keys.append(t)
        return keys

    def _decode_tokens(self, tokens: Sequence[int], pos0: int, seq_ids: Sequence[Sequence[int]] | None = None,
                       want_logits: Sequence[bool] | None = None, positions: Sequence[int] | None = None
                       ) -> None:
        import llama_cpp

        n = len(tokens)
        batch = llama_cpp.llama_batch_init(n, 0, 1 if seq_ids is None else max(len(x) for x in seq_ids))
        try:
            for i, tok in enumerate(tokens):
                batch.token[i] = tok
                batch.pos[i] = positions[i] if positions is not None else pos0 + i
                sids = seq_ids[i] if seq_ids is not None else (0,)
                batch.n_seq_id[i] = len(sids)
                for j, s in enumerate(sids):
                    batch.seq_id[i][j] = s
                batch.logits[i] = bool(want_logits[i]) if want_logits is not None else (i == n - 1)
            batch.n_tokens = n
            self._check_decode(llama_cpp.llama_decode(self._ctx, batch))
        finally:
            llama_cpp.llama_batch_free(batch)

    def _set_abortable(self, on: bool) -> None:
        """Whether a running llama_decode checks for cancel. llama.cpp calls the callback after
        every graph node (~870 per step at 7B), each a Python call taking the GIL: worth it for
        prefill batches that run for seconds, not for generation steps (~0.3 s on a CPU), which
        check for cancel between them. Measured: ~1% of the decode rate."""
        import llama_cpp

        if on != self._abortable:
            cb = self._abort_cb if on else llama_cpp.ggml_abort_callback(0)
            llama_cpp.llama_set_abort_callback(self._ctx, cb, None)
            self._abortable = on

    def _decode_step(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[int],
                     want_logits: Sequence[bool]) -> None:
        """One decode step of generated or drafted tokens (one sequence id each).

        Batches of 2 to ``_pad_rows - 1`` rows get throw-away rows appended in the
        padding sequence (positions 0.., no logits; they attend only to each
        other) and those cells are freed right after: the real rows' results do
        not depend on them, and the whole batch costs less than the short one.
        """
        import llama_cpp

        self._set_abortable(False)
        n = len(tokens)
        pad = self._pad_rows - n if 1 < n < self._pad_rows else 0
        sids = [(s,) for s in seq_ids]
        if pad:
            scratch = self._n_seq_max
            tokens = [*tokens, *([tokens[-1]] * pad)]
            positions = [*positions, *range(pad)]
            sids += [(scratch,)] * pad
            want_logits = [*want_logits, *([False] * pad)]
        try:
            self._decode_tokens(tokens, 0, seq_ids=sids, want_logits=want_logits, positions=positions)
        finally:
            if pad:
                llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._ctx), self._n_seq_max, -1, -1)

    def _decode_embd(self, rows: F32, pos0: int, want_last: bool) -> None:
        import llama_cpp

        n, n_embd = rows.shape
        batch = llama_cpp.llama_batch_init(n, n_embd, 1)
        try:
            data = np.ascontiguousarray(rows, dtype=np.float32)
            ctypes.memmove(batch.embd, data.ctypes.data, data.nbytes)
            for i in range(n):
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = want_last and i == n - 1
            batch.n_tokens = n
            self._check_decode(llama_cpp.llama_decode(self._ctx, batch))
        finally:
            llama_cpp.llama_batch_free(batch)

    def _check_decode(self, rc: int) -> None:
        if rc == 0:
            return
        if self._cancel.is_set():
            raise Cancelled()
        if rc == 1:
            raise GenerationError("The context is full: the prompt and answer do not fit in 2048 tokens.")
        raise GenerationError(f"llama.cpp failed to evaluate the prompt (code {rc}).",
                              detail="\n".join(llamalib.recent_log()))

    def _prefill(self, keys: list[PosKey], emb: F32) -> Generator[Progress, None, int]:
        """Evaluate the positions after the common prefix, yielding progress.

        Returns (as the generator's value) how many positions were reused.
        """
        import llama_cpp

        self._set_abortable(True)
        mem = llama_cpp.llama_get_memory(self._ctx)
        keep = 0
        for a, b in zip(self._kv_keys, keys, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(keys) - 1)  # the last position must be evaluated for its logits
        # Only sequence 0 survives between requests (variants and padding rows are dropped).
        for other in range(1, self._n_seq_max + (1 if self._pad_rows else 0)):
            llama_cpp.llama_memory_seq_rm(mem, other, -1, -1)
        if not llama_cpp.llama_memory_seq_rm(mem, 0, keep, -1):
            llama_cpp.llama_memory_clear(mem, True)
            keep = 0
        self._kv_keys = list(keys[:keep])
        total = len(keys) - keep
        done = 0
        i = keep
        step = self.options.n_batch
        while i < len(keys):
            if self._cancel.is_set():
                raise Cancelled()
            k = keys[i]
            if isinstance(k, tuple):
                j = i
                while j < len(keys) and isinstance(keys[j], tuple) and j - i < step:
                    j += 1
                rows = emb[k[1]:k[1] + (j - i)]
                self._decode_embd(rows, i, want_last=(j == len(keys)))
            else:
                j = i
                while j < len(keys) and not isinstance(keys[j], tuple) and j - i < step:
                    j += 1
                self._decode_tokens([int(t) for t in keys[i:j]], i)  # type: ignore[arg-type]
            self._kv_keys.extend(keys[i:j])
            done += j - i
            yield Progress.counted("prefill", done, total, "Reading the prompt")
            i = j
        return keep

    # ---------------------------------------------------------------- sampling
    def _make_sampler(self, params: GenerationParams, seed: int) -> Any:
        import llama_cpp

        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        offset = self.info.logit_offset
        if offset is not None:
            if self._bias_array is None:
                # (token, bias) pairs for every token, laid out as llama_logit_bias structs.
                n = int(offset.shape[0])
                pairs = np.zeros(n, dtype=[("token", "<i4"), ("bias", "<f4")])
                pairs["token"] = np.arange(n)
                pairs["bias"] = offset
                self._bias_array = (llama_cpp.llama_logit_bias * n).from_buffer_copy(pairs.tobytes())
            n = len(self._bias_array)
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_logit_bias(n, n, self._bias_array))
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        if params.repeat_penalty != 1.0:
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_penalties(n_vocab, 64, params.repeat_penalty, 0.0, 0.0))
        if params.greedy:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    # ----------------------------------------------------------------- running
    def run(self, image: Image.Image | str | os.PathLike[str] | bytes, params: GenerationParams,
            *, kind: str = "generate", history: Sequence[Exchange] = (),
            request_id: str = "") -> Iterator[Event]:
        """Stream the events of one request (every variant). Raises only on programming errors:
        user-facing failures become exceptions of :mod:`..errors` for the backend to report."""
        import llama_cpp

        self._cancel.clear()
        request_id = request_id or secrets.token_hex(6)
        n_var = params.n_variants
        if n_var > self.options.max_variants:
            raise GenerationError(f"At most {self.options.max_variants} variants at once.")
        img = image if isinstance(image, Image.Image) else None
        size = self.info.image_size or 336
        prepared = prepare_for_model(image if img is None else img, image_size=size)
        yield Progress("encode", 0.0, "Encoding the image")
        t0 = time.perf_counter()
        fp, emb, reused_image = self.encode_image(prepared)
        t_enc = time.perf_counter() - t0
        yield Progress("encode", 1.0, "Encoding the image")

        prompt = build_prompt(params.instruction, history)
        keys = self.prompt_items(prompt, fp, emb)
        n_prompt = len(keys)
        n_ctx_train = self.info.n_ctx_train or self.options.n_ctx
        room_per_seq = n_ctx_train - n_prompt
        if room_per_seq <= 0:
            raise GenerationError("The conversation is too long for the model's 2048-token context.")
        # Variants share the prompt's KV cells; each needs room for its own answer.
        need_ctx = n_prompt + n_var * min(params.max_tokens, room_per_seq)
        if n_var > 1 and (self._n_seq_max < n_var or self._n_ctx < need_ctx):
            self._create_context(max(need_ctx, self.options.n_ctx), max(n_var, self._n_seq_max))
        max_new = min(params.max_tokens, room_per_seq, (self._n_ctx - n_prompt) // n_var)
        clamped = max_new < params.max_tokens

        t1 = time.perf_counter()
        reused = yield from self._prefill(keys, emb)
        t_prefill = time.perf_counter() - t1

        base_seed = params.seed if params.seed is not None else secrets.randbelow(2**32)
        mem = llama_cpp.llama_get_memory(self._ctx)
        seqs: list[_Seq] = []
        for v in range(n_var):
            if v > 0:
                llama_cpp.llama_memory_seq_cp(mem, 0, v, -1, -1)
            seqs.append(_Seq(seq_id=v, sampler=self._make_sampler(params, (base_seed + v) % 2**32),
                             decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
                             pos=n_prompt))
            yield Started(request_id, "ask" if kind == "ask" else "generate", v, n_var)
        # All variants sample their first token from the prompt's last logits.
        for s in seqs:
            s.logits_index = -1

        t2 = time.perf_counter()
        speculative = self.options.speculative is not False
        if n_var == 1 and speculative:
            for s in seqs:
                llama_cpp.llama_sampler_free(s.sampler)
            spec = yield from self._generate_speculative(params, base_seed, n_prompt, max_new,
                                                         html=kind != "ask")
            t_decode = time.perf_counter() - t2
            reason = spec.finish_reason
            yield Finished(Stats(
                n_prompt_tokens=n_prompt, n_image_tokens=int(emb.shape[0]), n_generated=spec.n_generated,
                load_s=self.load_s, image_encode_s=0.0 if reused_image else t_enc, prefill_s=t_prefill,
                # The first token comes from the prompt's logits: n tokens cost n - 1 evaluations.
                decode_s=t_decode, tokens_per_s=Stats.rate(max(spec.n_generated - 1, 0), t_decode),
                finish_reason=reason,  # type: ignore[arg-type]
                reused_image=reused_image, reused_prefix_tokens=reused, max_tokens_clamped=clamped,
                devices=self.devices, n_gpu_layers_offloaded=self.n_gpu_layers_offloaded,
                seed=base_seed, variant=0, draft_tokens=spec.drafted, accepted_draft_tokens=spec.accepted))
            return
        cancelled = False
        try:
            while True:
                step_tokens: list[int] = []
                step_seqs: list[_Seq] = []
                for s in seqs:
                    if s.done:
                        continue
                    if self._cancel.is_set():
                        cancelled = True
                        break
                    tok = llama_cpp.llama_sampler_sample(s.sampler, self._ctx, s.logits_index)
                    if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                        s.done, s.finish_reason = True, "stop"
                        continue
                    s.n_generated += 1
                    text = s.decoder.decode(self.token_bytes(tok))
                    yield Token(text, int(tok), s.n_generated - 1, s.seq_id)
                    if s.n_generated >= max_new:
                        s.done, s.finish_reason = True, "length"
                        continue
                    step_tokens.append(int(tok))
                    step_seqs.append(s)
                if cancelled or self._cancel.is_set():
                    cancelled = True
                    break
                if not step_tokens:
                    break
                self._decode_step(step_tokens, [s.pos for s in step_seqs], [s.seq_id for s in step_seqs],
                                  [True] * len(step_tokens))
                for i, s in enumerate(step_seqs):
                    s.pos += 1
                    s.logits_index = i
                    if s.seq_id == 0:
                        self._kv_keys.append(step_tokens[i])
        except Cancelled:
            cancelled = True
        finally:
            for s in seqs:
                llama_cpp.llama_sampler_free(s.sampler)
        t_decode = time.perf_counter() - t2
        if n_var > 1:
            # Keep sequence 0's prompt and answer for reuse; the variants' cells go.
            for s in seqs[1:]:
                llama_cpp.llama_memory_seq_rm(mem, s.seq_id, -1, -1)
        for s in seqs:
            reason = "cancelled" if cancelled and not s.done else s.finish_reason
            yield Finished(Stats(
                n_prompt_tokens=n_prompt, n_image_tokens=int(emb.shape[0]), n_generated=s.n_generated,
                load_s=self.load_s, image_encode_s=0.0 if reused_image else t_enc, prefill_s=t_prefill,
                decode_s=t_decode,
                tokens_per_s=Stats.rate(sum(max(x.n_generated - 1, 0) for x in seqs), t_decode),
                finish_reason=reason,  # type: ignore[arg-type]
                reused_image=reused_image, reused_prefix_tokens=reused, max_tokens_clamped=clamped,
                devices=self.devices, n_gpu_layers_offloaded=self.n_gpu_layers_offloaded,
                seed=(base_seed + s.seq_id) % 2**32, variant=s.seq_id))

    def new_drafter(self, *, html: bool = True) -> Drafter:
        """The drafting policy for this device, its history seeded with the HTML prior
        (``html``) and then the prompt in the KV cache."""
        on_gpu = self.n_gpu_layers_offloaded > 0
        k = self.options.draft_max or (GPU_DRAFT_MAX if on_gpu else CPU_BATCH_ROWS - 1)
        prior: list[int] = []
        if html:
            if self._prior_tokens is None:
                self._prior_tokens = self.tokenize(prior_text())
            prior = self._prior_tokens
        d = Drafter(k, GPU_EXTRA_COST if on_gpu else CPU_EXTRA_COST, prior=prior)
        d.extend([key if isinstance(key, int) else -1 for key in self._kv_keys])  # -1: image rows
        return d

    def _generate_speculative(self, params: GenerationParams, seed: int, n_prompt: int,
                              max_new: int, *, html: bool = True) -> Generator[Token, None, _SpecResult]:
        """One sequence with n-gram drafts verified in batches (see speculative.py).

        Token choice happens here in numpy from llama.cpp's raw logits, with the
        same offset, penalty, temperature, top-k and top-p as the sampler chain.
        """
        import llama_cpp

        rule = SamplingRule(params.temperature, params.top_k, params.top_p, params.repeat_penalty)
        rng = np.random.default_rng(seed)
        offset = self.info.logit_offset
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        mem = llama_cpp.llama_get_memory(self._ctx)
        drafter = self.new_drafter(html=html)
        history: list[int] = []  # generated tokens: llama.cpp's penalties see only these
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        res = _SpecResult()
        pos = n_prompt  # next free position
        prompt_logits = self._logits_at(-1, n_vocab)  # predicts the token at pos

        def emit(tok: int) -> Token:
            res.n_generated += 1
            history.append(tok)
            drafter.append(tok)
            return Token(decoder.decode(self.token_bytes(tok)), tok, res.n_generated - 1, 0)

        # The first token comes from the prompt's logits.
        tok = sample(rule.probabilities(prompt_logits, offset, history), rng)
        while True:
            if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                res.finish_reason = "stop"
                return res
            yield emit(tok)
            if res.n_generated >= max_new:
                res.finish_reason = "length"
                return res
            if self._cancel.is_set():
                res.finish_reason = "cancelled"
                return res
            drafts = drafter.propose(max_new - res.n_generated)
            batch = [tok, *drafts]
            try:
                self._decode_step(batch, range(pos, pos + len(batch)), [0] * len(batch), [True] * len(batch))
            except Cancelled:
                res.finish_reason = "cancelled"
                return res
            res.drafted += len(drafts)
            accepted_all = True
            for i, d in enumerate(drafts):
                p = rule.probabilities(self._logits_at(i, n_vocab), offset, history)
                ok, chosen = verify(p, d, rng, rule.greedy)
                if not ok:
                    drafter.record(len(drafts), i)
                    # Positions after the last accepted token hold rejected drafts: drop them.
                    keep_until = pos + 1 + i
                    llama_cpp.llama_memory_seq_rm(mem, 0, keep_until, -1)
                    self._kv_keys.extend(batch[:i + 1])
                    pos = keep_until
                    tok = chosen
                    accepted_all = False
                    break
                res.accepted += 1
                if i + 1 == len(drafts):
                    drafter.record(len(drafts), len(drafts))
                if llama_cpp.llama_vocab_is_eog(self._vocab, d):
                    res.finish_reason = "stop"
                    self._kv_keys.extend(batch[:i + 2])
                    return res
                yield emit(d)
                if res.n_generated >= max_new or self._cancel.is_set():
                    res.finish_reason = "length" if res.n_generated >= max_new else "cancelled"
                    self._kv_keys.extend(batch[:i + 2])
                    llama_cpp.llama_memory_seq_rm(mem, 0, pos + i + 2, -1)
                    return res
            if accepted_all:
                self._kv_keys.extend(batch)
                pos += len(batch)
                tok = sample(rule.probabilities(self._logits_at(len(batch) - 1, n_vocab), offset, history), rng)

    def _logits_at(self, i: int, n_vocab: int) -> F32:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._ctx, i)
        out: F32 = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()
        return out

    def prompt_token_ids(self, image: Image.Image, instruction: str,
                         history: Sequence[Exchange] = ()) -> list[int]:
        """The prompt's text token ids in order with -1 at the image (for ``--json``)."""
        return self._prompt_ids(build_prompt(instruction, history))

    def logits(self) -> F32:
        """The last evaluated position's raw logits (no offset), for tests and verification."""
        import llama_cpp

        return self._logits_at(-1, llama_cpp.llama_vocab_n_tokens(self._vocab))


@contextlib.contextmanager
def open_session(pair: ModelPair, options: EngineOptions | None = None) -> Iterator[Session]:
    s = Session(pair, options)
    try:
        yield s
    finally:
        s.close()
