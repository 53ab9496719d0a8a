"""The CLIP vision tower and LLaVA projector as a llama.cpp ``mmproj`` GGUF.

LLaVA feeds the projector hidden_states[k] of the tower (k = N-1 for
``mm_vision_select_layer`` -2): the input of layer k, without the class token.
llama.cpp's llava graph runs ``block_count`` layers and, with
``clip.vision.feature_layer = [k]``, reads the stream after them; writing only
layers 0..k-1 with ``block_count = k`` is exact now and after the upstream fix
(CONVERSION.md §4). The projector's second linear layer is written centred and
times the embedding scale, because the text model's input stream is.

The tower's configuration is not in the LLaVA checkpoint: it comes from the
tower's own ``config.json`` when we have one, else from what the weights show,
with CLIP's 64-wide heads and quick-GELU; such values are reported as inferred.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from gguf import GGUFWriter

from .checkpoint import Checkpoint, TensorSource, non_float, short_list
from .configvalues import config_float, config_floats, config_int
from .crystal import CrystalConfig, CrystalLayout, center_out
from .errors import ConvertError
from .gguf_out import GGUFPlan, PlannedTensor

#: Transformers' CLIPVisionConfig defaults (a saved config may omit default values).
_HF_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    "projection_dim": 512,
}
#: OpenAI CLIP's normalisation (its preprocessor_config.json).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: CLIP ViTs use 64-wide attention heads; the head count is not visible in the weights.
CLIP_HEAD_DIM = 64
SUPPORTED_ACTS = {"quick_gelu": False, "gelu": True}  # value: clip.use_gelu
#: Bounds far beyond any CLIP tower (ViT-L/14-336: 1024 wide, 24 layers, 336 px).
MAX_TOWER_WIDTH = 1 << 16
MAX_TOWER_LAYERS = 1024
MAX_IMAGE_SIZE = 1 << 14

#: HF name inside ``encoder.layers.N.`` -> mmproj name inside ``v.blk.N.``.
BLOCK_MAP = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_out",
    "layer_norm1": "ln1",
    "layer_norm2": "ln2",
    "mlp.fc1": "ffn_up",
    "mlp.fc2": "ffn_down",
}
_IGNORED = ("embeddings.position_ids",)


@dataclass(frozen=True)
class ClipConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    eps: float
    hidden_act: str
    projection_dim: int
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    #: Names of the values that were inferred from the weights rather than read.
    inferred: tuple[str, ...] = ()

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid * self.grid

    @classmethod
    def from_tower_config(cls, cfg: dict[str, Any], preprocessor: dict[str, Any] | None) -> ClipConfig:
        """From a ``CLIPModel`` config (``vision_config``) or a ``CLIPVisionModel`` config."""
        vc = cfg.get("vision_config", cfg) if cfg.get("model_type") != "clip_vision_model" else cfg
        if not isinstance(vc, dict):
            raise ConvertError("the vision tower's config.json has no vision_config")
        where = "the vision tower's config.json"
        v = {**_HF_DEFAULTS, **{k: val for k, val in vc.items() if val is not None}}
        act = v["hidden_act"]
        if not isinstance(act, str) or act not in SUPPORTED_ACTS:
            raise ConvertError(f"unsupported vision tower activation {act!r} (supported: "
                               f"{', '.join(SUPPORTED_ACTS)})")
        hidden = config_int(v, "hidden_size", 1, MAX_TOWER_WIDTH, where=where)
        heads = config_int(v, "num_attention_heads", 1, hidden, where=where)
        if hidden % heads:
            raise ConvertError(f"{where}: num_attention_heads {heads} does not divide hidden_size {hidden}")
        image_size = config_int(v, "image_size", 1, MAX_IMAGE_SIZE, where=where)
        pre = preprocessor or {}
        pre_where = "the vision tower's preprocessor_config.json"
        top = {"projection_dim": cfg.get("projection_dim", v["projection_dim"])}
        return cls(
            hidden_size=hidden,
            intermediate_size=config_int(v, "intermediate_size", 1, MAX_TOWER_WIDTH * 8, where=where),
            num_layers=config_int(v, "num_hidden_layers", 1, MAX_TOWER_LAYERS, where=where),
            num_heads=heads,
            image_size=image_size,
            patch_size=config_int(v, "patch_size", 1, image_size, where=where),
            eps=config_float(v, "layer_norm_eps", where=where),
            hidden_act=act,
            projection_dim=config_int(top, "projection_dim", 1, MAX_TOWER_WIDTH, where=where),
            image_mean=config_floats(pre, "image_mean", 3, CLIP_MEAN, positive=False, where=pre_where),
            image_std=config_floats(pre, "image_std", 3, CLIP_STD, positive=True, where=pre_where),
        )

    @classmethod
    def infer(cls, ckpt: Checkpoint, prefix: str) -> ClipConfig:
        """From the weights: sizes are visible, heads/activation/eps are CLIP's conventions."""
        def shape(rel: str) -> tuple[int, ...]:
            name = prefix + rel
            if name not in ckpt:
                raise ConvertError(f"missing tensors: {name}")
            return ckpt.shape(name)

        class_embd = shape("embeddings.class_embedding")
        patch_embd = shape("embeddings.patch_embedding.weight")
        positions = shape("embeddings.position_embedding.weight")
        if len(class_embd) != 1 or len(patch_embd) != 4 or len(positions) != 2:
            raise ConvertError(f"wrongly shaped vision tower tensors: {prefix}embeddings.* "
                               f"{list(class_embd)}, {list(patch_embd)}, {list(positions)}")
        hidden, patch = class_embd[0], patch_embd[-1]
        grid = math.isqrt(max(positions[0] - 1, 0))
        if hidden <= 0 or patch <= 0 or grid <= 0 or grid * grid != positions[0] - 1:
            raise ConvertError(f"cannot infer the vision tower's geometry from {prefix}embeddings.* "
                               f"(position rows {positions[0]}, patch {patch}); pass the tower with --vision-tower")
        layers = {int(m.group(1)) for n in ckpt.names()
                  if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", n))}
        if hidden % CLIP_HEAD_DIM:
            raise ConvertError(f"cannot infer the vision tower's heads (hidden size {hidden} is not a "
                               f"multiple of {CLIP_HEAD_DIM}); pass the tower with --vision-tower")
        fc1 = shape("encoder.layers.0.mlp.fc1.weight")
        if len(fc1) != 2 or fc1[0] <= 0:
            raise ConvertError(f"wrongly shaped vision tower tensors: {prefix}encoder.layers.0.mlp.fc1.weight "
                               f"{list(fc1)}")
        return cls(
            hidden_size=hidden,
            intermediate_size=fc1[0],
            num_layers=len(layers),
            num_heads=hidden // CLIP_HEAD_DIM,
            image_size=grid * patch,
            patch_size=patch,
            eps=1e-5,
            hidden_act="quick_gelu",
            projection_dim=hidden,
            inferred=("num_attention_heads", "hidden_act", "layer_norm_eps", "image_mean", "image_std"),
        )


@dataclass(frozen=True)
class Tower:
    """A CLIP vision tower located in some checkpoint: where, its configuration, and LLaVA's layer."""

    src: Checkpoint
    prefix: str
    config: ClipConfig
    #: LLaVA reads hidden_states[layer], the input of that layer.
    layer: int


def feature_layer(cfg: dict[str, Any], tower: ClipConfig) -> int:
    """Which hidden state LLaVA reads: hidden_states[k] = the input of layer k."""
    if cfg.get("mm_vision_select_feature", "patch") != "patch":
        raise ConvertError(f"unsupported mm_vision_select_feature {cfg['mm_vision_select_feature']!r} "
                           "(supported: 'patch')")
    sel = config_int(cfg, "mm_vision_select_layer", -MAX_TOWER_LAYERS - 1, MAX_TOWER_LAYERS, default=-2)
    k = sel if sel >= 0 else tower.num_layers + 1 + sel
    if not 1 <= k <= tower.num_layers:
        raise ConvertError(
            f"mm_vision_select_layer {sel} is out of range for a {tower.num_layers}-layer tower")
    return k


def tower_expected(prefix: str, tower: ClipConfig) -> dict[str, tuple[int, ...]]:
    h, f, p = tower.hidden_size, tower.intermediate_size, tower.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}embeddings.class_embedding": (h,),
        f"{prefix}embeddings.patch_embedding.weight": (h, 3, p, p),
        f"{prefix}embeddings.position_embedding.weight": (tower.n_patches + 1, h),
        f"{prefix}pre_layrnorm.weight": (h,),
        f"{prefix}pre_layrnorm.bias": (h,),
        f"{prefix}post_layernorm.weight": (h,),
        f"{prefix}post_layernorm.bias": (h,),
    }
    for i in range(tower.num_layers):
        for hf in BLOCK_MAP:
            out_dim, in_dim = {"mlp.fc1": (f, h), "mlp.fc2": (h, f)}.get(hf, (h, h))
            if hf.startswith("layer_norm"):
                shapes[f"{prefix}encoder.layers.{i}.{hf}.weight"] = (h,)
            else:
                shapes[f"{prefix}encoder.layers.{i}.{hf}.weight"] = (out_dim, in_dim)
            shapes[f"{prefix}encoder.layers.{i}.{hf}.bias"] = (out_dim,)
    return shapes


def find_tower_prefix(ckpt: Checkpoint) -> str | None:
    """``vision_model.`` (CLIPModel, LLaVA) or ``""`` (CLIPVisionModel saved by transformers 5)."""
    suffix = "embeddings.patch_embedding.weight"
    for name in ckpt.names():
        prefix = name[: -len(suffix)]
        if name.endswith(suffix) and (prefix == "" or prefix.endswith("vision_model.")):
            return prefix
    return None


def validate_tower(ckpt: Checkpoint, prefix: str, tower: ClipConfig, *, strict: bool) -> None:
    """Missing/mis-shaped tower tensors; with ``strict``, also unexpected ones under ``prefix``."""
    expected = tower_expected(prefix, tower)
    missing = [n for n in expected if n not in ckpt]
    if missing:
        raise ConvertError(f"missing vision tower tensors: {short_list(missing)}")
    wrong = [f"{n} {list(ckpt.shape(n))} (expected {list(s)})" for n, s in expected.items()
             if ckpt.shape(n) != s]
    if wrong:
        raise ConvertError(f"wrongly shaped vision tower tensors: {short_list(wrong, 4)}")
    integer = non_float(ckpt, list(expected))
    if integer:
        raise ConvertError(f"vision tower tensors that are not floating point: {short_list(integer, 4)}")
    if strict:
        unexpected = [n for n in ckpt.names() if n.startswith(prefix) and n not in expected
                      and not n.endswith(_IGNORED)]
        if unexpected:
            raise ConvertError(f"unexpected vision tower tensors: {short_list(unexpected)}")


def mmproj_plan(
    located: Tower,
    proj_src: TensorSource,
    *,
    text: CrystalConfig,
    layout: CrystalLayout,
    metadata: Callable[[GGUFWriter], None],
) -> GGUFPlan:
    """Tower layers 0..k-1 plus the projector, as llama.cpp's ``clip``/``mlp`` mmproj."""
    tower_src, prefix, tower, k = located.src, located.prefix, located.config, located.layer

    def write_metadata(w: GGUFWriter) -> None:
        metadata(w)
        w.add_string("clip.projector_type", "mlp")
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.has_llava_projector", True)
        w.add_bool("clip.use_gelu", SUPPORTED_ACTS[tower.hidden_act])
        w.add_uint32("clip.vision.image_size", tower.image_size)
        w.add_uint32("clip.vision.patch_size", tower.patch_size)
        w.add_uint32("clip.vision.embedding_length", tower.hidden_size)
        w.add_uint32("clip.vision.feed_forward_length", tower.intermediate_size)
        w.add_uint32("clip.vision.block_count", k)
        w.add_uint32("clip.vision.projection_dim", tower.projection_dim)
        w.add_uint32("clip.vision.attention.head_count", tower.num_heads)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", tower.eps)
        w.add_array("clip.vision.feature_layer", [k])
        w.add_array("clip.vision.image_mean", list(tower.image_mean))
        w.add_array("clip.vision.image_std", list(tower.image_std))

    def t(rel: str) -> Callable[[], torch.Tensor]:
        return lambda: tower_src.get(prefix + rel).to(torch.float32)

    def mm2(p: str) -> Callable[[], torch.Tensor]:
        # The projector output enters the text stream: scale and centre it like token_embd.
        return lambda: center_out(proj_src.get(layout.proj(2, p)).to(torch.float32) * text.embeddings_scale)

    h, p = tower.hidden_size, tower.patch_size
    tensors = [
        PlannedTensor("v.class_embd", (h,), t("embeddings.class_embedding"), keep_f32=True),
        # ggml's conv kernel is F16 in every mmproj llama.cpp ships
        PlannedTensor("v.patch_embd.weight", (h, 3, p, p), t("embeddings.patch_embedding.weight")),
        PlannedTensor("v.position_embd.weight", (tower.n_patches + 1, h),
                      t("embeddings.position_embedding.weight"), keep_f32=True),
        PlannedTensor("v.pre_ln.weight", (h,), t("pre_layrnorm.weight"), keep_f32=True),
        PlannedTensor("v.pre_ln.bias", (h,), t("pre_layrnorm.bias"), keep_f32=True),
    ]
    shapes = tower_expected(prefix, tower)
    for i in range(k):
        for hf, gg in BLOCK_MAP.items():
            for part in ("weight", "bias"):
                rel = f"encoder.layers.{i}.{hf}.{part}"
                shape = shapes[prefix + rel]
                tensors.append(
                    PlannedTensor(f"v.blk.{i}.{gg}.{part}", shape, t(rel), keep_f32=len(shape) == 1))
    d = text.n_embd
    tensors += [
        PlannedTensor("mm.0.weight", (d, tower.hidden_size),
                      lambda: proj_src.get(layout.proj(0, "weight")).to(torch.float32)),
        PlannedTensor("mm.0.bias", (d,), lambda: proj_src.get(layout.proj(0, "bias")).to(torch.float32),
                      keep_f32=True),
        PlannedTensor("mm.2.weight", (d, d), mm2("weight")),
        PlannedTensor("mm.2.bias", (d,), mm2("bias"), keep_f32=True),
    ]
    return GGUFPlan("clip", write_metadata, tensors)
