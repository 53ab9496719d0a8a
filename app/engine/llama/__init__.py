"""The one adapter between Web2Code and llama.cpp (through llama-cpp-python's low-level API).

Nothing else in app/, converters/ or bench/ calls llama-cpp-python's native
functions. Every native pointer lives in a :class:`Handle` that knows when it
is closed: a call after ``close()`` raises :class:`~web2code.app.errors.EngineClosed`
instead of touching freed memory, ``close()`` is idempotent, and closing
during a decode stops it and waits (bounded) before freeing.

* :class:`Model`: the text model and its vocabulary, tokenizer, GPU offload;
* :class:`Context`: the KV cache, one batched ``decode`` for tokens and
  embeddings, logits, sequence operations;
* :class:`Vision`: mtmd's CLIP encoder and projector;
* :func:`quantize`: llama.cpp's own quantizer;
* :mod:`.log`: the one capture of llama.cpp's and mtmd's logs.
"""

from ...errors import EngineClosed
from .context import Context, ContextParams
from .handle import Handle
from .log import init, log_mark, log_since, recent_log
from .model import Model, supports_gpu_offload
from .quantize import ftype_id, quantize
from .vision import Vision

__all__ = [
    "Context",
    "ContextParams",
    "EngineClosed",
    "Handle",
    "Model",
    "Vision",
    "ftype_id",
    "init",
    "log_mark",
    "log_since",
    "quantize",
    "recent_log",
    "supports_gpu_offload",
]
