"""Random CrystalChat-Web2Code checkpoints in the real upstream layout, for tests and benchmarks.

The real weights cannot be downloaded where tests run, so the pipeline is
proven on random checkpoints with the published layout: ``config.json`` with
all Crystal and LLaVA fields, sharded ``.bin`` + index or safetensors + index,
the real ``tokenizer.json``, projector keys, and the CLIP tower inside the
checkpoint or as its own folder (``CLIPModel`` or transformers-5
``CLIPVisionModel`` layout).

The values are chosen to make a wrong conversion visible (TESTING.md): small
embeddings, larger q/k so attention is not uniform, LayerNorm weights 1+0.3N
and biases 0.3N, non-zero biases everywhere. ``copy_distance`` adds a layer-0
head that attends a fixed distance back through the model's own rotary
encoding and copies that token forward, so greedy output replays the prompt.

Tensors are generated and written a shard at a time, and shards are bounded
in size, so :data:`REAL_7B_CONFIG` (about 14 GB in bfloat16) can be written
with a small resident set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

#: Override of the tower's configuration (``vision_config=...``); merged into the defaults.
TINY_VISION: dict[str, Any] = {
    "hidden_size": 128, "intermediate_size": 200, "num_hidden_layers": 3, "num_attention_heads": 2,
    "image_size": 28, "patch_size": 14, "projection_dim": 64,
}
#: Real per-head geometry (head_dim 128, rotary 32) and an n_inner that is not a multiple of 32.
TINY_CONFIG: dict[str, Any] = {
    "vocab_size": 32032, "n_embd": 256, "n_layer": 2, "n_head": 2, "n_inner": 300, "n_positions": 512,
    "rotary_dim": 32, "vision_config": TINY_VISION,
}
#: The published model's shapes (CONVERSION.md §1).
REAL_7B_CONFIG: dict[str, Any] = {
    "vocab_size": 32032, "n_embd": 4096, "n_layer": 32, "n_head": 32, "n_inner": 10922, "n_positions": 2048,
    "rotary_dim": 32,
    "vision_config": {
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "image_size": 336, "patch_size": 14, "projection_dim": 768,
    },
}
TOKENIZER_ENV = "WEB2CODE_TOKENIZER_JSON"
#: The model's published tokenizer.json in a checkout of this repository (tests/data).
_SHARED_TOKENIZER = Path(__file__).resolve().parents[1] / "tests" / "data" / "tokenizer.json"

TEXT_PREFIX = "transformer."
TOWER_INSIDE_PREFIX = "transformer.vision_tower.vision_tower.vision_model."
PROJECTOR_PREFIX = "transformer.mm_projector."


def crystal_config(overrides: dict[str, Any], vision: dict[str, Any], tower_ref: str) -> dict[str, Any]:
    """``config.json`` with every key of the published one (Crystal + LLaVA fields)."""
    cfg: dict[str, Any] = {
        "_name_or_path": "LLM360/CrystalChat-7B-Web2Code",
        "architectures": ["LlavaCrystalForCausalLM"],
        "model_type": "llava_crystal",
        "activation_function": "swiglu",
        "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-5,
        "mup_embeddings_scale": 14.6, "mup_output_alpha": 2.22, "mup_scale_qk_dot_by_d": True,
        "mup_width_scale": 0.0625,
        "position_embedding_type": "rotary",
        "reorder_and_upcast_attn": False,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.31.0", "use_cache": True,
        # LLaVA
        "freeze_mm_mlp_adapter": False, "image_aspect_ratio": "pad", "mm_hidden_size": vision["hidden_size"],
        "mm_patch_merge_type": "flat", "mm_projector_lr": None, "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": tower_ref,
        "tokenizer_model_max_length": 2048, "tokenizer_padding_side": "right", "tune_mm_mlp_adapter": False,
        "use_mm_proj": True,
    }
    cfg.update(overrides)
    return cfg


def _normal(name: str, seed: int, shape: tuple[int, ...], std: float, mean: float = 0.0) -> torch.Tensor:
    # One generator per tensor, seeded by its name: values do not depend on the write order.
    g = torch.Generator().manual_seed((zlib.crc32(name.encode()) + 7919 * seed) % (2**63))
    return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean


Spec = tuple[str, tuple[int, ...], Callable[[], torch.Tensor]]


def _random_spec(name: str, seed: int, shape: tuple[int, ...], std: float, mean: float = 0.0) -> Spec:
    return name, shape, lambda: _normal(name, seed, shape, std, mean)


def _text_specs(cfg: dict[str, Any], seed: int, copy_distance: int | None) -> Iterator[Spec]:
    d, f, v = cfg["n_embd"], cfg["n_inner"], cfg["vocab_size"]
    n_pos = cfg["n_positions"]
    qk_gain = 2.5

    def rnd(name: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> Spec:
        return name, shape, lambda: _normal(name, seed, shape, std, mean)

    p = TEXT_PREFIX
    yield rnd(f"{p}wte.weight", (v, d), 0.02)
    for i in range(cfg["n_layer"]):
        h = f"{p}h.{i}."
        for ln in ("ln_1", "ln_2"):
            yield rnd(f"{h}{ln}.weight", (d,), 0.3, 1.0)
            yield rnd(f"{h}{ln}.bias", (d,), 0.3)

        def c_attn_w(name: str = f"{h}attn.c_attn.weight", layer: int = i) -> torch.Tensor:
            w = _normal(name, seed, (d, 3 * d), 1 / math.sqrt(d))
            w[:, : 2 * d] *= qk_gain
            if copy_distance is not None and layer == 0:
                _copy_head_weight(w, cfg)
            return w

        def c_attn_b(name: str = f"{h}attn.c_attn.bias", layer: int = i) -> torch.Tensor:
            b = _normal(name, seed, (3 * d,), 0.1)
            b[: 2 * d] *= qk_gain
            if copy_distance is not None and layer == 0:
                _copy_head_bias(b, cfg, copy_distance)
            return b

        def c_proj_w(name: str = f"{h}attn.c_proj.weight", layer: int = i) -> torch.Tensor:
            w = _normal(name, seed, (d, d), 1 / math.sqrt(d))
            if copy_distance is not None and layer == 0:
                hd = d // cfg["n_head"]
                w[:hd] = 0.0
                w[:hd, :hd] = torch.eye(hd) * 8.0  # head 0 writes what it copied, loudly
            return w

        yield f"{h}attn.c_attn.weight", (d, 3 * d), c_attn_w
        yield f"{h}attn.c_attn.bias", (3 * d,), c_attn_b
        yield f"{h}attn.c_proj.weight", (d, d), c_proj_w
        yield rnd(f"{h}attn.c_proj.bias", (d,), 0.1)
        # the legacy GPT-2 causal-mask buffers that upstream .bin files carry
        yield (f"{h}attn.bias", (1, 1, n_pos, n_pos),
               lambda: torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool)).view(1, 1, n_pos, n_pos))
        yield f"{h}attn.masked_bias", (), lambda: torch.tensor(-1e4)
        for fc in ("c_fc", "c_fc2"):
            yield rnd(f"{h}mlp.{fc}.weight", (d, f), 1 / math.sqrt(d))
            yield rnd(f"{h}mlp.{fc}.bias", (f,), 0.1)
        yield rnd(f"{h}mlp.c_proj.weight", (f, d), 1 / math.sqrt(f))
        yield rnd(f"{h}mlp.c_proj.bias", (d,), 0.1)
    yield rnd(f"{p}ln_f.weight", (d,), 0.3, 1.0)
    yield rnd(f"{p}ln_f.bias", (d,), 0.3)


def _copy_head_weight(w: torch.Tensor, cfg: dict[str, Any]) -> None:
    """Head 0 of layer 0: positional q/k (bias only), v = the first head_dim dims of LN(x)."""
    d = cfg["n_embd"]
    hd = d // cfg["n_head"]
    w[:, :hd] = 0.0  # q
    w[:, d:d + hd] = 0.0  # k
    w[:, 2 * d:2 * d + hd] = 0.0
    w[:hd, 2 * d:2 * d + hd] = torch.eye(hd)  # v


def _copy_head_bias(b: torch.Tensor, cfg: dict[str, Any], distance: int) -> None:
    """Rotary pair j of q leads k's by -theta_j*distance: every pair peaks at p - s = distance."""
    d, rd = cfg["n_embd"], cfg["rotary_dim"]
    hd = d // cfg["n_head"]
    amplitude = 28.0  # sharp enough after the 1/head_dim score scale
    b[:hd] = 0.0
    b[d:d + hd] = 0.0
    b[2 * d:2 * d + hd] = 0.0
    for j in range(rd // 2):
        theta = 10000.0 ** (-2 * j / rd)
        b[2 * j] = amplitude * math.cos(-theta * distance)
        b[2 * j + 1] = amplitude * math.sin(-theta * distance)
        b[d + 2 * j] = amplitude


def _tower_specs(vc: dict[str, Any], seed: int, prefix: str) -> Iterator[Spec]:
    h, f, p = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"]
    n_pos = (vc["image_size"] // p) ** 2 + 1

    def rnd(rel: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> Spec:
        name = prefix + rel
        return name, shape, lambda: _normal(name, seed, shape, std, mean)

    yield rnd("embeddings.class_embedding", (h,), 0.5)
    yield rnd("embeddings.patch_embedding.weight", (h, 3, p, p), 1 / math.sqrt(3 * p * p))
    yield rnd("embeddings.position_embedding.weight", (n_pos, h), 0.5)
    yield rnd("pre_layrnorm.weight", (h,), 0.3, 1.0)
    yield rnd("pre_layrnorm.bias", (h,), 0.3)
    for i in range(vc["num_hidden_layers"]):
        e = f"encoder.layers.{i}."
        for proj, gain in (("q_proj", 2.0), ("k_proj", 2.0), ("v_proj", 1.0), ("out_proj", 1.0)):
            yield rnd(f"{e}self_attn.{proj}.weight", (h, h), gain / math.sqrt(h))
            yield rnd(f"{e}self_attn.{proj}.bias", (h,), 0.1)
        for ln in ("layer_norm1", "layer_norm2"):
            yield rnd(f"{e}{ln}.weight", (h,), 0.3, 1.0)
            yield rnd(f"{e}{ln}.bias", (h,), 0.3)
        yield rnd(f"{e}mlp.fc1.weight", (f, h), 1 / math.sqrt(h))
        yield rnd(f"{e}mlp.fc1.bias", (f,), 0.1)
        yield rnd(f"{e}mlp.fc2.weight", (h, f), 1 / math.sqrt(f))
        yield rnd(f"{e}mlp.fc2.bias", (h,), 0.1)
    yield rnd("post_layernorm.weight", (h,), 0.3, 1.0)
    yield rnd("post_layernorm.bias", (h,), 0.3)


def _projector_specs(cfg: dict[str, Any], vc: dict[str, Any], seed: int, prefix: str) -> Iterator[Spec]:
    d, m = cfg["n_embd"], vc["hidden_size"]
    for name, shape, std in (
        (f"{prefix}0.weight", (d, m), 1 / math.sqrt(m)),
        (f"{prefix}0.bias", (d,), 0.1),
        # the image rows enter the stream times 14.6 like token embeddings: keep them comparable
        (f"{prefix}2.weight", (d, d), 0.05 / math.sqrt(d)),
        (f"{prefix}2.bias", (d,), 0.02),
    ):
        yield _random_spec(name, seed, shape, std)


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def write_shards(
    dest: Path, specs: list[Spec], *, fmt: str, dtype: torch.dtype, n_shards: int, max_shard_bytes: int,
) -> None:
    """Write ``specs`` as HF shards + index, generating one shard's tensors at a time."""
    total = sum(_nbytes(s, dtype) for _, s, _ in specs)
    n = max(n_shards, -(-total // max_shard_bytes))
    groups: list[list[Spec]] = [[]]
    budget = total / n
    acc = 0
    for spec in specs:
        size = _nbytes(spec[1], dtype)
        if groups[-1] and acc + size > budget * len(groups) and len(groups) < n:
            groups.append([])
        groups[-1].append(spec)
        acc += size
    n = len(groups)
    if fmt == "bin":
        names = [f"pytorch_model-{k + 1:05d}-of-{n:05d}.bin" for k in range(n)]
        index_name = "pytorch_model.bin.index.json"
    else:
        names = [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
        index_name = "model.safetensors.index.json"
    weight_map: dict[str, str] = {}
    for shard_name, group in zip(names, groups, strict=True):
        tensors: dict[str, torch.Tensor] = {}
        for name, shape, make in group:
            t = make()
            assert tuple(t.shape) == shape, name
            tensors[name] = t.to(dtype) if t.is_floating_point() else t
            weight_map[name] = shard_name
        if fmt == "bin":
            torch.save(tensors, dest / shard_name)
        else:
            save_file(tensors, str(dest / shard_name), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (dest / index_name).write_text(json.dumps(index, indent=2) + "\n")


def _tower_folder(dest: Path, vc: dict[str, Any], seed: int, *, fmt: str, dtype: torch.dtype,
                  layout: str) -> None:
    """A separate tower: ``CLIPModel`` (``vision_model.*`` + text parts) or a bare ``CLIPVisionModel``."""
    dest.mkdir(parents=True, exist_ok=True)
    vision_cfg = {
        "attention_dropout": 0.0, "hidden_act": "quick_gelu", "initializer_factor": 1.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-5, "model_type": "clip_vision_model",
        "num_channels": 3, **vc,
    }
    if layout == "clip_model":
        specs = list(_tower_specs(vc, seed, "vision_model."))
        n_pos = (vc["image_size"] // vc["patch_size"]) ** 2 + 1
        specs.append(("vision_model.embeddings.position_ids", (1, n_pos),
                      lambda: torch.arange(n_pos).unsqueeze(0)))
        pd = vc["projection_dim"]
        specs += [
            ("text_model.embeddings.token_embedding.weight", (64, 32),
             lambda: _normal("tt", seed, (64, 32), 0.02)),
            ("visual_projection.weight", (pd, vc["hidden_size"]),
             lambda: _normal("vp", seed, (pd, vc["hidden_size"]), 0.02)),
            ("logit_scale", (), lambda: torch.tensor(4.6052)),
        ]
        config = {
            "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": pd,
            "text_config": {"hidden_size": 32, "vocab_size": 64, "model_type": "clip_text_model"},
            "vision_config": vision_cfg, "transformers_version": "4.31.0",
        }
    else:
        specs = list(_tower_specs(vc, seed, ""))
        config = {"architectures": ["CLIPVisionModel"], **vision_cfg, "transformers_version": "5.0.0"}
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dest / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": vc["image_size"], "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "size": vc["image_size"],
    }, indent=2) + "\n")
    write_shards(dest, specs, fmt=fmt, dtype=dtype, n_shards=1, max_shard_bytes=1 << 30)


def default_tokenizer() -> Path:
    env = os.environ.get(TOKENIZER_ENV)
    path = Path(env) if env else _SHARED_TOKENIZER
    if not path.is_file():
        raise FileNotFoundError(f"the reference tokenizer.json is not at {path}: set {TOKENIZER_ENV}")
    return path


def write_checkpoint(
    dest: Path,
    *,
    seed: int = 0,
    fmt: str = "bin",
    dtype: torch.dtype = torch.float32,
    vision: str = "inside",
    tower_layout: str = "clip_model",
    tokenizer_json: Path | None = None,
    copy_distance: int | None = None,
    n_shards: int = 2,
    max_shard_bytes: int = 1 << 30,
    projector_prefix: str = PROJECTOR_PREFIX,
    **config_overrides: Any,
) -> Path:
    """Write a random checkpoint to ``dest`` (created) and return it.

    ``vision``: ``"inside"`` (tower keys in the checkpoint, as LLaVA saves it),
    ``"separate"`` (a tower folder ``<dest>-clip`` named by ``mm_vision_tower``;
    ``tower_layout`` ``"clip_model"`` or ``"vision_model"``) or ``"none"``
    (``mm_vision_tower`` keeps the upstream repo id). ``config_overrides`` are
    Crystal config keys, plus ``vision_config`` for the tower.
    """
    if fmt not in ("bin", "safetensors") or vision not in ("inside", "separate", "none"):
        raise ValueError(f"fmt={fmt!r}, vision={vision!r}")
    overrides = {**TINY_CONFIG, **config_overrides}
    vc = {**TINY_VISION, **overrides.pop("vision_config")}
    dest.mkdir(parents=True, exist_ok=True)
    tower_dir = dest.with_name(dest.name + "-clip")
    tower_ref = str(tower_dir) if vision == "separate" else "openai/clip-vit-large-patch14-336"
    cfg = crystal_config(overrides, vc, tower_ref)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    shutil.copyfile(tokenizer_json or default_tokenizer(), dest / "tokenizer.json")

    specs = list(_text_specs(cfg, seed, copy_distance))
    specs += list(_projector_specs(cfg, vc, seed, projector_prefix))
    if vision == "inside":
        # LLaVA saves the tower it trained with; its config is not in the checkpoint (heads = hidden/64)
        specs += list(_tower_specs(vc, seed, TOWER_INSIDE_PREFIX))
    elif vision == "separate":
        _tower_folder(tower_dir, vc, seed, fmt=fmt, dtype=dtype, layout=tower_layout)
    write_shards(dest, specs, fmt=fmt, dtype=dtype, n_shards=n_shards, max_shard_bytes=max_shard_bytes)
    return dest
