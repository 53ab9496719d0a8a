"""The float64 reference, checked against hand-computed cases and against transformers' CLIP.

The Crystal cases are small enough to follow on paper: the expected values are
written out with plain numpy formulas from CONVERSION.md §2, never with the
converter's algebra.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from web2code.converters.checkpoint import Checkpoint, DictSource
from web2code.converters.clip import ClipConfig, Tower, feature_layer, find_tower_prefix
from web2code.converters.crystal import CrystalConfig, CrystalLayout
from web2code.converters.reference import ClipReference, CrystalReference

EMB, OUT = 14.6, 2.22 * 0.0625


def _config(d: int, rotary_dim: int, vocab: int, n_inner: int = 4) -> CrystalConfig:
    return CrystalConfig(vocab_size=vocab, n_embd=d, n_layer=1, n_head=1, n_inner=n_inner, n_positions=16,
                         rotary_dim=rotary_dim, rope_base=10000.0, eps=1e-5, embeddings_scale=EMB,
                         output_scale=OUT, attn_scale=1.0 / d, tie_word_embeddings=True)


@pytest.fixture(autouse=True)
def _float64_defaults() -> Iterator[None]:
    # the hand-made weights below are exact decimals only in float64
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


LAYOUT = CrystalLayout(text="transformer.", projector="transformer.mm_projector.", tower=None, lm_head=None)


def _zero_model(cfg: CrystalConfig, wte: np.ndarray) -> dict[str, torch.Tensor]:
    """One layer whose attention and MLP contribute nothing; LayerNorms are identity-affine."""
    d, f = cfg.n_embd, cfg.n_inner
    t: dict[str, torch.Tensor] = {"transformer.wte.weight": torch.tensor(wte, dtype=torch.float64)}
    p = "transformer.h.0."
    for ln in ("ln_1", "ln_2"):
        t[f"{p}{ln}.weight"], t[f"{p}{ln}.bias"] = torch.ones(d), torch.zeros(d)
    t[f"{p}attn.c_attn.weight"], t[f"{p}attn.c_attn.bias"] = torch.zeros(d, 3 * d), torch.zeros(3 * d)
    t[f"{p}attn.c_proj.weight"], t[f"{p}attn.c_proj.bias"] = torch.zeros(d, d), torch.zeros(d)
    for fc in ("c_fc", "c_fc2"):
        t[f"{p}mlp.{fc}.weight"], t[f"{p}mlp.{fc}.bias"] = torch.zeros(d, f), torch.zeros(f)
    t[f"{p}mlp.c_proj.weight"], t[f"{p}mlp.c_proj.bias"] = torch.zeros(f, d), torch.zeros(d)
    t["transformer.ln_f.weight"], t["transformer.ln_f.bias"] = torch.ones(d), torch.zeros(d)
    return t


def _ln(x: np.ndarray, w: np.ndarray | float = 1.0, b: np.ndarray | float = 0.0) -> np.ndarray:
    mu = x.mean()
    return (x - mu) / math.sqrt(((x - mu) ** 2).mean() + 1e-5) * w + b


def test_embedding_and_output_scales_with_final_layernorm_bias() -> None:
    wte = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, -1.0], [1.0, 1.0, -1.0, 0.5]])
    cfg = _config(4, 2, 3)
    t = _zero_model(cfg, wte)
    t["transformer.ln_f.weight"] = torch.tensor([1.0, 2.0, 0.5, 1.0])
    t["transformer.ln_f.bias"] = torch.tensor([0.1, -0.2, 0.3, 0.0])
    ref = CrystalReference(DictSource(t), cfg, LAYOUT)
    got = ref.logits(ref.embed([2])).numpy()[0]
    # by hand: the stream is 14.6 * wte[2]; logits = LN_f(stream) . wte^T * 2.22 * 0.0625
    h = _ln(EMB * wte[2], np.array([1.0, 2.0, 0.5, 1.0]), np.array([0.1, -0.2, 0.3, 0.0]))
    expected = [OUT * float(h @ wte[v]) for v in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_attention_uses_one_over_d_and_partial_interleaved_rotary() -> None:
    d, rd = 8, 4
    cfg = _config(d, rd, 2)
    wte = np.zeros((2, d))
    wte[0, 0], wte[1, 1] = 1.0, 1.0
    t = _zero_model(cfg, wte)
    # constant q = k = e0 + e2 + e4 (from the biases), v = LN output, c_proj = identity
    qk = torch.zeros(d)
    qk[[0, 2, 4]] = 1.0
    bias = torch.zeros(3 * d)
    bias[:d], bias[d:2 * d] = qk, qk
    w = torch.zeros(d, 3 * d)
    w[:, 2 * d:] = torch.eye(d)
    t["transformer.h.0.attn.c_attn.weight"], t["transformer.h.0.attn.c_attn.bias"] = w, bias
    t["transformer.h.0.attn.c_proj.weight"] = torch.eye(d)
    ref = CrystalReference(DictSource(t), cfg, LAYOUT)
    got = ref.logits(ref.embed([0, 1])).numpy()

    # by hand. Position 1 turns pair (0,1) by 1 rad and pair (2,3) by 10000^(-2/4) = 0.01 rad;
    # dims 4..7 are beyond rotary_dim and do not turn. q1.k1 = 3, q1.k0 = cos 1 + cos 0.01 + 1.
    s11, s10 = 3 / d, (math.cos(1.0) + math.cos(0.01) + 1.0) / d
    p0 = math.exp(s10) / (math.exp(s10) + math.exp(s11))
    h0, h1 = _ln(EMB * wte[0]), _ln(EMB * wte[1])
    x0 = EMB * wte[0] + h0  # position 0 attends only to itself
    x1 = EMB * wte[1] + p0 * h0 + (1 - p0) * h1
    expected = np.stack([OUT * (wte @ _ln(x0)), OUT * (wte @ _ln(x1))])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_swiglu_gates_c_fc_with_silu_of_c_fc2() -> None:
    d, f = 4, 2
    cfg = _config(d, 2, 2, n_inner=f)
    wte = np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, 0.0, 1.0]])
    t = _zero_model(cfg, wte)
    p = "transformer.h.0.mlp."
    w_up = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 0.0]])  # Conv1D: [in, out]
    w_gate = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    t[f"{p}c_fc.weight"], t[f"{p}c_fc.bias"] = w_up, torch.tensor([0.1, 0.2])
    t[f"{p}c_fc2.weight"], t[f"{p}c_fc2.bias"] = w_gate, torch.tensor([-0.3, 0.0])
    t[f"{p}c_proj.weight"] = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    t[f"{p}c_proj.bias"] = torch.tensor([0.0, 0.0, 0.0, 0.5])
    ref = CrystalReference(DictSource(t), cfg, LAYOUT)
    got = ref.logits(ref.embed([0])).numpy()[0]

    x = EMB * wte[0]
    h = _ln(x)
    up = h @ w_up.numpy() + [0.1, 0.2]
    g = h @ w_gate.numpy() + [-0.3, 0.0]
    silu = g / (1 + np.exp(-g))
    x = x + (up * silu) @ t[f"{p}c_proj.weight"].numpy() + [0.0, 0.0, 0.0, 0.5]
    np.testing.assert_allclose(got, OUT * (wte @ _ln(x)), rtol=1e-10)


def test_causal_mask_hides_later_positions() -> None:
    cfg = _config(8, 4, 5)
    rng = np.random.default_rng(0)
    t = _zero_model(cfg, rng.normal(size=(5, 8)))
    t["transformer.h.0.attn.c_attn.weight"] = torch.from_numpy(rng.normal(size=(8, 24)))
    t["transformer.h.0.attn.c_proj.weight"] = torch.from_numpy(rng.normal(size=(8, 8)))
    ref = CrystalReference(DictSource(t), cfg, LAYOUT)
    full = ref.logits(ref.embed([1, 2, 3, 4])).numpy()
    prefix = ref.logits(ref.embed([1, 2])).numpy()
    np.testing.assert_allclose(full[:2], prefix, rtol=1e-12)


@pytest.mark.parametrize("layout", ["clip_model", "vision_model"])
def test_clip_reference_matches_transformers_hidden_states_minus_two(
    tmp_path: Path, reference_tokenizer: Path, layout: str,
) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from web2code.converters.synthetic import write_checkpoint

    ck_dir = write_checkpoint(tmp_path / "ck", vision="separate", tower_layout=layout,
                              tokenizer_json=reference_tokenizer, n_layer=1, vocab_size=32032)
    tower_ck = Checkpoint(Path(str(ck_dir) + "-clip"), what="vision tower")
    prefix = find_tower_prefix(tower_ck)
    assert prefix == ("vision_model." if layout == "clip_model" else "")
    import json

    raw = json.loads((tower_ck.folder / "config.json").read_text())
    cfg = ClipConfig.from_tower_config(raw, None)
    k = feature_layer({"mm_vision_select_layer": -2}, cfg)
    assert k == cfg.num_layers - 1

    hf_cfg = CLIPVisionConfig(**{key: raw.get("vision_config", raw)[key] for key in (
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
        "patch_size", "hidden_act", "layer_norm_eps")})
    model = CLIPVisionModel(hf_cfg).double().eval()
    state = {n[len(prefix):]: tower_ck.get(n).double() for n in tower_ck.names()
             if n.startswith(prefix) and not n.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected

    rgb = np.random.default_rng(3).integers(0, 256, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    ck = Checkpoint(ck_dir)
    ref = ClipReference(Tower(tower_ck, prefix, cfg, k), ck, CrystalLayout.detect(ck))
    pixels = ref.pixels(rgb)
    with torch.no_grad():
        hs = model(pixel_values=pixels[None], output_hidden_states=True).hidden_states
    expected = hs[-2][0, 1:]
    got = ref.features(pixels)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)

    # LLaVA's projector: nn.Sequential(Linear, GELU(), Linear)
    lay = CrystalLayout.detect(ck)
    proj = torch.nn.Sequential(torch.nn.Linear(cfg.hidden_size, 256), torch.nn.GELU(), torch.nn.Linear(256, 256))
    proj = proj.double()
    with torch.no_grad():
        for idx in (0, 2):
            proj[idx].weight.copy_(ck.get(lay.proj(idx, "weight")))
            proj[idx].bias.copy_(ck.get(lay.proj(idx, "bias")))
        torch.testing.assert_close(ref.project(expected), proj(expected), rtol=1e-12, atol=1e-12)
