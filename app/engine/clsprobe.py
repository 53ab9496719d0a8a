"""Does the llama.cpp we run put CLIP's class token first? A millisecond probe.

The llava vision graph of the llama.cpp vendored by llama-cpp-python 0.3.36
concatenates the class token *after* the patches (upstream issue 25814), which
makes every LLaVA-1.5 image embedding wrong. Our build carries a one-line fix
(packaging/llama.cpp/patches). This module proves, on whatever llama.cpp is
installed, which of the two graphs it has:

* it writes a synthetic mmproj with a 2×2 patch grid and hand-made weights
  (plus the smallest text model mtmd accepts) to a temporary folder,
* encodes one 28×28 image through the real mtmd,
* and compares the result with both orders computed here in numpy.

The transformer block is written as an exact identity (zero output
projections), so the answer does not depend on how many blocks the graph runs;
the position rows differ strongly, so the two orders differ by O(1) while
llama.cpp's F16 patch convolution and tanh-GELU stay below 1e-2.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

IMAGE_SIZE = 28
PATCH = 14
HIDDEN = 8
PROJ = 8
N_PATCHES = (IMAGE_SIZE // PATCH) ** 2

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of the probe: which order the installed llama.cpp uses."""

    class_token_first: bool
    error_cls_first: float  # relative error of mtmd's output vs the CLS-first reference
    error_cls_last: float  # ... vs the CLS-last (buggy) reference

    @property
    def verdict(self) -> str:
        if self.class_token_first:
            return "llama.cpp's llava graph puts the class token first (correct)"
        return ("llama.cpp's llava graph puts the CLIP class token after the patches (upstream issue "
                "25814): image features would be wrong; install Web2Code's patched llama-cpp-python build")


def _weights(seed: int = 1234) -> dict[str, F32]:
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 1.0) -> F32:
        out: F32 = (rng.standard_normal(shape) * scale).astype(np.float32)
        return out

    return {
        "patch": r(HIDDEN, 3, PATCH, PATCH, scale=0.05),  # conv weight [out, in, kh, kw]
        "class": r(HIDDEN),
        # Position rows far apart, so a shift of one row changes everything.
        "pos": r(N_PATCHES + 1, HIDDEN, scale=2.0),
        "pre_w": (1.0 + 0.3 * r(HIDDEN)).astype(np.float32),
        "pre_b": r(HIDDEN, scale=0.3),
        "mm0_w": r(PROJ, HIDDEN, scale=0.5),
        "mm0_b": r(PROJ, scale=0.1),
        "mm2_w": r(PROJ, PROJ, scale=0.5),
        "mm2_b": r(PROJ, scale=0.1),
    }


def _image(seed: int = 99) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    img: npt.NDArray[np.uint8] = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return img


def _layer_norm(x: F32, w: F32, b: F32, eps: float = 1e-5) -> F32:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    out: F32 = ((x - mu) / np.sqrt(var + eps) * w + b).astype(np.float32)
    return out


def _gelu_tanh(x: F32) -> F32:
    return (0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))).astype(np.float32)


def reference(w: dict[str, F32], img: npt.NDArray[np.uint8], class_first: bool) -> F32:
    """Projector output for the synthetic tower, for one class-token order."""
    px = img.astype(np.float32) / 255.0  # image_mean 0, image_std 1
    g = IMAGE_SIZE // PATCH
    patches = []
    for py in range(g):
        for pxi in range(g):
            tile = px[py * PATCH:(py + 1) * PATCH, pxi * PATCH:(pxi + 1) * PATCH, :]  # h, w, c
            patches.append(np.einsum("ochw,hwc->o", w["patch"], tile))
    emb = np.stack(patches).astype(np.float32)
    seq = np.concatenate([w["class"][None], emb]) if class_first else np.concatenate([emb, w["class"][None]])
    seq = seq + w["pos"]
    seq = _layer_norm(seq, w["pre_w"], w["pre_b"])
    feats = seq[1:]  # the graph reads rows 1..n as patch features
    h = _gelu_tanh(feats @ w["mm0_w"].T + w["mm0_b"])
    return (h @ w["mm2_w"].T + w["mm2_b"]).astype(np.float32)


def write_probe_files(folder: Path, w: dict[str, F32]) -> tuple[Path, Path]:
    """Write the synthetic mmproj and a minimal text model; returns (model, mmproj)."""
    import gguf

    mmproj = folder / "probe-mmproj.gguf"
    wr = gguf.GGUFWriter(str(mmproj), "clip")
    wr.add_string("general.name", "cls-order-probe")
    wr.add_bool("clip.has_vision_encoder", True)
    wr.add_bool("clip.has_text_encoder", False)
    wr.add_string("clip.projector_type", "mlp")
    wr.add_bool("clip.use_gelu", False)
    wr.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    wr.add_uint32("clip.vision.patch_size", PATCH)
    wr.add_uint32("clip.vision.embedding_length", HIDDEN)
    wr.add_uint32("clip.vision.feed_forward_length", 2 * HIDDEN)
    wr.add_uint32("clip.vision.projection_dim", PROJ)
    wr.add_uint32("clip.vision.attention.head_count", 1)
    wr.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    wr.add_uint32("clip.vision.block_count", 1)
    wr.add_array("clip.vision.image_mean", [0.0, 0.0, 0.0])
    wr.add_array("clip.vision.image_std", [1.0, 1.0, 1.0])
    tensors: dict[str, F32] = {
        "v.class_embd": w["class"],
        "v.patch_embd.weight": w["patch"],
        "v.position_embd.weight": w["pos"],
        "v.pre_ln.weight": w["pre_w"],
        "v.pre_ln.bias": w["pre_b"],
        "mm.0.weight": w["mm0_w"],
        "mm.0.bias": w["mm0_b"],
        "mm.2.weight": w["mm2_w"],
        "mm.2.bias": w["mm2_b"],
    }
    # One block that is an exact identity: whatever its inputs, the attention
    # output and FFN output projections are zero, so the residual passes through.
    eye = np.eye(HIDDEN, dtype=np.float32)
    zeros_h = np.zeros(HIDDEN, np.float32)
    blk = {
        "attn_q": eye, "attn_k": eye, "attn_v": eye,
        "attn_out": np.zeros((HIDDEN, HIDDEN), np.float32),
        "ffn_up": np.ones((2 * HIDDEN, HIDDEN), np.float32) * 0.1,
        "ffn_down": np.zeros((HIDDEN, 2 * HIDDEN), np.float32),
    }
    for name, mat in blk.items():
        tensors[f"v.blk.0.{name}.weight"] = mat
        tensors[f"v.blk.0.{name}.bias"] = np.zeros(mat.shape[0], np.float32)
    for ln in ("ln1", "ln2"):
        tensors[f"v.blk.0.{ln}.weight"] = np.ones(HIDDEN, np.float32)
        tensors[f"v.blk.0.{ln}.bias"] = zeros_h
    for name, arr in tensors.items():
        wr.add_tensor(name, np.ascontiguousarray(arr))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()

    model = folder / "probe-text.gguf"
    write_minimal_text_model(model, n_embd=PROJ)
    return model, mmproj


def write_minimal_text_model(path: Path, n_embd: int) -> None:
    """The smallest llama-architecture GGUF that llama.cpp and mtmd accept.

    SentencePiece vocabulary of <unk>, <s>, </s> and the 256 byte tokens, so
    any text tokenizes (byte fallback).
    """
    import gguf

    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    n_vocab = len(tokens)
    n_ff = 2 * n_embd
    rng = np.random.default_rng(7)
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_name("cls-order-probe-text")
    wr.add_context_length(64)
    wr.add_embedding_length(n_embd)
    wr.add_block_count(1)
    wr.add_feed_forward_length(n_ff)
    wr.add_head_count(1)
    wr.add_head_count_kv(1)
    wr.add_rope_dimension_count(n_embd)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores([0.0] * n_vocab)
    wr.add_token_types(types)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_add_bos_token(False)

    def r(*shape: int) -> F32:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    wr.add_tensor("token_embd.weight", r(n_vocab, n_embd))
    wr.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    wr.add_tensor("output.weight", r(n_vocab, n_embd))
    wr.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        wr.add_tensor(f"blk.0.{name}.weight", r(n_embd, n_embd))
    wr.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, np.float32))
    wr.add_tensor("blk.0.ffn_gate.weight", r(n_ff, n_embd))
    wr.add_tensor("blk.0.ffn_up.weight", r(n_ff, n_embd))
    wr.add_tensor("blk.0.ffn_down.weight", r(n_embd, n_ff))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def encode_image_embeddings(model_path: Path, mmproj_path: Path, rgb: npt.NDArray[np.uint8]) -> F32:
    """Image embeddings [n_tokens, n_embd] that the installed mtmd produces."""
    from . import llama

    model = llama.Model(model_path, n_gpu_layers=0)
    try:
        vision = llama.Vision(mmproj_path, model, use_gpu=False, n_threads=1)
        return vision.encode(rgb)
    finally:
        model.close()  # closes the vision encoder first


def _rel(a: F32, b: F32) -> float:
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def probe(workdir: Path | None = None) -> ProbeResult:
    """Run the probe against the installed llama.cpp (~tens of milliseconds)."""
    w = _weights()
    img = _image()
    with tempfile.TemporaryDirectory(prefix="web2code-probe.", dir=workdir) as tmp:
        model, mmproj = write_probe_files(Path(tmp), w)
        got = encode_image_embeddings(model, mmproj, img)
    first = reference(w, img, class_first=True)
    last = reference(w, img, class_first=False)
    if got.shape != first.shape:
        raise RuntimeError(f"probe: mtmd returned {got.shape}, expected {first.shape}")
    e_first, e_last = _rel(got, first), _rel(got, last)
    return ProbeResult(class_token_first=e_first < e_last and e_first < 0.05,
                       error_cls_first=e_first, error_cls_last=e_last)
