"""``--verify``: the converted pair in llama.cpp against the float64 reference of the original.

The prompt is the training template with the authors' code instruction and a
deterministic test image of exactly the tower's input size (so preprocessing
is the identity on both sides). llama.cpp's logits (plus the logit offset read
back from the file) are compared at every prompt position and over a greedy
continuation: max |Δlogit| relative to the reference's logit spread, greedy
agreement (near-ties reported, not failed), and KL divergence; the image
embeddings from mtmd are compared with the reference projector output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGUFReader

from .checkpoint import TensorSource
from .clip import Tower
from .crystal import CrystalConfig, CrystalLayout, center_rows
from .keys import LOGIT_OFFSET
from .llamacpp import ImageEncoder, TextModel
from .reference import ClipReference, CrystalReference
from .tokenizer import SYSTEM_PROMPT

INSTRUCTION = "Please generate html code for the given image"
#: max |Δlogit| / std(reference logits) allowed, by the type of the checked file, for a text-only
#: prompt and for the prompt with the image spliced in. Measured on random models (TESTING.md):
#: F32 with an F32 KV cache ~2e-6 text-only, F16 ~4e-3; the image rows from the F16 mmproj (F16
#: weights and conv, tanh-GELU) differ by ~1e-3, which the text model amplifies to ~4e-3.
LOGIT_TOLERANCE = {"F32": 1e-3, "F16": 2e-2}
IMAGE_LOGIT_TOLERANCE = {"F32": 2e-2, "F16": 3e-2}
#: Relative error of the image embeddings (Frobenius), fixed llava graph: ~1e-3 measured.
IMAGE_TOLERANCE = 1e-2
#: Top-two gap below which a greedy disagreement is a near-tie, in units of std(logits).
NEAR_TIE = 0.02


@dataclass
class Comparison:
    """Reference vs llama.cpp logits over the same positions."""

    max_rel_dlogit: float
    greedy_agree: int
    positions: int
    near_ties: int
    kl_mean: float
    kl_max: float

    @property
    def greedy_mismatches(self) -> int:
        return self.positions - self.near_ties - self.greedy_agree


def compare_logits(ref: np.ndarray[Any, Any], got: np.ndarray[Any, Any]) -> Comparison:
    """Compare ``[n, vocab]`` logits; a disagreement where the reference's top two are within
    :data:`NEAR_TIE` std is counted as a near-tie, not a mismatch."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    std = float(ref.std())
    rel = float(np.abs(ref - got).max() / std)
    top2 = np.sort(ref, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) < NEAR_TIE * std
    agree = ref.argmax(axis=1) == got.argmax(axis=1)
    lp = torch.log_softmax(torch.from_numpy(ref), dim=1)
    lq = torch.log_softmax(torch.from_numpy(got), dim=1)
    kl = (lp.exp() * (lp - lq)).sum(dim=1).numpy()
    return Comparison(rel, int(agree.sum()), len(ref), int((~agree & tie).sum()), float(kl.mean()),
                      float(kl.max()))


@dataclass
class VerifyReport:
    file_type: str
    text: Comparison  # the prompt without the image
    prompt: Comparison  # the prompt with the image
    generated: Comparison  # a greedy continuation after it
    image_rel_err: float

    @property
    def tolerance(self) -> float:
        return LOGIT_TOLERANCE[self.file_type]

    @property
    def image_tolerance(self) -> float:
        return IMAGE_LOGIT_TOLERANCE[self.file_type]

    @property
    def passed(self) -> bool:
        return (self.text.max_rel_dlogit <= self.tolerance
                and max(self.prompt.max_rel_dlogit, self.generated.max_rel_dlogit) <= self.image_tolerance
                and all(c.greedy_mismatches == 0 for c in (self.text, self.prompt, self.generated))
                and self.image_rel_err <= IMAGE_TOLERANCE)

    def as_dict(self) -> dict[str, Any]:
        return {"file_type": self.file_type, "passed": self.passed, "tolerance_text": self.tolerance,
                "tolerance_with_image": self.image_tolerance, "image_rel_err": self.image_rel_err,
                "text": asdict(self.text), "prompt": asdict(self.prompt), "generated": asdict(self.generated)}

    def lines(self) -> list[str]:
        out = [f"verify {self.file_type}: {'PASS' if self.passed else 'FAIL'} (max|dlogit|/std <= "
               f"{self.tolerance:g} text-only, <= {self.image_tolerance:g} with the image; image "
               f"embeddings <= {IMAGE_TOLERANCE:g})",
               f"  image embeddings: relative error {self.image_rel_err:.2e}"]
        for label, c in (("text-only prompt", self.text), ("prompt with image", self.prompt),
                         ("greedy continuation", self.generated)):
            out.append(f"  {label}: max|dlogit|/std {c.max_rel_dlogit:.2e}, greedy "
                       f"{c.greedy_agree}/{c.positions} ({c.near_ties} near-ties), "
                       f"KL mean {c.kl_mean:.2e} max {c.kl_max:.2e}")
        return out


def probe_image(size: int) -> np.ndarray[Any, Any]:
    """A deterministic RGB image with gradients, edges and texture (no EXIF, no alpha)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / max(1, size - 1)
    r = 255 * x
    g = 255 * (0.5 + 0.5 * np.sin(6.28 * 3 * y))
    b = np.where((x > 0.3) & (x < 0.7) & (y > 0.2) & (y < 0.5), 230.0, 40.0 + 150 * x * y)
    noise = np.random.default_rng(7).integers(-20, 21, (size, size, 3))
    return np.clip(np.stack([r, g, b], axis=-1) + noise, 0, 255).astype(np.uint8)


def read_logit_offset(path: Path) -> np.ndarray[Any, Any]:
    field = GGUFReader(path).get_field(LOGIT_OFFSET)
    if field is None:
        raise ValueError(f"{path} has no {LOGIT_OFFSET}")
    return np.array(field.contents(), dtype=np.float32)


def verify_pair(
    ck: TensorSource, located: Tower, *, cfg: CrystalConfig, layout: CrystalLayout,
    model_path: Path, mmproj_path: Path, file_type: str, n_generate: int = 64, threads: int = 0,
) -> VerifyReport:
    """Reference vs llama.cpp for one converted text model (F32 or F16) and its mmproj."""
    tower = located.config
    text_ref = CrystalReference(ck, cfg, layout)
    clip_ref = ClipReference(located, ck, layout)
    image = probe_image(tower.image_size)
    offset = read_logit_offset(model_path)
    n_ctx = -(-(tower.n_patches + 128 + n_generate) // 64) * 64
    with TextModel(model_path, n_ctx=n_ctx, n_threads=threads or None) as model:
        # LLaVA tokenizes the text around the image chunk by chunk, without BOS
        before = model.tokenize(f"{SYSTEM_PROMPT} USER: ")
        after = model.tokenize(f"\n{INSTRUCTION} ASSISTANT:")
        text_got = model.decode_tokens(before + after) + offset
        model.reset()
        with ImageEncoder(mmproj_path, model, n_threads=threads or None) as enc:
            img_embd = enc.encode(image)
        got = [model.decode_tokens(before), model.decode_embd(img_embd), model.decode_tokens(after)]
        generated: list[int] = []
        last = got[-1][-1] + offset
        gen_logits = []
        for _ in range(n_generate):
            generated.append(int(last.argmax()))
            last = model.decode_tokens([generated[-1]])[0] + offset
            gen_logits.append(last)
    text_ref_logits = text_ref.logits(text_ref.embed(before + after)).numpy()
    rows = clip_ref.image_rows(image)
    expected_embd = center_rows(rows * cfg.embeddings_scale).numpy()
    image_err = float(np.linalg.norm(img_embd - expected_embd) / np.linalg.norm(expected_embd))
    seq = torch.cat([text_ref.embed(before), rows, text_ref.embed(after + generated[:-1])])
    ref = text_ref.logits(seq).numpy()
    n_prompt = len(before) + len(rows) + len(after)
    return VerifyReport(
        file_type,
        compare_logits(text_ref_logits, text_got),
        compare_logits(ref[:n_prompt], np.concatenate(got) + offset),
        compare_logits(ref[n_prompt:], np.stack(gen_logits[:-1])),
        image_err,
    )
