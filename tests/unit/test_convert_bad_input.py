"""Every bad input named in the issue: one ``error:`` line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from web2code.converters import convert as convert_module
from web2code.converters.cli import main


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> Path:
    from web2code.converters.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("bad") / "ck", dtype=torch.bfloat16, n_layer=1,
                            tokenizer_json=reference_tokenizer)


@pytest.fixture
def ckpt(small_ckpt: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ck"
    shutil.copytree(small_ckpt, dest)
    return dest


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run the CLI; assert exit 2 and exactly one ``error:`` line that mentions every needle."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _shards(ck: Path) -> list[Path]:
    return sorted(ck.glob("pytorch_model-*.bin")) or sorted(ck.glob("model-*.safetensors"))


def _edit_tensors(ck: Path, near: str, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Change the tensors of the shard holding ``near``; keep the index consistent, as a real save would."""
    index_path = ck / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    shard = ck / index["weight_map"][near]
    tensors = torch.load(shard, weights_only=True)
    edit(tensors)
    torch.save(tensors, shard)
    weight_map = {k: v for k, v in index["weight_map"].items() if v != shard.name}
    index["weight_map"] = weight_map | dict.fromkeys(tensors, shard.name)
    index_path.write_text(json.dumps(index))


def test_missing_config(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ckpt / "config.json").unlink()
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "config.json", "not found")
    assert not (tmp_path / "out").exists()


def test_unsupported_model_type_says_what_is_supported(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "llama", ["LlamaForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "'llama'", "supported: llava_crystal")
    assert not (tmp_path / "out").exists()


def test_shard_named_in_index_missing(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = _shards(ckpt)[-1]
    shard.unlink()
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, shard.name, "missing")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupt_bin_shard(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    shard = _shards(ckpt)[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, shard.name, "truncated or corrupt")
    assert not (tmp_path / "out").exists()


def test_truncated_safetensors_shard(
    tmp_path: Path, reference_tokenizer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from web2code.converters.synthetic import write_checkpoint

    ck = write_checkpoint(tmp_path / "st", fmt="safetensors", dtype=torch.bfloat16, n_layer=1,
                          tokenizer_json=reference_tokenizer)
    shard = _shards(ck)[-1]
    shard.write_bytes(shard.read_bytes()[:-1000])
    fails([str(ck), "-o", str(tmp_path / "out")], capsys, shard.name, "truncated or corrupt")
    assert not (tmp_path / "out").exists()


def test_missing_tensors_are_listed(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def drop(t: dict[str, torch.Tensor]) -> None:
        del t["transformer.h.0.attn.c_attn.bias"]

    _edit_tensors(ckpt, "transformer.h.0.attn.c_attn.bias", drop)
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "missing tensors", "transformer.h.0.attn.c_attn.bias")


def test_unexpected_tensors_are_listed(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def add(t: dict[str, torch.Tensor]) -> None:
        t["transformer.h.0.attn.q_norm.weight"] = torch.ones(4)

    _edit_tensors(ckpt, "transformer.h.0.attn.c_attn.bias", add)
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "unexpected tensors",
          "transformer.h.0.attn.q_norm.weight")


def test_wrongly_shaped_tensors_are_listed(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def reshape(t: dict[str, torch.Tensor]) -> None:
        name = "transformer.h.0.mlp.c_fc.weight"
        t[name] = t[name][:, :-1].clone()

    _edit_tensors(ckpt, "transformer.h.0.mlp.c_fc.weight", reshape)
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "wrongly shaped", "mlp.c_fc.weight", "[256, 299]")


@pytest.mark.parametrize("payload", ["object", "int"])
def test_pickle_with_non_tensor_objects_is_refused(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: str
) -> None:
    shard = _shards(ckpt)[0]
    tensors = torch.load(shard, weights_only=True)
    tensors["training_args"] = argparse.Namespace(lr=1.0) if payload == "object" else 3  # type: ignore[assignment]
    torch.save(tensors, shard)
    line = fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, shard.name, "objects other than tensors")
    if payload == "object":
        assert "argparse.Namespace" in line
    assert not (tmp_path / "out").exists()


def test_outdir_with_outputs_needs_force(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "ck-Q4_K_M.gguf").write_bytes(b"old")
    fails([str(ckpt), "-o", str(out)], capsys, "already holds", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["ck-Q4_K_M.gguf", "manifest.json"]
    assert (out / "ck-Q4_K_M.gguf").read_bytes() == b"old"


def test_outdir_not_writable(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fails([str(ckpt), "-o", str(blocker / "out")], capsys, "not writable")
    assert blocker.read_text() == ""


def test_disk_full(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert_module, "free_bytes", lambda path: 10 * 2**20)
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "not enough disk space", "GiB free")
    assert not (tmp_path / "out").exists()


def test_disk_full_while_writing_leaves_nothing(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(convert_module, "quantize", no_space)
    rc = main([str(ckpt), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    # progress came before; the failure is one error line at the end
    assert rc == 2
    assert err[-1].startswith("error: ") and "No space left on device" in err[-1]
    assert sum(line.startswith("error") for line in err) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_quant_type_lists_valid_ones(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fails([str(ckpt), "-o", str(tmp_path / "out"), "--quant", "Q4_K_M", "--quant", "Q7_X"], capsys,
          "'Q7_X'", "F32", "Q8_0", "Q4_K_M", "Q6_K", "Q5_K_M", "BF16")
    assert not (tmp_path / "out").exists()


def test_vision_tower_not_found(tmp_path: Path, reference_tokenizer: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from web2code.converters.synthetic import write_checkpoint

    ck = write_checkpoint(tmp_path / "novision", vision="none", n_layer=1, dtype=torch.bfloat16,
                          tokenizer_json=reference_tokenizer)
    fails([str(ck), "-o", str(tmp_path / "out"), "--vision-tower", str(tmp_path / "no-such-tower")], capsys,
          "vision tower not found", "no-such-tower")
    assert not (tmp_path / "out").exists()


def test_missing_source_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails([str(tmp_path / "nope"), "-o", str(tmp_path / "out")], capsys, "not found")


def test_network_unavailable_for_repo_id_says_how_to_pass_a_folder(tmp_path: Path) -> None:
    # offline mode is what huggingface-hub reports for "no network" without waiting for retries
    full_env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "web2code.converters", "LLM360/CrystalChat-7B-Web2Code", "-o", str(tmp_path / "out")],
        env=full_env, capture_output=True, text=True, timeout=120, check=False,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cannot download"), proc.stderr
    assert "local folder" in lines[0]
    assert not (tmp_path / "out").exists()


def test_safetensors_checkpoint_reads_like_bin(tmp_path: Path, reference_tokenizer: Path) -> None:
    """Same seed, two formats: the reader gives the same tensors (and shapes) from both."""
    from web2code.converters.checkpoint import Checkpoint
    from web2code.converters.synthetic import write_checkpoint

    a = Checkpoint(write_checkpoint(tmp_path / "a", n_layer=1, tokenizer_json=reference_tokenizer))
    b = Checkpoint(write_checkpoint(tmp_path / "b", n_layer=1, fmt="safetensors", tokenizer_json=reference_tokenizer))
    assert a.format == "bin" and b.format == "safetensors"
    assert {n: i.shape for n, i in a.tensors.items()} == {n: i.shape for n, i in b.tensors.items()}
    for name in ("transformer.wte.weight", "transformer.h.0.attn.c_attn.bias"):
        torch.testing.assert_close(a.get(name), b.get(name), rtol=0, atol=0)
    first = _shards(b.folder)[0]
    assert set(load_file(first)) <= set(b.tensors)
    save_file({}, str(tmp_path / "unused.safetensors"))
