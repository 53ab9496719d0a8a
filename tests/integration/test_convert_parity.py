"""Converted files in the real llama.cpp against the float64 reference of the original model."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader

from tests.fixtures_models import COPY_DISTANCE, TinyPair
from web2code.converters.checkpoint import Checkpoint
from web2code.converters.cli import main
from web2code.converters.clip import ClipConfig, Tower, feature_layer, find_tower_prefix
from web2code.converters.convert import ConvertOptions, convert, sha256_file
from web2code.converters.crystal import CrystalConfig, CrystalLayout, center_rows
from web2code.converters.keys import LOGIT_OFFSET, MANIFEST_FORMAT_VERSION, PAIR_ID
from web2code.converters.llamacpp import ImageEncoder, TextModel
from web2code.converters.reference import ClipReference, CrystalReference
from web2code.converters.verify import compare_logits, probe_image, read_logit_offset

TOL_F32 = 1e-3  # max |dlogit| / std(logits), F32 weights and F32 KV cache (issue 3)
TOL_F16 = 2e-2
N_POSITIONS = 80


@dataclass(frozen=True)
class Converted:
    ckpt: Path
    f32: Path
    f16: Path
    mmproj: Path


def _convert(ckpt: Path, out: Path, quants: list[str]) -> dict[str, Path]:
    result = convert(ConvertOptions(outdir=out, source=str(ckpt), quants=quants, name="t"))
    files = {m.quant: out / m.file for m in result.models}
    files["mmproj"] = out / result.mmproj.file
    return files


@pytest.fixture(scope="module", params=["bin-f32", "safetensors-bf16"])
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              tiny_checkpoint: Path, reference_tokenizer: Path) -> Converted:
    from web2code.converters.synthetic import write_checkpoint

    if request.param == "bin-f32":
        ckpt = tiny_checkpoint
    else:
        ckpt = write_checkpoint(tmp_path_factory.mktemp("st") / "st", seed=2, fmt="safetensors",
                                dtype=torch.bfloat16, tokenizer_json=reference_tokenizer)
    files = _convert(ckpt, tmp_path_factory.mktemp("out") / "out", ["F32", "F16"])
    return Converted(ckpt, files["F32"], files["F16"], files["mmproj"])


def _reference(ckpt: Path) -> tuple[Checkpoint, CrystalConfig, CrystalLayout, CrystalReference]:
    ck = Checkpoint(ckpt)
    cfg = CrystalConfig.from_config(ck.config)
    layout = CrystalLayout.detect(ck)
    return ck, cfg, layout, CrystalReference(ck, cfg, layout)


def _prompt_ids() -> list[int]:
    return [int(t) for t in np.random.default_rng(11).integers(3, 32000, N_POSITIONS)]


def _llama_logits(model_path: Path, ids: list[int], *, offset: bool = True) -> np.ndarray:
    with TextModel(model_path, n_ctx=128) as m:
        logits = m.decode_tokens(ids)
    return logits + read_logit_offset(model_path) if offset else logits


@pytest.fixture(scope="module")
def reference_logits(converted: Converted) -> np.ndarray:
    *_, ref = _reference(converted.ckpt)
    return ref.logits(ref.embed(_prompt_ids())).numpy()


def test_f32_matches_reference_exactly_with_identical_greedy_tokens(
    converted: Converted, reference_logits: np.ndarray
) -> None:
    c = compare_logits(reference_logits, _llama_logits(converted.f32, _prompt_ids()))
    print(f"F32 max|dlogit|/std {c.max_rel_dlogit:.2e}, KL max {c.kl_max:.1e}, near-ties {c.near_ties}")
    assert c.max_rel_dlogit <= TOL_F32
    assert c.positions >= 64 and c.greedy_mismatches == 0
    # the model is sensitive: its argmax is neither constant nor the input token
    argmax = reference_logits.argmax(axis=1)
    assert len(set(argmax.tolist())) > N_POSITIONS // 2
    assert np.mean(argmax == np.array(_prompt_ids())) < 0.5


def test_f16_within_tolerance(converted: Converted, reference_logits: np.ndarray) -> None:
    c = compare_logits(reference_logits, _llama_logits(converted.f16, _prompt_ids()))
    print(f"F16 max|dlogit|/std {c.max_rel_dlogit:.2e}, KL max {c.kl_max:.1e}, near-ties {c.near_ties}")
    assert c.max_rel_dlogit <= TOL_F16
    assert c.greedy_mismatches == 0


def _break(path: Path, dest: Path, ckpt: Path, how: str) -> Path:
    """A copy of a correct F32 file with one piece of the conversion undone, edited in place."""
    shutil.copyfile(path, dest)
    reader = GGUFReader(dest, "r+")
    tensors = {t.name: t for t in reader.tensors}
    ck = Checkpoint(ckpt)
    cfg = CrystalConfig.from_config(ck.config)
    if how == "sqrt_d_scale":  # undo the 1/sqrt(head_dim) pre-scale of W_q: scores become q.k/sqrt(d)
        for name, t in tensors.items():
            if ".attn_q." in name:
                t.data[...] *= math.sqrt(cfg.head_dim)
    elif how == "full_rotary":  # rotate every pair at llama's own frequencies
        tensors["rope_freqs.weight"].data[...] = 1.0
    elif how == "no_centering":  # the raw 14.6*wte rows: the stream's mean reaches RMSNorm
        wte = ck.get("transformer.wte.weight").to(torch.float64) * cfg.embeddings_scale
        tensors["token_embd.weight"].data[...] = wte.numpy().astype(np.float32)
    else:
        raise ValueError(how)
    del reader
    return dest


@pytest.mark.parametrize("how", ["offset_dropped", "sqrt_d_scale", "full_rotary", "no_centering"])
def test_deliberately_broken_conversions_fail_the_comparison(
    converted: Converted, reference_logits: np.ndarray, tmp_path: Path, how: str
) -> None:
    if how == "offset_dropped":
        got = _llama_logits(converted.f32, _prompt_ids(), offset=False)
    else:
        got = _llama_logits(_break(converted.f32, tmp_path / "broken.gguf", converted.ckpt, how), _prompt_ids())
    c = compare_logits(reference_logits, got)
    print(f"{how}: max|dlogit|/std {c.max_rel_dlogit:.2e}, greedy mismatches {c.greedy_mismatches}")
    assert c.max_rel_dlogit > 30 * TOL_F32
    # not only a small numeric drift: the greedy tokens change too
    assert c.greedy_mismatches > 0


def _tower(ck: Checkpoint, layout: CrystalLayout) -> Tower:
    assert layout.tower is not None
    cfg = ClipConfig.infer(ck, layout.tower)
    return Tower(ck, layout.tower, cfg, feature_layer(ck.config, cfg))


def test_image_embeddings_from_mtmd_match_reference_projector(converted: Converted) -> None:
    ck, cfg, layout, _ = _reference(converted.ckpt)
    tower = _tower(ck, layout)
    image = probe_image(tower.config.image_size)
    expected = center_rows(ClipReference(tower, ck, layout).image_rows(image) * cfg.embeddings_scale).numpy()
    with TextModel(converted.f32, n_ctx=64) as m, ImageEncoder(converted.mmproj, m) as enc:
        got = enc.encode(image)
    assert got.shape == (tower.config.n_patches, cfg.n_embd)
    rel = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
    print(f"image embeddings relative error {rel:.2e}")
    assert rel <= 4e-3  # tanh-GELU and F16 weights/conv in the mmproj (CONVERSION.md §4)
    # the CLS-first order matters: rows shifted by one patch are far off
    assert float(np.linalg.norm(np.roll(got, 1, axis=0) - expected) / np.linalg.norm(expected)) > 0.1


def test_separate_tower_folder_with_its_own_config(tmp_path: Path, reference_tokenizer: Path) -> None:
    """A CLIPModel folder named by mm_vision_tower; 4 heads of 32 (not CLIP's 64) must come from its config."""
    from web2code.converters.synthetic import TINY_VISION, write_checkpoint

    ckpt = write_checkpoint(tmp_path / "sep", seed=4, vision="separate", n_layer=1,
                            tokenizer_json=reference_tokenizer,
                            vision_config={**TINY_VISION, "num_attention_heads": 4})
    files = _convert(ckpt, tmp_path / "out", ["F32"])
    ck, cfg, layout, _ = _reference(ckpt)
    tck = Checkpoint(Path(str(ckpt) + "-clip"), what="vision tower")
    prefix = find_tower_prefix(tck)
    assert prefix is not None
    raw = json.loads((tck.folder / "config.json").read_text())
    tcfg = ClipConfig.from_tower_config(raw, None)
    assert tcfg.num_heads == 4
    tower = Tower(tck, prefix, tcfg, feature_layer(ck.config, tcfg))
    image = probe_image(tcfg.image_size)
    expected = center_rows(ClipReference(tower, ck, layout).image_rows(image) * cfg.embeddings_scale).numpy()
    with TextModel(files["F32"], n_ctx=64) as m, ImageEncoder(files["mmproj"], m) as enc:
        got = enc.encode(image)
    assert float(np.linalg.norm(got - expected) / np.linalg.norm(expected)) <= 4e-3
    head_count = GGUFReader(files["mmproj"]).get_field("clip.vision.attention.head_count")
    assert head_count is not None and head_count.contents() == 4


def test_cli_verify_passes_end_to_end_with_image(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(tiny_checkpoint), "-o", str(tmp_path / "out"), "--quant", "F32", "--verify", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    (report,) = summary["verify"]
    print(json.dumps({k: report[k] for k in ("image_rel_err", "text", "prompt", "generated")}, indent=1))
    assert report["passed"]
    assert report["text"]["max_rel_dlogit"] <= TOL_F32
    assert report["prompt"]["max_rel_dlogit"] <= report["tolerance_with_image"]
    assert report["generated"]["positions"] >= 63 and report["generated"]["greedy_agree"] + \
        report["generated"]["near_ties"] == report["generated"]["positions"]
    assert summary["peak_rss_bytes"] > 0 and summary["timings_s"]["total"] > 0


def _types(path: Path) -> dict[str, GGMLQuantizationType]:
    return {t.name: GGMLQuantizationType(int(t.tensor_type)) for t in GGUFReader(path).tensors}


@pytest.fixture(scope="module")
def quantized(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _convert(tiny_checkpoint, tmp_path_factory.mktemp("q") / "out", ["Q8_0", "Q4_K_M"])


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_outputs_quantize_every_quantizable_tensor(quantized: dict[str, Path], quant: str) -> None:
    float_types = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
    types = _types(quantized[quant])
    matrices = [n for n in types if n.endswith(".weight") and "norm" not in n and n != "rope_freqs.weight"]
    assert any(".ffn_down." in n for n in matrices)
    unquantized = [n for n in matrices if types[n] in float_types]
    assert not unquantized, unquantized
    assert types["rope_freqs.weight"] == GGMLQuantizationType.F32


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_outputs_load_and_generate(quantized: dict[str, Path], tiny_checkpoint: Path, quant: str) -> None:
    *_, ref = _reference(tiny_checkpoint)
    ids = _prompt_ids()[:40]
    reference = ref.logits(ref.embed(ids)).numpy()
    got = _llama_logits(quantized[quant], ids)
    assert np.isfinite(got).all()
    agree = float(np.mean(got.argmax(axis=1) == reference.argmax(axis=1)))
    corr = float(np.corrcoef(got.ravel(), reference.ravel())[0, 1])
    print(f"{quant}: greedy agreement {agree:.2f}, logit correlation {corr:.4f}")
    assert corr > (0.99 if quant == "Q8_0" else 0.9)
    with TextModel(quantized[quant], n_ctx=64) as m:  # and it generates
        offset = read_logit_offset(quantized[quant])
        seq = ids[:8]
        last = m.decode_tokens(seq)[-1] + offset
        for _ in range(8):
            seq.append(int(last.argmax()))
            last = m.decode_tokens([seq[-1]])[0] + offset
    assert len(seq) == 16


def test_pair_metadata_and_manifest(tiny_pair: TinyPair) -> None:
    manifest = tiny_pair.manifest_data()
    assert manifest["format_version"] == MANIFEST_FORMAT_VERSION
    assert manifest["mmproj"]["file"] == tiny_pair.mmproj.name
    for entry in [manifest["mmproj"], *manifest["models"]]:
        assert sha256_file(tiny_pair.dir / entry["file"]) == entry["sha256"]
    assert {m["quant"] for m in manifest["models"]} == {"F32", "Q8_0"}
    assert not [p for p in tiny_pair.dir.iterdir() if p.name.startswith(".")]  # no temporaries left

    text, mm = GGUFReader(tiny_pair.model), GGUFReader(tiny_pair.mmproj)

    def field(r: GGUFReader, key: str) -> object:
        f = r.get_field(key)
        assert f is not None, key
        return f.contents()

    assert field(text, "general.architecture") == "llama"
    assert field(text, PAIR_ID) == field(mm, PAIR_ID) == manifest["pair_id"]
    assert len(field(text, LOGIT_OFFSET)) == 32032  # type: ignore[arg-type]
    assert "ASSISTANT:" in str(field(text, "tokenizer.chat_template"))
    assert field(text, "tokenizer.ggml.add_bos_token") is False
    assert field(mm, "general.architecture") == "clip"
    assert field(mm, "clip.projector_type") == "mlp"
    assert field(mm, "clip.use_gelu") is False
    assert field(mm, "clip.vision.block_count") == 2  # of 3 layers: hidden_states[-2]
    assert field(mm, "clip.vision.feature_layer") == [2]
    for key in ("image_size", "patch_size", "embedding_length", "feed_forward_length", "projection_dim",
                "attention.head_count"):
        assert isinstance(field(mm, f"clip.vision.{key}"), int)
    assert not any(t.name.startswith("v.post_ln") for t in mm.tensors)
    assert not any(t.name.startswith("v.blk.2.") for t in mm.tensors)


def test_copy_head_pair_replays_the_prompt(tiny_pair: TinyPair) -> None:
    """The fixture other suites use generates prompt-dependent text, identically in F32 and Q8_0."""
    prompt = [int(t) for t in np.random.default_rng(5).integers(100, 32000, 12)]
    outputs = []
    for path in (tiny_pair.model, tiny_pair.q8):
        offset = read_logit_offset(path)
        with TextModel(path, n_ctx=64) as m:
            seq = list(prompt)
            last = m.decode_tokens(seq)[-1] + offset
            for _ in range(12):
                seq.append(int(last.argmax()))
                last = m.decode_tokens([seq[-1]])[0] + offset
        outputs.append(seq[len(prompt):])
    period = COPY_DISTANCE + 1
    expected = [prompt[len(prompt) - period + i % period] for i in range(12)]
    assert outputs[0] == expected
    assert outputs[1] == outputs[0]


def test_interrupt_leaves_no_partial_files(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from web2code.converters import convert as convert_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    out.mkdir()
    (out / ".old.gguf.w2c-999999999-abcd.incomplete").write_bytes(b"stale")  # a killed run's leftover
    monkeypatch.setattr(convert_module, "quantize", interrupted)
    assert main([str(tiny_checkpoint), "-o", str(out), "--quant", "F16", "--quant", "Q8_0"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(out.iterdir()) == []
