"""llama.cpp's own quantizer (``llama_model_quantize``), as ``llama-quantize`` runs it."""

from __future__ import annotations

from pathlib import Path

from . import log

#: Rows llama.cpp keeps in memory at once while quantizing (its default is 8 GiB).
MAX_QUANT_BUFFER = 256 * 1024 * 1024


def ftype_id(quant: str) -> int:
    """llama.cpp's ``LLAMA_FTYPE_MOSTLY_<quant>`` value; ValueError for an unknown type."""
    import llama_cpp

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if not isinstance(value, int):
        raise ValueError(f"llama.cpp has no quantization type {quant!r}")
    return value


def quantize(src: Path, dst: Path, quant: str, *, n_threads: int = 0) -> int:
    """Quantize ``src`` into ``dst`` (metadata carried over by llama.cpp); returns llama.cpp's status (0: ok)."""
    import llama_cpp

    log.init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_id(quant)
    params.nthread = n_threads
    params.max_buf_size = MAX_QUANT_BUFFER
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params))
