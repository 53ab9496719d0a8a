"""Model shapes the harness can generate: the real 7B, a quick "1B-shaped" one, and a tiny smoke size."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

#: CLIP ViT-L/14-336 as LLaVA-1.5 uses it (the published tower).
REAL_VISION: dict[str, Any] = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "image_size": 336, "patch_size": 14, "projection_dim": 768,
}
#: CrystalChat-7B-Web2Code (CONVERSION.md §1); equal to converters.synthetic.REAL_7B_CONFIG.
REAL_7B: dict[str, Any] = {
    "vocab_size": 32032, "n_embd": 4096, "n_layer": 32, "n_head": 32, "n_inner": 10922, "n_positions": 2048,
    "rotary_dim": 32, "vision_config": REAL_VISION,
}
#: Half the width, half the depth, same per-head geometry and the same (real) vision tower:
#: ~0.95 B text weights, minutes instead of tens of minutes.
SHAPED_1B: dict[str, Any] = {
    "vocab_size": 32032, "n_embd": 2048, "n_layer": 16, "n_head": 16, "n_inner": 5461, "n_positions": 2048,
    "rotary_dim": 32, "vision_config": REAL_VISION,
}
#: Smoke test of the harness itself (seconds): 4 image tokens, 2 layers.
TINY: dict[str, Any] = {
    "vocab_size": 32032, "n_embd": 256, "n_layer": 2, "n_head": 2, "n_inner": 300, "n_positions": 2048,
    "rotary_dim": 32,
    "vision_config": {
        "hidden_size": 128, "intermediate_size": 200, "num_hidden_layers": 3, "num_attention_heads": 2,
        "image_size": 28, "patch_size": 14, "projection_dim": 64,
    },
}


@dataclass(frozen=True)
class Size:
    name: str
    config: dict[str, Any]
    #: shards of the generated checkpoint (the published one has two .bin shards)
    n_shards: int
    max_shard_bytes: int
    #: tokens generated per decode measurement
    decode_tokens: int
    #: tokens per variant in the variants measurement
    variant_tokens: int

    def checkpoint_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)

    @property
    def n_ff_padded(self) -> int:
        f = int(self.config["n_inner"])
        return -(-f // 256) * 256

    def text_params(self) -> int:
        """Weights of the converted text model (n_ff padded, output untied)."""
        c = self.config
        d, v, n = int(c["n_embd"]), int(c["vocab_size"]), int(c["n_layer"])
        return 2 * v * d + n * (4 * d * d + 3 * d * self.n_ff_padded)


SIZES: dict[str, Size] = {
    "7b": Size("7b", REAL_7B, n_shards=2, max_shard_bytes=10 * 10**9, decode_tokens=64, variant_tokens=32),
    "1b": Size("1b", SHAPED_1B, n_shards=2, max_shard_bytes=10 * 10**9, decode_tokens=64, variant_tokens=48),
    "tiny": Size("tiny", TINY, n_shards=2, max_shard_bytes=1 << 30, decode_tokens=64, variant_tokens=64),
}
