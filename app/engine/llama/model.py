"""A loaded GGUF text model: weights, vocabulary, tokenizer."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...errors import Cancelled, GenerationError, ModelError
from . import log
from .handle import Handle


def supports_gpu_offload() -> bool:
    import llama_cpp

    log.init()
    return bool(llama_cpp.llama_supports_gpu_offload())


class Model(Handle):
    """``llama_model`` with its vocabulary.

    ``n_gpu_layers``: None = every layer that fits (falls back to the CPU when
    the whole model does not load on the GPU), 0 = CPU only, N = N layers.
    ``read_weights`` reads the file instead of mapping it; ``repack`` lets the CPU
    backend repack weights for its faster kernels. ``progress`` gets the load
    fraction and returns False to cancel the load. ``cpu_only`` gives llama.cpp no
    GPU device at all (its KV cache and compute buffers then stay on the CPU too).
    """

    kind = "model"

    def __init__(self, path: Path, *, n_gpu_layers: int | None = 0, read_weights: bool = False,
                 repack: bool = True, progress: Callable[[float], bool] | None = None,
                 cpu_only: bool = False) -> None:
        super().__init__()
        import llama_cpp

        log.init()
        self.path = Path(path)
        self.warnings: list[str] = []
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = -1 if n_gpu_layers is None else int(n_gpu_layers)
        # An empty, NULL-terminated device list: the model, its contexts and their buffers on the CPU alone.
        self._no_devices = (ctypes.c_void_p * 1)()
        if cpu_only:
            mparams.n_gpu_layers = 0
            mparams.devices = ctypes.addressof(self._no_devices)
        if read_weights:
            # Read the file instead of mapping it (see Session: one copy of the weights on the CPU).
            mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
        mparams.use_extra_bufts = repack  # the CPU's repacked weight layouts (faster kernels)
        cancelled = [False]
        self._progress_cb: Any = None
        if progress is not None:
            def _progress(fraction: float, _user: ctypes.c_void_p) -> bool:
                ok = bool(progress(float(fraction))) and not self.stopping
                cancelled[0] = cancelled[0] or not ok
                return ok
            self._progress_cb = llama_cpp.llama_progress_callback(_progress)
            mparams.progress_callback = self._progress_cb
        mark = log.log_mark()
        ptr = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not ptr and n_gpu_layers is None and not cancelled[0] and llama_cpp.llama_supports_gpu_offload():
            # "auto" asked for every layer on the GPU and that did not fit: run on the CPU instead.
            self.warnings.append("The model did not fit on the GPU; running on the CPU.")
            mparams.n_gpu_layers = 0
            mparams.devices = ctypes.addressof(self._no_devices)
            ptr = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not ptr:
            if cancelled[0]:
                raise Cancelled("Loading the model was cancelled.")
            raise ModelError(f"llama.cpp could not load {self.path.name}.", detail="\n".join(log.recent_log()))
        self._adopt(ptr, llama_cpp.llama_model_free)
        self._vocab = llama_cpp.llama_model_get_vocab(ptr)
        self.n_embd = int(llama_cpp.llama_model_n_embd(ptr))
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.devices, self.n_gpu_layers_offloaded = _parse_devices(log.log_since(mark))

    def tokenize(self, text: str, *, parse_special: bool = False) -> list[int]:
        """One chunk of text: no BOS (the model adds none), special tokens as text unless ``parse_special``."""
        import llama_cpp

        raw = text.encode("utf-8")
        with self.use():
            n_max = len(raw) + 16
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, n_max, False, parse_special)
            if n < 0:
                raise GenerationError("The text could not be tokenized.")
            return list(buf[:n])

    def token_bytes(self, token: int) -> bytes:
        import llama_cpp

        if not 0 <= token < self.n_vocab:
            raise GenerationError(f"Token id {token} is outside the vocabulary (0..{self.n_vocab - 1}).")
        with self.use():
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        with self.use():
            return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))


def _parse_devices(lines: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """Which devices llama.cpp used and how many layers it offloaded, from its load log."""
    devices: list[str] = []
    offloaded = 0
    for ln in lines:
        # "using device Vulkan0 (llvmpipe (LLVM 15.0.6, 256 bits)) (unknown id) - 2048 MiB free":
        # the description may hold parentheses of its own.
        m = (re.search(r"using device (\S+) \((.*)\) \([^()]*\) - \d+ MiB free", ln)
             or re.search(r"using device (\S+) \(([^)]*)\)", ln))
        if m:
            devices.append(f"{m.group(1)} ({m.group(2)})")
        m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", ln)
        if m:
            offloaded = int(m.group(1))
    return tuple(devices) or ("CPU",), offloaded
