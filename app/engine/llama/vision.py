"""mtmd's CLIP encoder and projector for one mmproj, paired with a loaded :class:`Model`."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import GenerationError, ImageError, ModelError
from . import log
from .handle import Handle
from .model import Model

F32 = npt.NDArray[np.float32]


class Vision(Handle):
    """Image → embeddings ``[n_tokens, n_embd]`` through mtmd (the same call for engine, probe and converter)."""

    kind = "vision encoder"

    def __init__(self, mmproj: Path, model: Model, *, use_gpu: bool = False, n_threads: int = 1,
                 flash_attention: bool = False) -> None:
        super().__init__()
        import llama_cpp
        from llama_cpp import mtmd_cpp as mtmd

        log.init()
        self.path = Path(mmproj)
        self.n_embd = model.n_embd
        mp = mtmd.mtmd_context_params_default()
        mp.use_gpu = bool(use_gpu)
        mp.print_timings = False
        mp.n_threads = max(1, int(n_threads))
        mp.warmup = False
        mp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        with model.use() as m:
            ptr = mtmd.mtmd_init_from_file(str(self.path).encode(), m, mp)
            if not ptr:
                raise ModelError(f"llama.cpp could not load the vision projector {self.path.name}.",
                                 detail="\n".join(log.recent_log()))
            self._adopt(ptr, mtmd.mtmd_free, parent=model)

    def encode(self, rgb: npt.NDArray[np.uint8]) -> F32:
        """Embeddings of an RGB uint8 ``[H, W, 3]`` image (mtmd resizes and pads it as CLIP wants)."""
        from llama_cpp import mtmd_cpp as mtmd

        data = np.ascontiguousarray(rgb, dtype=np.uint8)
        if data.ndim != 3 or data.shape[2] != 3 or data.shape[0] < 1 or data.shape[1] < 1:
            raise ImageError(f"The vision encoder needs an RGB image, got an array of shape {data.shape}.")
        h, w = data.shape[:2]
        with self.use() as ctx:
            buf = (ctypes.c_uint8 * data.size).from_buffer_copy(data.tobytes())
            bitmap = mtmd.mtmd_bitmap_init(w, h, buf)
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                marker = mtmd.mtmd_default_marker()
                text = mtmd.mtmd_input_text(text=marker, text_len=len(marker), add_special=False,
                                            parse_special=True)
                bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
                if mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                    raise ImageError("The vision encoder could not take this image.")
                chunk: Any = None
                for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                    c = mtmd.mtmd_input_chunks_get(chunks, i)
                    if mtmd.mtmd_input_chunk_get_type(c) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                        chunk = c
                if chunk is None:
                    raise ImageError("The vision encoder produced no image tokens.")
                n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                if mtmd.mtmd_encode_chunk(ctx, chunk) != 0:
                    raise GenerationError("Encoding the image failed.", detail="\n".join(log.recent_log()))
                out = mtmd.mtmd_get_output_embd(ctx)
                arr: F32 = np.ctypeslib.as_array(out, shape=(n_tokens * self.n_embd,)).astype(np.float32)
                return arr.reshape(n_tokens, self.n_embd)
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
                mtmd.mtmd_bitmap_free(bitmap)
