"""Output types, and quantization by llama.cpp's own quantizer.

F32, F16 and BF16 are written directly by the converter; every other type is
made by ``llama_model_quantize`` (through llama-cpp-python) from an F32 or F16
file, exactly as ``llama-quantize`` would, never by a re-implementation.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp

from .errors import ConvertError
from .gguf_out import DIRECT_TYPES
from .llamacpp import quiet_logs

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
#: Rows llama.cpp keeps in memory at once while quantizing (its default is 8 GiB).
MAX_QUANT_BUFFER = 256 * 1024 * 1024


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


def ftype(quant: str) -> int:
    value: int = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    return value


def quantize(src: Path, dst: Path, quant: str, *, n_threads: int = 0) -> None:
    """``llama_model_quantize(src -> dst)`` to ``quant`` (metadata is carried over by llama.cpp)."""
    quiet_logs()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype(quant)
    params.nthread = n_threads
    params.max_buf_size = MAX_QUANT_BUFFER
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ConvertError(f"llama.cpp failed to quantize {src.name} to {quant} (status {rc})")
