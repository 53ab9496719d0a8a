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
  every step's logits by the sampler (sampling.py; CONVERSION.md §3.7), the one
  sampler of every path: the same seed gives the same tokens with or without
  speculative drafts, and as variant 0 of N;
* the text before the image (system prompt and ``USER:``) is the same for
  every request: it is evaluated once at load and its KV cells are kept, so a
  cold request only encodes the image and evaluates what follows it;
* the input image's text is read (OCR, ocrdraft.py) in a thread started with
  the request, while the image is encoded and the prompt evaluated; once it is
  done its lines and colours become a second draft source (never waited for);
* ``n_variants`` sequences decode in parallel in one context, sharing the
  image and prompt prefix;
* cancel is checked between tokens and inside llama_decode (abort callback);
* every llama.cpp call goes through the adapter (llama/): after ``close()``
  every method raises :class:`~..errors.EngineClosed`, and closing from
  another thread during a request stops it and waits before freeing.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..errors import Cancelled, EngineClosed, GenerationError, ModelError, RequestError
from . import llama
from .events import Event, Finished, GenerationParams, Progress, Started, Stats, Token
from .image import image_fingerprint, load_image, prepare_for_model
from .modelimage import ModelImage, TextRef
from .ocrdraft import ImageText, build_text_source, read_image_text
from .pair import ModelPair, PairInfo, inspect_pair
from .prompt import DEFAULT_INSTRUCTION, EOS_ID, Exchange, PartKind, Prompt, build_prompt
from .sampling import SamplingRule, TokenSampler
from .speculative import (
    CPU_BATCH_ROWS,
    CPU_EXTRA_COST,
    GPU_DRAFT_MAX,
    GPU_EXTRA_COST,
    OCR,
    Drafter,
    StepCosts,
    prior_text,
)

F32 = npt.NDArray[np.float32]
_H = TypeVar("_H", bound=llama.Handle)

#: Key of one KV position: a text token id, or (image fingerprint, row) for an image row.
PosKey = int | tuple[str, int]

IMAGE_CACHE_SIZE = 4
#: KV cells kept free beyond n_ctx for the padding rows of a batch.
PAD_CELLS = 8
#: More threads than this is a typing mistake, not a machine (llama.cpp aborts on absurd counts).
MAX_THREADS = 512


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
    # Drafts from the image's own text (OCR in a thread during the image encode; ocrdraft.py).
    ocr_drafts: bool = True
    # Read the text here when nobody has yet. Off: only a result the client left in the OCR cache
    # (the window and the command line read it in their own process while the image is encoded),
    # picked up as soon as it appears; the OCR engine (~0.28 GiB) then never loads in this process.
    ocr_run: bool = False
    # Wait for the OCR before the first decode step (tests and the replay bench measure the drafts,
    # not the race with a tiny model); the application never waits.
    ocr_wait: bool = False
    # Evaluate the text before the image at load and keep its KV cells (time to first token).
    warm_prefix: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.n_threads, bool) or not isinstance(self.n_threads, int) \
                or not 0 <= self.n_threads <= MAX_THREADS:
            raise RequestError(f"Threads must be a whole number from 1 to {MAX_THREADS} (0: one per core), "
                               f"not {self.n_threads!r}.")
        if self.n_gpu_layers is not None and self.n_gpu_layers < 0:
            raise RequestError(f"GPU layers must be 'auto' or a number from 0 up, not {self.n_gpu_layers}.")
        if not 1 <= self.max_variants <= 16:
            raise RequestError(f"max_variants must be from 1 to 16, not {self.max_variants}.")

    def threads(self) -> int:
        return self.n_threads if self.n_threads > 0 else physical_cores()


@dataclass
class _Seq:
    """One generated sequence (variant)."""

    seq_id: int
    sampler: TokenSampler
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
    drafter: Drafter | None = None  # its per-source counts (Session.last_drafts)


class _OcrJob:
    """The image's text, read in a daemon thread started with the request (ocrdraft.read_image_text).
    Nobody waits for it: the decode loop takes the result once ``done`` (or never)."""

    POLL_S = 0.25  # without ``run``: how often the cache is looked at for the client's result
    MAX_WAIT_S = 600.0

    def __init__(self, image: Image.Image | TextRef, *, run: bool) -> None:
        self.result: ImageText | None = None
        self.error = ""
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(image, run), name="web2code-ocr", daemon=True)
        self._thread.start()

    def _work(self, image: Image.Image | TextRef, run: bool) -> None:
        try:
            if not run or isinstance(image, TextRef):  # wait (cheaply, bounded) for the client's result
                from ..fidelity.ocr import cache_file

                target = image.cache_file() if isinstance(image, TextRef) else cache_file(image)
                deadline = time.monotonic() + self.MAX_WAIT_S
                while not target.exists():
                    if self._stop.wait(self.POLL_S) or time.monotonic() > deadline:
                        return
            # A reference (the worker got only the model's square): the client's result, never an OCR here.
            self.result = image.read() if isinstance(image, TextRef) else read_image_text(image, run=run)
        except Exception as exc:  # no text drafts then; the request itself is unaffected
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    def stop(self) -> None:
        """The request ended: stop looking for a cached result."""
        self._stop.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class Session:
    """A loaded pair. One request at a time; ``cancel`` and ``close`` may be called from any thread.

    After :meth:`close` every method raises :class:`~..errors.EngineClosed`.
    ``cancel`` (optional) is an event the owner sets to stop the load or the
    running request; by default the session has its own.
    """

    def __init__(self, pair: ModelPair, options: EngineOptions | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 *, cancel: threading.Event | None = None) -> None:
        self.pair = pair
        self.options = options or EngineOptions()
        self.info: PairInfo = inspect_pair(pair)
        self.warnings: list[str] = list(self.info.warnings)
        self._cancel = cancel if cancel is not None else threading.Event()
        self._closed = False
        self._model: llama.Model | None = None
        self._ctx: llama.Context | None = None
        self._vision: llama.Vision | None = None
        self._vision_gpu = False  # what the projector was loaded with
        self._n_ctx = 0
        self._n_seq_max = 1  # sequences for variants; the context has one more for padding rows
        self._pad_rows = 0  # pad batches of 2..this-1 rows up to this many (0: never)
        self._prior_tokens: list[int] | None = None
        self._kv_keys: list[PosKey] = []  # what sequence 0 holds in the KV cache
        self._images: OrderedDict[str, F32] = OrderedDict()
        self.load_s = 0.0
        self.prefix_s = 0.0  # evaluating the text before the image at load
        # The last request's drafting, for the bench and debugging: (drafted, accepted, steps) per
        # source, and the image text (None: no OCR ran or it was not ready before the end).
        self.last_drafts: dict[str, tuple[int, int, int]] = {}
        # Seconds of a one-row step and of a verify batch on this device (speculative.StepCosts).
        self.step_costs: StepCosts | None = None
        self.last_ocr: ImageText | None = None
        self.last_ocr_ready_step = -1  # the decode step at which the image text joined (-1: never)
        self.devices: tuple[str, ...] = ()
        self.n_gpu_layers_offloaded = 0
        self.vision_on_gpu = False
        self.cls_order_ok: bool | None = None
        try:
            self._load(on_progress)
        except BaseException:
            self.close()  # a load that fails half-way frees what it made
            raise

    # ------------------------------------------------------------------ loading
    def _load(self, on_progress: Callable[[Progress], None] | None) -> None:
        t0 = time.perf_counter()
        ngl = self.options.n_gpu_layers
        progress = None
        if on_progress is not None:
            def progress(fraction: float) -> bool:
                on_progress(Progress("load", fraction, "Loading the model"))
                return not self._cancel.is_set()
        # On the CPU llama.cpp repacks the weights into its own layout; with mmap the mapped
        # file stays resident beside that copy (8.5 GiB instead of 5.5 GiB for the 7B Q4_K_M
        # pair). Reading the file instead keeps one copy.
        read = ngl == 0 or not llama.supports_gpu_offload()
        self._model = llama.Model(self.pair.model, n_gpu_layers=ngl, read_weights=read, progress=progress)
        self.warnings.extend(self._model.warnings)
        self.devices = self._model.devices
        self.n_gpu_layers_offloaded = self._model.n_gpu_layers_offloaded
        if self._cancel.is_set():
            raise Cancelled("Loading the model was cancelled.")
        # Millisecond probe: does this llama.cpp put CLIP's class token first?
        from .clsprobe import probe

        self.cls_order_ok = probe().class_token_first
        if not self.cls_order_ok:
            self.warnings.append("This llama.cpp has the llava class-token bug: image generation is disabled.")
        pad = self.options.pad_batches
        if pad is None:
            pad = self.n_gpu_layers_offloaded == 0
        self._pad_rows = CPU_BATCH_ROWS if pad else 0
        try:
            self._create_context(self.options.n_ctx, 1)
            self._vision_gpu = self.options.vision_gpu
            self._vision = llama.Vision(self.pair.mmproj, self._model, use_gpu=self.options.vision_gpu,
                                        n_threads=self.options.threads(),
                                        flash_attention=self.options.flash_attention)
        except ModelError:
            # "auto": the weights fitted but the device had no room for the KV cache, the compute
            # buffers or the projector. Run everything on the CPU instead (an explicit layer count
            # is the user's choice: its error stands).
            if ngl is not None or not llama.supports_gpu_offload() or self._cancel.is_set():
                raise
            self._load_on_cpu(progress)
        # mtmd puts CLIP on the first GPU device when asked and the build has one (the CPU fallback
        # below asks for the CPU)
        self.vision_on_gpu = bool(self._vision is not None and self._vision_gpu and llama.supports_gpu_offload()
                                  and any(not d.upper().startswith("CPU") for d in self.devices))
        if self.options.warm_prefix:
            self._warm_prefix()
        self.load_s = time.perf_counter() - t0

    def _load_on_cpu(self, progress: Callable[[float], bool] | None) -> None:
        for h in (self._vision, self._ctx, self._model):
            if h is not None:
                h.close()
        self._vision = self._ctx = None
        self._model = llama.Model(self.pair.model, n_gpu_layers=0, read_weights=True, progress=progress,
                                  cpu_only=True)
        self.warnings.append("The GPU did not have room for the model; running on the CPU.")
        self.devices = self._model.devices
        self.n_gpu_layers_offloaded = 0
        self._vision_gpu = False
        if self.options.pad_batches is None:
            self._pad_rows = CPU_BATCH_ROWS
        self._create_context(self.options.n_ctx, 1)
        self._vision = llama.Vision(self.pair.mmproj, self._model, use_gpu=False, n_threads=self.options.threads(),
                                    flash_attention=self.options.flash_attention)

    def _warm_prefix(self) -> None:
        """Evaluate the text before the image (the same for every request) and keep its KV cells:
        the first request then reuses them like any later one (``_prefill``'s common prefix)."""
        t0 = time.perf_counter()
        head = build_prompt(DEFAULT_INSTRUCTION).parts[0]
        keys: list[PosKey] = list(self.tokenize(head.text))
        try:
            for _ in self._prefill(keys, np.zeros((0, 1), dtype=np.float32)):
                pass
        except Cancelled:
            raise Cancelled("Loading the model was cancelled.") from None
        self._prior_tokens = self.tokenize(prior_text())  # the drafting prior, tokenized once
        self.prefix_s = time.perf_counter() - t0

    def _create_context(self, n_ctx: int, n_seq_max: int) -> None:
        """A new llama.cpp context. Sequence 0's KV cells (the last prompt and answer) move
        into it, so growing the context for variants does not evaluate the prompt again."""
        model = self._live(self._model)
        old = self._ctx
        saved = old.seq_state(0) if old is not None and self._kv_keys else None
        keys = self._kv_keys
        if old is not None:
            self._ctx = None
            old.close()
        params = llama.ContextParams(
            n_ctx=n_ctx + (PAD_CELLS if self._pad_rows else 0),
            n_batch=self.options.n_batch, n_ubatch=self.options.n_ubatch,
            n_seq_max=n_seq_max + (1 if self._pad_rows else 0),  # the last one holds padding rows
            kv_unified=True,  # variants share the prompt's cells instead of copying them
            n_threads=self.options.threads(), flash_attention=self.options.flash_attention,
            kv_f32=self.options.kv_f32)
        self._ctx = llama.Context(model, params, abort=self._cancel)
        self._n_ctx = n_ctx
        self._n_seq_max = n_seq_max
        self._kv_keys = []
        if saved is not None and self._ctx.set_seq_state(saved, 0):
            self._kv_keys = keys

    def _live(self, handle: _H | None) -> _H:
        """A handle of this session, or EngineClosed once the session is closed."""
        if self._closed or handle is None:
            raise EngineClosed("The model session is closed.")
        return handle

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Free the model (idempotent; any thread). A running request stops first: it is
        cancelled, and the memory is freed when its current llama.cpp call returns."""
        self._closed = True
        self._cancel.set()
        for h in (self._vision, self._ctx, self._model):
            if h is not None:
                h.close()
        self._vision = self._ctx = self._model = None
        self._images.clear()

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
        return self._live(self._model).tokenize(text)

    def token_bytes(self, token: int) -> bytes:
        return self._live(self._model).token_bytes(token)

    # ------------------------------------------------------------------- images
    def encode_image(self, img: Image.Image) -> tuple[str, F32, bool]:
        """Embeddings of a model-ready RGB image, from the cache when possible."""
        vision = self._live(self._vision)
        fp = image_fingerprint(img)
        hit = self._images.get(fp)
        if hit is not None:
            self._images.move_to_end(fp)
            return fp, hit, True
        if not self.cls_order_ok:
            raise GenerationError(
                "This llama.cpp build has the llava class-token bug (upstream issue 25814) and would "
                "produce wrong image features; reinstall Web2Code to get its patched llama.cpp build.")
        emb = vision.encode(np.asarray(img.convert("RGB"), dtype=np.uint8))
        self._images[fp] = emb
        while len(self._images) > IMAGE_CACHE_SIZE:
            self._images.popitem(last=False)
        return fp, emb, False

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
        """Every token batch of the session (prefill and generation steps) goes through here."""
        pos = positions if positions is not None else range(pos0, pos0 + len(tokens))
        self._live(self._ctx).decode(tokens=tokens, positions=pos, seq_ids=seq_ids, logits=want_logits)

    def _decode_step(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[int],
                     want_logits: Sequence[bool]) -> None:
        """One decode step of generated or drafted tokens (one sequence id each).

        Batches of 2 to ``_pad_rows - 1`` rows get throw-away rows appended in the
        padding sequence (positions 0.., no logits; they attend only to each
        other) and those cells are freed right after: the real rows' results do
        not depend on them, and the whole batch costs less than the short one.
        Generation steps run without llama.cpp's abort callback (cancel is
        checked between steps; see Context.set_abortable).
        """
        ctx = self._live(self._ctx)
        ctx.set_abortable(False)
        n = len(tokens)
        pad = self._pad_rows - n if 1 < n < self._pad_rows else 0
        sids = [(s,) for s in seq_ids]
        if pad:
            scratch = self._n_seq_max
            tokens = [*tokens, *([tokens[-1]] * pad)]
            positions = [*positions, *range(pad)]
            sids += [(scratch,)] * pad
            want_logits = [*want_logits, *([False] * pad)]
        t0 = time.perf_counter()
        try:
            self._decode_tokens(tokens, 0, seq_ids=sids, want_logits=want_logits, positions=positions)
        finally:
            if pad and not ctx.closed:
                ctx.seq_rm(self._n_seq_max)
        if self.step_costs is not None:  # what drafting really costs here (new_drafter made it)
            self.step_costs.add(n, time.perf_counter() - t0)

    def _prefill(self, keys: list[PosKey], emb: F32) -> Generator[Progress, None, int]:
        """Evaluate the positions after the common prefix, yielding progress.

        Returns (as the generator's value) how many positions were reused.
        """
        ctx = self._live(self._ctx)
        ctx.set_abortable(True)
        keep = 0
        for a, b in zip(self._kv_keys, keys, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(keys) - 1)  # the last position must be evaluated for its logits
        # Only sequence 0 survives between requests (variants and padding rows are dropped).
        for other in range(1, self._n_seq_max + (1 if self._pad_rows else 0)):
            ctx.seq_rm(other)
        if not ctx.seq_rm(0, keep, -1):
            ctx.clear()
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
                ctx.decode(embd=rows, positions=range(i, j), logits=[j == len(keys) and r == j - i - 1
                                                                      for r in range(j - i)])
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
    def _sampler(self, params: GenerationParams, seed: int) -> TokenSampler:
        """The one sampler of every path (sampling.py), with the model's logit offset."""
        rule = SamplingRule(params.temperature, params.top_k, params.top_p, params.repeat_penalty)
        return TokenSampler(rule, seed % 2**32, self.info.logit_offset)

    # ----------------------------------------------------------------- running
    def run(self, image: Image.Image | str | os.PathLike[str] | bytes | ModelImage, params: GenerationParams,
            *, kind: str = "generate", history: Sequence[Exchange] = (),
            request_id: str = "") -> Iterator[Event]:
        """Stream the events of one request (every variant). Raises only on programming errors:
        user-facing failures become exceptions of :mod:`..errors` for the backend to report.

        Closing the session from another thread ends the request with :class:`Cancelled`."""
        self._live(self._model)
        self._cancel.clear()
        try:
            yield from self._run(image, params, kind=kind, history=history, request_id=request_id)
        except EngineClosed:
            if not self._closed:
                raise
            raise Cancelled("The model was closed during the request.") from None

    def _run(self, given: Image.Image | str | os.PathLike[str] | bytes | ModelImage, params: GenerationParams,
             *, kind: str, history: Sequence[Exchange], request_id: str) -> Iterator[Event]:
        request_id = request_id or secrets.token_hex(6)
        n_var = params.n_variants
        if n_var > self.options.max_variants:
            raise GenerationError(f"At most {self.options.max_variants} variants at once.")
        # A ModelImage is already the model's square (preparing it again changes nothing), with a
        # reference to the original's text instead of its pixels (modelimage.py).
        text_ref = given.text if isinstance(given, ModelImage) else None
        image = given.image if isinstance(given, ModelImage) else given
        img = image if isinstance(image, Image.Image) else None
        size = self.info.image_size or 336
        ocr: _OcrJob | None = None
        self.last_drafts, self.last_ocr, self.last_ocr_ready_step = {}, None, -1
        if self.options.ocr_drafts and n_var == 1 and self.options.speculative is not False:
            # One decoded copy for both: the OCR reads the original pixels, the model a padded 336².
            img = load_image(image if img is None else img)
            if text_ref is not None:
                ocr = _OcrJob(text_ref, run=False)
            elif not isinstance(given, ModelImage):  # the square alone: its text would not be the page's
                ocr = _OcrJob(img, run=self.options.ocr_run or self.options.ocr_wait)
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
            raise GenerationError(f"The conversation is too long for the model's {n_ctx_train}-token context.")
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
        ctx = self._live(self._ctx)
        model = self._live(self._model)
        seqs: list[_Seq] = []
        for v in range(n_var):
            if v > 0:
                ctx.seq_cp(0, v)
            seqs.append(_Seq(seq_id=v, sampler=self._sampler(params, base_seed + v),
                             decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
                             pos=n_prompt))
            yield Started(request_id, "ask" if kind == "ask" else "generate", v, n_var)
        # All variants sample their first token from the prompt's last logits.
        for s in seqs:
            s.logits_index = -1

        def stats(s: _Seq, reason: str, t_decode: float, n_eval: int, *, drafted: int = 0,
                  accepted: int = 0) -> Stats:
            return Stats(
                n_prompt_tokens=n_prompt, n_image_tokens=int(emb.shape[0]), n_generated=s.n_generated,
                load_s=self.load_s, image_encode_s=0.0 if reused_image else t_enc, prefill_s=t_prefill,
                # The first token comes from the prompt's logits: n tokens cost n - 1 evaluations.
                decode_s=t_decode, tokens_per_s=Stats.rate(n_eval, t_decode),
                finish_reason=reason,  # type: ignore[arg-type]
                reused_image=reused_image, reused_prefix_tokens=reused, max_tokens_clamped=clamped,
                devices=self.devices, n_gpu_layers_offloaded=self.n_gpu_layers_offloaded,
                vision_on_gpu=self.vision_on_gpu,
                seed=s.sampler.seed, variant=s.seq_id, draft_tokens=drafted, accepted_draft_tokens=accepted)

        t2 = time.perf_counter()
        speculative = self.options.speculative is not False
        if n_var == 1 and speculative:
            s0 = seqs[0]
            try:
                spec = yield from self._generate_speculative(s0, n_prompt, max_new, html=kind != "ask", ocr=ocr)
            finally:
                if ocr is not None:
                    ocr.stop()
            s0.n_generated = spec.n_generated
            t_decode = time.perf_counter() - t2
            self.last_drafts = spec.drafter.by_source() if spec.drafter is not None else {}
            from_text = self.last_drafts.get(OCR, (0, 0, 0))
            yield Finished(dataclasses.replace(
                stats(s0, spec.finish_reason, t_decode, max(spec.n_generated - 1, 0), drafted=spec.drafted,
                      accepted=spec.accepted),
                image_text_draft_tokens=from_text[0], image_text_accepted_tokens=from_text[1]))
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
                    tok = s.sampler.choose(ctx.logits(s.logits_index))
                    if model.is_eog(tok):
                        s.done, s.finish_reason = True, "stop"
                        continue
                    s.sampler.accept(tok)
                    s.n_generated += 1
                    text = s.decoder.decode(model.token_bytes(tok))
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
        t_decode = time.perf_counter() - t2
        if n_var > 1 and not ctx.closed:
            # Keep sequence 0's prompt and answer for reuse; the variants' cells go.
            for s in seqs[1:]:
                ctx.seq_rm(s.seq_id)
        n_eval = sum(max(x.n_generated - 1, 0) for x in seqs)
        for s in seqs:
            reason = "cancelled" if cancelled and not s.done else s.finish_reason
            yield Finished(stats(s, reason, t_decode, n_eval))

    def new_drafter(self, *, html: bool = True) -> Drafter:
        """The drafting policy for this device, its history seeded with the HTML prior
        (``html``) and then the prompt in the KV cache."""
        self._live(self._model)  # the prior is tokenized at load: a closed session must still say so
        on_gpu = self.n_gpu_layers_offloaded > 0
        k = self.options.draft_max or (GPU_DRAFT_MAX if on_gpu else CPU_BATCH_ROWS - 1)
        prior: list[int] = []
        if html:
            if self._prior_tokens is None:
                self._prior_tokens = self.tokenize(prior_text())
            prior = self._prior_tokens
        default = GPU_EXTRA_COST if on_gpu else CPU_EXTRA_COST
        if self.step_costs is None or self.step_costs.default_extra != default:
            self.step_costs = StepCosts(default)  # measured from here on, kept for the session's next requests
        d = Drafter(k, default, prior=prior, costs=self.step_costs)
        d.extend([key if isinstance(key, int) else -1 for key in self._kv_keys])  # -1: image rows
        return d

    def attach_image_text(self, drafter: Drafter, text: ImageText | None) -> bool:
        """Give the drafter the image text's source (tokenized here, on the decoding thread);
        False when there is none (no text, no colours: a sketch)."""
        self.last_ocr = text
        if text is None:
            return False
        src = build_text_source(text, self.tokenize, self.token_bytes)
        drafter.attach_text(src)
        return src is not None

    def _generate_speculative(self, seq: _Seq, n_prompt: int, max_new: int, *,
                              html: bool = True, ocr: _OcrJob | None = None
                              ) -> Generator[Token, None, _SpecResult]:
        """One sequence with drafts (n-gram, image text) verified in batches (see speculative.py).

        Each verified position's token is chosen by the sequence's sampler exactly
        as plain decoding would choose it; a draft is kept only when it equals
        that token, so the text is the same with or without drafts.
        """
        ctx = self._live(self._ctx)
        model = self._live(self._model)
        sampler = seq.sampler
        drafter = self.new_drafter(html=html)
        res = _SpecResult(drafter=drafter)
        pos = n_prompt  # next free position
        while ocr is not None and self.options.ocr_wait and not ocr.wait(0.05) and not self._cancel.is_set():
            pass
        step = 0

        def emit(tok: int) -> Token:
            res.n_generated += 1
            sampler.accept(tok)
            drafter.append(tok)
            return Token(seq.decoder.decode(model.token_bytes(tok)), tok, res.n_generated - 1, 0)

        # The first token comes from the prompt's logits.
        tok = sampler.choose(ctx.logits(-1))
        while True:
            if model.is_eog(tok):
                res.finish_reason = "stop"
                return res
            yield emit(tok)
            if res.n_generated >= max_new:
                res.finish_reason = "length"
                return res
            if self._cancel.is_set():
                res.finish_reason = "cancelled"
                return res
            if ocr is not None and ocr.done():  # a flag test per step; never waits
                self.attach_image_text(drafter, ocr.result)
                self.last_ocr_ready_step = step
                ocr = None
            step += 1
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
                chosen = sampler.choose(ctx.logits(i))
                if chosen != d:
                    drafter.record(len(drafts), i)
                    # Positions after the last accepted token hold rejected drafts: drop them.
                    keep_until = pos + 1 + i
                    ctx.seq_rm(0, keep_until, -1)
                    self._kv_keys.extend(batch[:i + 1])
                    pos = keep_until
                    tok = chosen
                    accepted_all = False
                    break
                res.accepted += 1
                if i + 1 == len(drafts):
                    drafter.record(len(drafts), len(drafts))
                if model.is_eog(d):
                    if i + 1 < len(drafts):
                        drafter.record(len(drafts), i + 1)
                    res.finish_reason = "stop"
                    self._kv_keys.extend(batch[:i + 2])
                    return res
                yield emit(d)
                if res.n_generated >= max_new or self._cancel.is_set():
                    if i + 1 < len(drafts):
                        drafter.record(len(drafts), i + 1)
                    res.finish_reason = "length" if res.n_generated >= max_new else "cancelled"
                    self._kv_keys.extend(batch[:i + 2])
                    ctx.seq_rm(0, pos + i + 2, -1)
                    return res
            if accepted_all:
                self._kv_keys.extend(batch)
                pos += len(batch)
                tok = sampler.choose(ctx.logits(len(batch) - 1))

    def prompt_token_ids(self, image: Image.Image, instruction: str,
                         history: Sequence[Exchange] = ()) -> list[int]:
        """The prompt's text token ids in order with -1 at the image (for ``--json``)."""
        return self._prompt_ids(build_prompt(instruction, history))

    def logits(self, i: int = -1) -> F32:
        """Raw logits (no offset) of row ``i`` of the last batch, for tests, verification and bench."""
        return self._live(self._ctx).logits(i)


@contextlib.contextmanager
def open_session(pair: ModelPair, options: EngineOptions | None = None) -> Iterator[Session]:
    s = Session(pair, options)
    try:
        yield s
    finally:
        s.close()
