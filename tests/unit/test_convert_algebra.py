"""Pieces of the conversion with known values, the vocabulary, and the chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf import TokenType

from web2code.converters.crystal import CrystalConfig, center_out, center_rows, rope_freq_factors
from web2code.converters.errors import ConvertError
from web2code.converters.synthetic import REAL_7B_CONFIG, crystal_config
from web2code.converters.tokenizer import CHAT_TEMPLATE, SYSTEM_PROMPT, load_vocab


def _real_cfg() -> CrystalConfig:
    overrides = {k: v for k, v in REAL_7B_CONFIG.items() if k != "vision_config"}
    return CrystalConfig.from_config(crystal_config(overrides, REAL_7B_CONFIG["vision_config"], "x"))


def test_real_config_reads_as_published() -> None:
    cfg = _real_cfg()
    assert (cfg.head_dim, cfg.rotary_dim, cfg.n_ff) == (128, 32, 11008)  # 10922 padded to 256
    assert cfg.attn_scale == pytest.approx(1 / 128)
    assert cfg.output_scale == pytest.approx(0.13875)
    assert cfg.embeddings_scale == pytest.approx(14.6)


def test_rope_freqs_turn_llama_frequencies_into_partial_rotary() -> None:
    ff = rope_freq_factors(_real_cfg()).double()
    assert ff.dtype == torch.float64 and ff.shape == (64,)
    i = torch.arange(16, dtype=torch.float64)
    torch.testing.assert_close(ff[:16], 10000.0 ** (3 * i / 64), rtol=1e-6, atol=0)
    assert bool((ff[16:] >= 1e29).all())
    # what llama.cpp computes, base^(-2i/head_dim)/ff, is Crystal's base^(-2i/rotary_dim)
    torch.testing.assert_close(10000.0 ** (-2 * i / 128) / ff[:16], 10000.0 ** (-2 * i / 32), rtol=1e-6, atol=0)


def test_centering_removes_the_mean_of_what_enters_the_stream() -> None:
    w = torch.randn(6, 4, dtype=torch.float64)
    assert torch.allclose(center_out(w).sum(dim=0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(center_rows(w).sum(dim=1), torch.zeros(6, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize(("key", "value"), [("position_embedding_type", "learned"),
                                             ("mm_projector_type", "linear"),
                                             ("scale_attn_by_inverse_layer_idx", True)])
def test_unsupported_config_values_are_named(key: str, value: object) -> None:
    cfg = crystal_config({**{k: v for k, v in REAL_7B_CONFIG.items() if k != "vision_config"}, key: value},
                         REAL_7B_CONFIG["vision_config"], "x")
    with pytest.raises(ConvertError, match=key):
        CrystalConfig.from_config(cfg)


def test_vocab_scores_follow_bpe_merge_ranks(reference_tokenizer: Path) -> None:
    import json

    vocab = load_vocab(reference_tokenizer, 32032)
    assert len(vocab.tokens) == len(vocab.scores) == len(vocab.types) == 32032
    assert (vocab.bos_id, vocab.eos_id, vocab.unk_id) == (1, 2, 0)
    assert vocab.types[0] == TokenType.UNKNOWN and vocab.types[3] == TokenType.BYTE
    assert vocab.tokens[32018] == "<|im_start|>" and vocab.types[32018] == TokenType.CONTROL
    assert vocab.types[32031] == TokenType.UNUSED
    merges = json.loads(reference_tokenizer.read_text())["model"]["merges"]
    first = merges[0] if isinstance(merges[0], str) else " ".join(merges[0])
    a, b = first.split(" ")
    assert vocab.scores[vocab.tokens.index(a + b)] == 0.0
    later = merges[1000] if isinstance(merges[1000], str) else " ".join(merges[1000])
    assert vocab.scores[vocab.tokens.index(later.replace(" ", ""))] >= -1000.0


def test_vocab_larger_than_model_is_refused(reference_tokenizer: Path) -> None:
    with pytest.raises(ConvertError, match="vocab_size"):
        load_vocab(reference_tokenizer, 1000)


def _llava_v1_prompt(turns: list[tuple[str, str | None]]) -> str:
    """LLaVA conv_vicuna_v1.get_prompt (SeparatorStyle.TWO, sep ' ', sep2 '</s>'), written out."""
    seps = [" ", "</s>"]
    ret = SYSTEM_PROMPT + seps[0]
    for i, (role, message) in enumerate(turns):
        ret += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
    return ret


def test_chat_template_reproduces_the_training_template() -> None:
    from jinja2 import Environment

    template = Environment().from_string(CHAT_TEMPLATE)
    messages = [{"role": "user", "content": "<image>\nPlease generate html code for the given image"}]
    assert template.render(messages=messages, add_generation_prompt=True) == _llava_v1_prompt(
        [("USER", messages[0]["content"]), ("ASSISTANT", None)])
    multi = [*messages, {"role": "assistant", "content": "<html></html>"}, {"role": "user", "content": "why?"}]
    assert template.render(messages=multi, add_generation_prompt=True) == _llava_v1_prompt(
        [("USER", multi[0]["content"]), ("ASSISTANT", "<html></html>"), ("USER", "why?"), ("ASSISTANT", None)])
