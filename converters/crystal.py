"""Crystal (the LLM of CrystalChat-7B-Web2Code) as an exact stock ``llama`` GGUF.

The algebra is CONVERSION.md §3, in short: centre everything that enters the
residual stream (then LayerNorm == RMSNorm·w + b), fold LayerNorm biases into
the next linear biases, pre-scale W_q so llama.cpp's 1/sqrt(d) becomes µP's
1/d, emulate partial rotary with ``rope_freqs`` (1e30 = no rotation), pad
``n_ff`` to a multiple of 256 with zero units so llama.cpp can quantize
``ffn_down``, untie the output and keep the final LayerNorm bias as a per-token
logit offset in metadata. Every size comes from ``config.json``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gguf import MODEL_TENSOR, TENSOR_NAMES, GGUFValueType, GGUFWriter

from .checkpoint import Checkpoint, TensorSource, non_float, short_list
from .configvalues import config_bool, config_float, config_int
from .errors import ConvertError
from .gguf_out import GGUFPlan, PlannedTensor
from .keys import LOGIT_OFFSET
from .tokenizer import Vocab

SUPPORTED_MODEL_TYPES = ("llava_crystal",)
SUPPORTED_PROJECTORS = ("mlp2x_gelu",)
#: llama.cpp quantizes rows in blocks of up to 256; a padded n_ff lets every type apply.
FF_MULTIPLE = 256
#: A rotation frequency factor so large that the angle is 0: the pair is not rotated.
NO_ROTATION = 1e30
#: Bounds of config.json sizes far beyond any real model (the 7B has 32032, 4096, 32, 2048): a value
#: outside is a damaged config, and stopping here keeps it from sizing a huge allocation.
MAX_VOCAB = 1 << 22
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_POSITIONS = 1 << 24


def _tn(kind: MODEL_TENSOR, suffix: str = "weight", bid: int | None = None) -> str:
    base = TENSOR_NAMES[kind]
    return (base.format(bid=bid) if bid is not None else base) + "." + suffix


@dataclass(frozen=True)
class CrystalConfig:
    """The values of ``config.json`` the forward pass depends on."""

    vocab_size: int
    n_embd: int
    n_layer: int
    n_head: int
    n_inner: int
    n_positions: int
    rotary_dim: int
    rope_base: float
    eps: float
    embeddings_scale: float
    output_scale: float
    attn_scale: float
    tie_word_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_ff(self) -> int:
        """``n_inner`` padded with zero units to a multiple of :data:`FF_MULTIPLE`."""
        return -(-self.n_inner // FF_MULTIPLE) * FF_MULTIPLE

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> CrystalConfig:
        model_type = cfg.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            archs = cfg.get("architectures")
            raise ConvertError(
                f"unsupported model_type {model_type!r} (architectures {archs}); supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)} (LlavaCrystalForCausalLM, CrystalChat-7B-Web2Code)"
            )

        def check(key: str, want: Any) -> None:
            if cfg.get(key, want) != want:
                raise ConvertError(f"unsupported {key}={cfg[key]!r} (supported: {want!r})")

        check("position_embedding_type", "rotary")
        check("activation_function", "swiglu")
        check("scale_attn_by_inverse_layer_idx", False)
        check("mm_use_im_start_end", False)
        if cfg.get("mm_projector_type", "mlp2x_gelu") not in SUPPORTED_PROJECTORS:
            raise ConvertError(f"unsupported mm_projector_type {cfg['mm_projector_type']!r} "
                               f"(supported: {', '.join(SUPPORTED_PROJECTORS)})")
        n_embd = config_int(cfg, "n_embd", 1, MAX_WIDTH)
        n_head = config_int(cfg, "n_head", 1, n_embd)
        rotary_dim = config_int(cfg, "rotary_dim", 2, n_embd)
        if n_embd % n_head or rotary_dim % 2 or rotary_dim > n_embd // n_head:
            raise ConvertError(f"inconsistent n_embd={n_embd}, n_head={n_head}, rotary_dim={rotary_dim} "
                               "(n_head must divide n_embd; rotary_dim must be even and at most the head size)")
        head_dim = n_embd // n_head
        if not config_bool(cfg, "scale_attn_weights", True):
            attn_scale = 1.0
        elif config_bool(cfg, "mup_scale_qk_dot_by_d", False):
            attn_scale = 1.0 / head_dim
        else:
            attn_scale = 1.0 / math.sqrt(head_dim)
        rope_key = "rotary_emb_base" if cfg.get("rotary_emb_base") is not None else "rope_theta"
        rope_base = config_float(cfg, rope_key, default=10000.0)
        if rope_base <= 1:
            raise ConvertError(f"config.json: {rope_key} must be greater than 1 (it is {rope_base:g})")
        return cls(
            vocab_size=config_int(cfg, "vocab_size", 1, MAX_VOCAB),
            n_embd=n_embd,
            n_layer=config_int(cfg, "n_layer", 1, MAX_LAYERS),
            n_head=n_head,
            n_inner=config_int(cfg, "n_inner", 1, MAX_WIDTH * 8, default=min(4 * n_embd, MAX_WIDTH * 8)),
            n_positions=config_int(cfg, "n_positions", 1, MAX_POSITIONS),
            rotary_dim=rotary_dim,
            rope_base=rope_base,
            eps=config_float(cfg, "layer_norm_epsilon", default=1e-5),
            embeddings_scale=config_float(cfg, "mup_embeddings_scale", default=1.0),
            output_scale=config_float(cfg, "mup_output_alpha", default=1.0)
            * config_float(cfg, "mup_width_scale", default=1.0),
            attn_scale=attn_scale,
            tie_word_embeddings=config_bool(cfg, "tie_word_embeddings", True),
        )


@dataclass(frozen=True)
class CrystalLayout:
    """Where the parts of a LLaVA-Crystal checkpoint live (name prefixes)."""

    text: str  # e.g. "transformer."
    projector: str  # e.g. "transformer.mm_projector."
    tower: str | None  # e.g. "transformer.vision_tower.vision_tower.vision_model.", None if absent
    lm_head: str | None  # untied output embedding, if stored

    # -- names --------------------------------------------------------------------------------------
    def wte(self) -> str:
        return f"{self.text}wte.weight"

    def ln_f(self, p: str) -> str:
        return f"{self.text}ln_f.{p}"

    def layer(self, i: int, part: str) -> str:
        return f"{self.text}h.{i}.{part}"

    def proj(self, idx: int, p: str) -> str:
        return f"{self.projector}{idx}.{p}"

    def output(self, cfg: CrystalConfig) -> str:
        return self.lm_head if (self.lm_head and not cfg.tie_word_embeddings) else self.wte()

    def expected(self, cfg: CrystalConfig, mm_hidden: int) -> dict[str, tuple[int, ...]]:
        """Every text and projector tensor with its checkpoint shape (Conv1D: ``[in, out]``)."""
        d, f = cfg.n_embd, cfg.n_inner
        shapes: dict[str, tuple[int, ...]] = {self.wte(): (cfg.vocab_size, d)}
        for i in range(cfg.n_layer):
            for ln in ("ln_1", "ln_2"):
                shapes[self.layer(i, f"{ln}.weight")] = (d,)
                shapes[self.layer(i, f"{ln}.bias")] = (d,)
            shapes[self.layer(i, "attn.c_attn.weight")] = (d, 3 * d)
            shapes[self.layer(i, "attn.c_attn.bias")] = (3 * d,)
            shapes[self.layer(i, "attn.c_proj.weight")] = (d, d)
            shapes[self.layer(i, "attn.c_proj.bias")] = (d,)
            for fc in ("mlp.c_fc", "mlp.c_fc2"):
                shapes[self.layer(i, f"{fc}.weight")] = (d, f)
                shapes[self.layer(i, f"{fc}.bias")] = (f,)
            shapes[self.layer(i, "mlp.c_proj.weight")] = (f, d)
            shapes[self.layer(i, "mlp.c_proj.bias")] = (d,)
        shapes[self.ln_f("weight")] = (d,)
        shapes[self.ln_f("bias")] = (d,)
        if self.lm_head:
            shapes[self.lm_head] = (cfg.vocab_size, d)
        shapes[self.proj(0, "weight")] = (d, mm_hidden)
        shapes[self.proj(0, "bias")] = (d,)
        shapes[self.proj(2, "weight")] = (d, d)
        shapes[self.proj(2, "bias")] = (d,)
        return shapes

    def ignored(self, name: str) -> bool:
        """Causal-mask buffers: exact names only (``attn.bias`` ends ``c_attn.bias`` too)."""
        return re.fullmatch(re.escape(self.text) + r"h\.\d+\.attn\.(bias|masked_bias)", name) is not None

    @classmethod
    def detect(cls, ckpt: Checkpoint) -> CrystalLayout:
        names = list(ckpt.names())
        text = next((n[: -len("wte.weight")] for n in names if n.endswith("wte.weight")), None)
        if text is None:
            raise ConvertError(f"missing tensors: no token embedding (*wte.weight) in {ckpt.folder}")
        proj = next((n[: -len("0.weight")] for n in names
                     if re.search(r"mm_projector\.0\.weight$", n)), None)
        if proj is None:
            raise ConvertError(f"missing tensors: no projector (*mm_projector.0.weight) in {ckpt.folder}")
        marker = "vision_model.embeddings.patch_embedding.weight"
        tower = next((n[: -len(marker)] + "vision_model." for n in names if n.endswith(marker)), None)
        lm_head = next((n for n in names if n in ("lm_head.weight", "model.lm_head.weight")), None)
        return cls(text=text, projector=proj, tower=tower, lm_head=lm_head)

    def validate(self, ckpt: Checkpoint, cfg: CrystalConfig, mm_hidden: int) -> None:
        """Missing, mis-shaped and unexpected tensors, each listed by name."""
        expected = self.expected(cfg, mm_hidden)
        missing = [n for n in expected if n not in ckpt]
        if missing:
            raise ConvertError(f"missing tensors: {short_list(missing)}")
        wrong = [f"{n} {list(ckpt.shape(n))} (expected {list(s)})"
                 for n, s in expected.items() if ckpt.shape(n) != s]
        if wrong:
            raise ConvertError(f"wrongly shaped tensors: {short_list(wrong, 4)}")
        integer = non_float(ckpt, list(expected))
        if integer:
            raise ConvertError(f"tensors that are not floating point: {short_list(integer, 4)}")
        unexpected = [
            n for n in ckpt.names()
            if n not in expected and not self.ignored(n) and not (self.tower and n.startswith(self.tower))
        ]
        if unexpected:
            raise ConvertError(f"unexpected tensors: {short_list(unexpected)}")


# -- the algebra ----------------------------------------------------------------------------------
def center_out(w: torch.Tensor) -> torch.Tensor:
    """C·W for a weight ``[out, in]`` (or C·b for a bias) writing into the residual stream."""
    return w - w.mean(dim=0, keepdim=True, dtype=torch.float64).to(w.dtype)


def center_rows(e: torch.Tensor) -> torch.Tensor:
    """Centre each row (a vector in residual space) of an embedding table ``[n, d]``."""
    return e - e.mean(dim=1, keepdim=True, dtype=torch.float64).to(e.dtype)


def matvec64(w: torch.Tensor, v: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """``w @ v`` accumulated in float64 a block of rows at a time (no float64 copy of ``w``)."""
    v64 = v.to(torch.float64)
    return torch.cat([w[i:i + block].to(torch.float64) @ v64 for i in range(0, w.shape[0], block)])


def rope_freq_factors(cfg: CrystalConfig) -> torch.Tensor:
    """llama.cpp divides the angle of pair i by ff[i]: turn base^(-2i/head_dim) into base^(-2i/rotary_dim)."""
    i = torch.arange(cfg.head_dim // 2, dtype=torch.float64)
    ff = cfg.rope_base ** (2 * i / cfg.rotary_dim - 2 * i / cfg.head_dim)
    ff[cfg.rotary_dim // 2:] = NO_ROTATION
    return ff.to(torch.float32)


def _pad_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([t, t.new_zeros((n - t.shape[0], *t.shape[1:]))]) if t.shape[0] < n else t


class _LastTensor:
    """Re-use the tensor just read: q, k and v come from one ``c_attn`` in a row."""

    def __init__(self, src: TensorSource) -> None:
        self._src = src
        self._name = ""
        self._value: torch.Tensor | None = None

    def __call__(self, name: str) -> torch.Tensor:
        if name != self._name or self._value is None:
            self._value = None
            self._value = self._src.get(name).to(torch.float32)
            self._name = name
        return self._value


def logit_offset(src: TensorSource, cfg: CrystalConfig, layout: CrystalLayout) -> np.ndarray[Any, Any]:
    """c = s_out · W_out · b_f: the final LayerNorm bias seen through the output embedding."""
    w_out = src.get(layout.output(cfg)).to(torch.float32)
    b_f = src.get(layout.ln_f("bias")).to(torch.float32)
    result: np.ndarray[Any, Any] = (matvec64(w_out, b_f) * cfg.output_scale).to(torch.float32).numpy()
    return result


def text_plan(
    src: TensorSource,
    cfg: CrystalConfig,
    layout: CrystalLayout,
    vocab: Vocab,
    metadata: Callable[[GGUFWriter], None],
) -> GGUFPlan:
    """The stock-``llama`` GGUF of Crystal: metadata and lazily computed tensors."""
    get = _LastTensor(src)
    d, hd = cfg.n_embd, cfg.head_dim
    q_scale = cfg.attn_scale * math.sqrt(hd)  # llama.cpp applies 1/sqrt(hd) itself
    offset = logit_offset(src, cfg, layout)

    def write_metadata(w: GGUFWriter) -> None:
        metadata(w)
        w.add_context_length(cfg.n_positions)
        w.add_embedding_length(d)
        w.add_block_count(cfg.n_layer)
        w.add_feed_forward_length(cfg.n_ff)
        w.add_head_count(cfg.n_head)
        w.add_head_count_kv(cfg.n_head)
        w.add_rope_dimension_count(hd)
        w.add_rope_freq_base(cfg.rope_base)
        w.add_layer_norm_rms_eps(cfg.eps)
        w.add_vocab_size(cfg.vocab_size)
        vocab.write(w)
        w.add_array(LOGIT_OFFSET, offset.tolist())
        # add_array infers the element type; make sure it is F32 as the engine expects
        w.kv_data[0][LOGIT_OFFSET].sub_type = GGUFValueType.FLOAT32

    def token_embd() -> torch.Tensor:
        return center_rows(get(layout.wte()) * cfg.embeddings_scale)

    def output() -> torch.Tensor:
        return get(layout.output(cfg)) * cfg.output_scale

    def qkv(i: int, which: int, bias: bool) -> Callable[[], torch.Tensor]:
        def produce() -> torch.Tensor:
            scale = q_scale if which == 0 else 1.0
            if not bias:
                return get(layout.layer(i, "attn.c_attn.weight"))[:, which * d:(which + 1) * d].T * scale
            w = get(layout.layer(i, "attn.c_attn.weight"))[:, which * d:(which + 1) * d].T
            b = src.get(layout.layer(i, "attn.c_attn.bias")).to(torch.float32)[which * d:(which + 1) * d]
            ln_b = src.get(layout.layer(i, "ln_1.bias")).to(torch.float32)
            return ((b.to(torch.float64) + matvec64(w, ln_b)) * scale).to(torch.float32)
        return produce

    def ffn_in(i: int, part: str, bias: bool) -> Callable[[], torch.Tensor]:
        def produce() -> torch.Tensor:
            w = get(layout.layer(i, f"mlp.{part}.weight")).T
            if not bias:
                return _pad_rows(w, cfg.n_ff)
            b = src.get(layout.layer(i, f"mlp.{part}.bias")).to(torch.float64)
            ln_b = src.get(layout.layer(i, "ln_2.bias")).to(torch.float32)
            return _pad_rows((b + matvec64(w, ln_b)).to(torch.float32), cfg.n_ff)
        return produce

    def attn_out_w(i: int) -> Callable[[], torch.Tensor]:
        return lambda: center_out(get(layout.layer(i, "attn.c_proj.weight")).T)

    def ffn_down_w(i: int) -> Callable[[], torch.Tensor]:
        def produce() -> torch.Tensor:
            w = center_out(get(layout.layer(i, "mlp.c_proj.weight")).T)
            return torch.cat([w, w.new_zeros((d, cfg.n_ff - cfg.n_inner))], dim=1)
        return produce

    def plain(name: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
              ) -> Callable[[], torch.Tensor]:
        def produce() -> torch.Tensor:
            t = src.get(name).to(torch.float32)
            return transform(t) if transform else t
        return produce

    T = MODEL_TENSOR
    tensors = [
        PlannedTensor(_tn(T.TOKEN_EMBD), (cfg.vocab_size, d), token_embd),
        PlannedTensor(_tn(T.ROPE_FREQS), (hd // 2,), lambda: rope_freq_factors(cfg), keep_f32=True),
    ]
    for i in range(cfg.n_layer):
        tensors += [
            PlannedTensor(_tn(T.ATTN_NORM, bid=i), (d,), plain(layout.layer(i, "ln_1.weight")),
                          keep_f32=True),
            PlannedTensor(_tn(T.ATTN_Q, bid=i), (d, d), qkv(i, 0, False)),
            PlannedTensor(_tn(T.ATTN_K, bid=i), (d, d), qkv(i, 1, False)),
            PlannedTensor(_tn(T.ATTN_V, bid=i), (d, d), qkv(i, 2, False)),
            PlannedTensor(_tn(T.ATTN_Q, "bias", i), (d,), qkv(i, 0, True), keep_f32=True),
            PlannedTensor(_tn(T.ATTN_K, "bias", i), (d,), qkv(i, 1, True), keep_f32=True),
            PlannedTensor(_tn(T.ATTN_V, "bias", i), (d,), qkv(i, 2, True), keep_f32=True),
            PlannedTensor(_tn(T.ATTN_OUT, bid=i), (d, d),
                          attn_out_w(i)),
            PlannedTensor(_tn(T.ATTN_OUT, "bias", i), (d,),
                          plain(layout.layer(i, "attn.c_proj.bias"), center_out), keep_f32=True),
            PlannedTensor(_tn(T.FFN_NORM, bid=i), (d,), plain(layout.layer(i, "ln_2.weight")),
                          keep_f32=True),
            PlannedTensor(_tn(T.FFN_GATE, bid=i), (cfg.n_ff, d), ffn_in(i, "c_fc2", False)),
            PlannedTensor(_tn(T.FFN_GATE, "bias", i), (cfg.n_ff,), ffn_in(i, "c_fc2", True), keep_f32=True),
            PlannedTensor(_tn(T.FFN_UP, bid=i), (cfg.n_ff, d), ffn_in(i, "c_fc", False)),
            PlannedTensor(_tn(T.FFN_UP, "bias", i), (cfg.n_ff,), ffn_in(i, "c_fc", True), keep_f32=True),
            PlannedTensor(_tn(T.FFN_DOWN, bid=i), (d, cfg.n_ff), ffn_down_w(i)),
            PlannedTensor(_tn(T.FFN_DOWN, "bias", i), (d,),
                          plain(layout.layer(i, "mlp.c_proj.bias"), center_out), keep_f32=True),
        ]
    tensors += [
        PlannedTensor(_tn(T.OUTPUT_NORM), (d,), plain(layout.ln_f("weight")), keep_f32=True),
        PlannedTensor(_tn(T.OUTPUT), (cfg.vocab_size, d), output),
    ]
    return GGUFPlan("llama", write_metadata, tensors)
