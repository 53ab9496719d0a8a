"""Streaming GGUF writing: a plan of tensors produced one at a time.

A :class:`GGUFPlan` is what a model module (``crystal``, ``clip``) knows about
its output: metadata, and for every tensor its name, shape and a function that
computes it from the checkpoint. :func:`write_ggufs` writes the header of every
requested file first (shapes are known up front), then computes each tensor
once and appends it to all of them, so converting to F32, F16 and BF16 reads the
checkpoint once and never holds more than one tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter

from .errors import ConvertError

#: ``general.file_type`` values (llama.cpp's ``llama_ftype``) of the direct types.
DIRECT_FTYPES = {"F32": 0, "F16": 1, "BF16": 32}
#: The largest finite value of each element type.
_LIMITS = {"F32": float(np.finfo(np.float32).max), "F16": float(np.finfo(np.float16).max),
           "BF16": float(torch.finfo(torch.bfloat16).max)}


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor: ``shape`` in PyTorch order (``[out, in]`` for matrices)."""

    name: str
    shape: tuple[int, ...]
    produce: Callable[[], torch.Tensor]
    #: Norm weights, biases, ``rope_freqs``, embeddings added to activations: stay F32 in
    #: every file (llama.cpp expects them so, and ``rope_freqs`` holds 1e30).
    keep_f32: bool = False


@dataclass
class GGUFPlan:
    """Metadata plus tensors of one GGUF file, before any tensor data is read."""

    arch: str
    metadata: Callable[[GGUFWriter], None]
    tensors: list[PlannedTensor] = field(default_factory=list)

    def n_params(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors)


def _element_type(tensor: PlannedTensor, ftype: str) -> str:
    return "F32" if tensor.keep_f32 else ftype


def _as_numpy(t: torch.Tensor, etype: str) -> np.ndarray[Any, Any]:
    t = t.detach().to("cpu").contiguous()
    if etype == "F32":
        return t.to(torch.float32).numpy()
    if etype == "F16":
        return t.to(torch.float16).numpy()
    # numpy has no bfloat16: ship the raw 16-bit patterns
    return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def _check_range(t: PlannedTensor, value: torch.Tensor, etypes: set[str]) -> None:
    """Refuse an output tensor that is not finite, or would overflow to inf in a 16-bit file."""
    if value.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(value.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConvertError(f"output tensor {t.name} has values that are not finite: the checkpoint's weights "
                           "are damaged or far out of range")
    limit = min(_LIMITS[e] for e in etypes)
    if max(-lo, hi) > limit:
        raise ConvertError(f"output tensor {t.name} holds {hi if hi >= -lo else lo:.4g}, beyond the range of "
                           f"{'/'.join(sorted(e for e in etypes if _LIMITS[e] == limit))} ({limit:g}): the "
                           "checkpoint's weights are damaged or far out of range")


def write_ggufs(
    plan: GGUFPlan,
    targets: Sequence[tuple[Path, str]],
    *,
    extra: Callable[[GGUFWriter], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> None:
    """Write ``plan`` to every ``(path, ftype)`` in ``targets`` in one pass over the tensors."""
    writers: list[tuple[GGUFWriter, str]] = []
    try:
        for path, ftype in targets:
            w = GGUFWriter(path, plan.arch)
            writers.append((w, ftype))
            plan.metadata(w)
            if extra is not None:
                extra(w)
            w.add_file_type(DIRECT_FTYPES[ftype])
            for t in plan.tensors:
                etype = _element_type(t, ftype)
                n = int(np.prod(t.shape))
                if etype == "BF16":
                    w.add_tensor_info(t.name, t.shape, np.dtype(np.uint16), n * 2,
                                      raw_dtype=GGMLQuantizationType.BF16)
                else:
                    dtype = np.dtype(np.float32 if etype == "F32" else np.float16)
                    w.add_tensor_info(t.name, t.shape, dtype, n * dtype.itemsize)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
        for i, t in enumerate(plan.tensors):
            if progress is not None:
                progress(i, len(plan.tensors), t.name)
            value = t.produce()
            if tuple(value.shape) != t.shape:
                raise AssertionError(f"{t.name}: planned {t.shape}, produced {tuple(value.shape)}")
            _check_range(t, value, {_element_type(t, ftype) for _, ftype in writers})
            for w, ftype in writers:
                w.write_tensor_data(_as_numpy(value, _element_type(t, ftype)))
            del value
        if progress is not None:
            progress(len(plan.tensors), len(plan.tensors), "")
    finally:
        for w, _ in writers:
            w.close()
