"""Output types, and quantization by llama.cpp's own quantizer.

F32, F16 and BF16 are written directly by the converter; every other type is
made by ``llama_model_quantize`` (through the engine's llama.cpp adapter) from
an F32 or F16 file, exactly as ``llama-quantize`` would, never by a
re-implementation.

``llama_model_quantize`` cannot be cancelled and calls back into Python for
its log lines (where a Ctrl-C would be swallowed), so it runs in a worker
thread: the main thread waits and takes Ctrl-C at once. The quantizer writes
into a private folder that the caller removes on interruption; once that
folder is gone the quantizer cannot create its file anywhere.

Importing this module is cheap (llama.cpp is loaded on first use).
"""

from __future__ import annotations

import threading
from pathlib import Path

from .errors import ConvertError

#: Output element types written directly (everything else goes through llama.cpp's quantizer).
DIRECT_TYPES = ("F32", "F16", "BF16")
#: Types made by llama.cpp's quantizer (no importance matrix needed), best first.
QUANTIZED_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_L",
                   "Q3_K_M", "Q3_K_S", "Q2_K")
VALID_TYPES = (*DIRECT_TYPES, *QUANTIZED_TYPES)
#: Rough bytes per weight, for the free-space check (K-quants mix in wider types).
BYTES_PER_WEIGHT = {
    "F32": 4.0, "F16": 2.0, "BF16": 2.0, "Q8_0": 1.07, "Q6_K": 0.83, "Q5_K_M": 0.72, "Q5_K_S": 0.7,
    "Q5_0": 0.69, "Q4_K_M": 0.62, "Q4_K_S": 0.58, "Q4_0": 0.57, "Q3_K_L": 0.54, "Q3_K_M": 0.5,
    "Q3_K_S": 0.45, "Q2_K": 0.42,
}
#: ggml's limit (GGML_MAX_N_THREADS); llama.cpp aborts the process when asked for far more threads.
MAX_THREADS = 512

_workers_lock = threading.Lock()
_workers: set[threading.Thread] = set()


def check_types(types: list[str]) -> list[str]:
    """Upper-cased, de-duplicated, validated output types."""
    out: list[str] = []
    for t in types:
        u = t.upper()
        if u not in VALID_TYPES:
            raise ConvertError(f"unknown quant type {t!r}; valid types: {', '.join(VALID_TYPES)}")
        if u not in out:
            out.append(u)
    return out


def check_threads(n: int) -> int:
    """``--threads``: 0 (all cores) up to :data:`MAX_THREADS`."""
    if not 0 <= n <= MAX_THREADS:
        raise ConvertError(f"--threads must be from 0 (all cores) to {MAX_THREADS}, not {n}")
    return n


def native_work_running() -> bool:
    """Whether a quantizer thread is still running (one that was abandoned on Ctrl-C)."""
    with _workers_lock:
        return any(t.is_alive() for t in _workers)


def quantize(src: Path, dst: Path, quant: str, *, work_dir: Path, n_threads: int = 0) -> None:
    """``llama_model_quantize(src -> dst)`` to ``quant``; ``work_dir``: an empty private folder.

    On KeyboardInterrupt the quantizer thread keeps running until llama.cpp returns (its output
    goes into ``work_dir``, which the caller removes); :func:`native_work_running` tells.
    """
    from ..app.engine.llama import quantize as llama_quantize

    check_threads(n_threads)
    out = work_dir / f"{quant}.gguf"
    status: list[int | BaseException] = []

    def run() -> None:
        try:
            status.append(llama_quantize(src, out, quant, n_threads=n_threads))
        except BaseException as e:  # reported by the waiting thread
            status.append(e)
        finally:
            with _workers_lock:
                _workers.discard(threading.current_thread())

    worker = threading.Thread(target=run, name=f"llama-quantize-{quant}", daemon=True)
    with _workers_lock:
        _workers.add(worker)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)  # Ctrl-C is raised here, in the main thread, at once
    result = status[0] if status else ConvertError(f"llama.cpp's quantizer stopped without a result ({quant})")
    if isinstance(result, BaseException):
        raise result
    if result != 0 or not out.is_file():
        raise ConvertError(f"llama.cpp failed to quantize {src.name} to {quant} (status {result})")
    out.replace(dst)
