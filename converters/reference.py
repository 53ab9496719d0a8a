"""A float64 reference of the *original* model, read straight from the checkpoint.

This is the yardstick ``--verify`` and the tests hold llama.cpp against, so it
implements the published architecture as written (CONVERSION.md §2; CLIP
ViT + LLaVA ``mlp2x_gelu``), with none of the conversion algebra: LayerNorm
with bias, Conv1D weights as stored, partial interleaved rotary, µP scales,
tied output. Weights are fetched a matrix at a time and dropped after use, so
it runs at 7B size in a few GB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .checkpoint import TensorSource
from .clip import Tower
from .crystal import CrystalConfig, CrystalLayout

F64 = torch.float64


def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def rotate_interleaved(x: torch.Tensor, rotary_dim: int, base: float) -> torch.Tensor:
    """GPT-J rotary on the first ``rotary_dim`` dims of each head: pair j = dims (2j, 2j+1).

    ``x``: ``[n_pos, n_head, head_dim]``; position p turns pair j by p * base^(-2j/rotary_dim).
    """
    n = x.shape[0]
    j = torch.arange(rotary_dim // 2, dtype=F64)
    angle = torch.arange(n, dtype=F64)[:, None] * base ** (-2 * j / rotary_dim)[None, :]
    cos, sin = torch.cos(angle)[:, None, :], torch.sin(angle)[:, None, :]
    out = x.clone()
    even, odd = x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]
    out[..., 0:rotary_dim:2] = even * cos - odd * sin
    out[..., 1:rotary_dim:2] = even * sin + odd * cos
    return out


class CrystalReference:
    """Crystal's forward pass (CONVERSION.md §2) in float64."""

    def __init__(self, src: TensorSource, cfg: CrystalConfig, layout: CrystalLayout) -> None:
        self.src, self.cfg, self.layout = src, cfg, layout

    def _w(self, name: str) -> torch.Tensor:
        return self.src.get(name).to(F64)

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return layer_norm(x, self._w(f"{name}.weight"), self._w(f"{name}.bias"), self.cfg.eps)

    def _conv1d(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """HF ``Conv1D``: the weight is stored ``[in, out]``."""
        return x @ self._w(f"{name}.weight") + self._w(f"{name}.bias")

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        """Token embeddings (before the µP embedding scale), ``[n, n_embd]``."""
        return self._w(self.layout.wte())[torch.as_tensor(list(ids), dtype=torch.long)]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every position for input rows ``x`` (token embeddings and projector output)."""
        cfg, lay = self.cfg, self.layout
        n, d, nh, hd = x.shape[0], cfg.n_embd, cfg.n_head, cfg.head_dim
        x = x.to(F64) * cfg.embeddings_scale
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        for i in range(cfg.n_layer):
            h = self._ln(x, lay.layer(i, "ln_1"))
            qkv = self._conv1d(h, lay.layer(i, "attn.c_attn"))
            q, k, v = (qkv[:, j * d:(j + 1) * d].reshape(n, nh, hd) for j in range(3))
            q = rotate_interleaved(q, cfg.rotary_dim, cfg.rope_base)
            k = rotate_interleaved(k, cfg.rotary_dim, cfg.rope_base)
            scores = torch.einsum("qhd,khd->hqk", q, k) * cfg.attn_scale
            probs = torch.softmax(scores.masked_fill(~causal, -math.inf), dim=-1)
            attn = torch.einsum("hqk,khd->qhd", probs, v).reshape(n, d)
            x = x + self._conv1d(attn, lay.layer(i, "attn.c_proj"))
            h = self._ln(x, lay.layer(i, "ln_2"))
            # Crystal's SwiGLU: c_fc is the up projection, c_fc2 the gate
            act = self._conv1d(h, lay.layer(i, "mlp.c_fc")) * torch.nn.functional.silu(
                self._conv1d(h, lay.layer(i, "mlp.c_fc2")))
            x = x + self._conv1d(act, lay.layer(i, "mlp.c_proj"))
        h = self._ln(x, lay.text + "ln_f")
        w_out = self.src.get(lay.output(cfg))
        block = 4096
        return torch.cat([h @ w_out[r:r + block].to(F64).T for r in range(0, w_out.shape[0], block)],
                         dim=1) * cfg.output_scale


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class ClipReference:
    """CLIP ViT hidden_states[k] without the class token, then LLaVA's mlp2x_gelu projector."""

    def __init__(self, located: Tower, proj_src: TensorSource, layout: CrystalLayout) -> None:
        self.src, self.prefix = located.src, located.prefix
        self.tower, self.k = located.config, located.layer
        self.proj_src, self.layout = proj_src, layout

    def _w(self, rel: str) -> torch.Tensor:
        return self.src.get(self.prefix + rel).to(F64)

    def pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """Normalised ``[3, S, S]`` from an RGB uint8 image already ``image_size`` square."""
        s = self.tower.image_size
        if rgb.shape != (s, s, 3):
            raise ValueError(f"reference images must be {s}x{s} RGB, got {rgb.shape}")
        t = torch.from_numpy(rgb.astype(np.float64) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.tower.image_mean, dtype=F64)[:, None, None]
        std = torch.tensor(self.tower.image_std, dtype=F64)[:, None, None]
        return (t - mean) / std

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        tw = self.tower
        h, nh = tw.hidden_size, tw.num_heads
        hd = h // nh
        patches = torch.nn.functional.conv2d(pixels[None], self._w("embeddings.patch_embedding.weight"),
                                             stride=tw.patch_size)
        x = torch.cat([self._w("embeddings.class_embedding")[None], patches.flatten(2)[0].T])
        x = x + self._w("embeddings.position_embedding.weight")
        x = layer_norm(x, self._w("pre_layrnorm.weight"), self._w("pre_layrnorm.bias"), tw.eps)
        act = quick_gelu if tw.hidden_act == "quick_gelu" else torch.nn.functional.gelu
        n = x.shape[0]
        for i in range(self.k):  # the input of layer k is hidden_states[k]
            e = f"encoder.layers.{i}."

            def lin(rel: str, t: torch.Tensor, e: str = e) -> torch.Tensor:
                return t @ self._w(f"{e}{rel}.weight").T + self._w(f"{e}{rel}.bias")

            y = layer_norm(x, self._w(f"{e}layer_norm1.weight"), self._w(f"{e}layer_norm1.bias"), tw.eps)
            q, k, v = (lin(f"self_attn.{p}_proj", y).reshape(n, nh, hd) for p in "qkv")
            probs = torch.softmax(torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd), dim=-1)
            x = x + lin("self_attn.out_proj", torch.einsum("hqk,khd->qhd", probs, v).reshape(n, h))
            y = layer_norm(x, self._w(f"{e}layer_norm2.weight"), self._w(f"{e}layer_norm2.bias"), tw.eps)
            x = x + lin("mlp.fc2", act(lin("mlp.fc1", y)))
        return x[1:]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """LLaVA ``mlp2x_gelu``: Linear, exact (erf) GELU, Linear."""
        def lin(idx: int, t: torch.Tensor) -> torch.Tensor:
            w = self.proj_src.get(self.layout.proj(idx, "weight")).to(F64)
            return t @ w.T + self.proj_src.get(self.layout.proj(idx, "bias")).to(F64)
        return lin(2, torch.nn.functional.gelu(lin(0, features)))

    def image_rows(self, rgb: np.ndarray) -> torch.Tensor:
        """What LLaVA splices into the text sequence for this image, ``[n_patches, n_embd]``."""
        return self.project(self.features(self.pixels(rgb)))
