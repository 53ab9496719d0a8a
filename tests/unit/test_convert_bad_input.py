"""Every bad input named in the issue: one ``error:`` line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import argparse
import json
import math
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


def fails_late(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Like :func:`fails` for damage found while writing: progress lines may come first, then one error line."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert [line for line in lines if line.startswith("error")] == lines[-1:], err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


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


@pytest.mark.parametrize("pickle_bytes", [b"\x80\x02e.", b"\x80\x02]q\x00(K\x01e\x85R."])
def test_mangled_pickle_in_a_bin_shard(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], pickle_bytes: bytes
) -> None:
    # what flipped bytes in data.pkl can make torch's safe unpickler raise (IndexError: a MARK missing)
    import zipfile

    shard = _shards(ckpt)[0]
    with zipfile.ZipFile(shard) as zf:
        records = {i.filename: zf.read(i) for i in zf.infolist()}
    with zipfile.ZipFile(shard, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records.items():
            zf.writestr(name, pickle_bytes if name.endswith("/data.pkl") else data)
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


# -- malformed config.json and tokenizer.json (fault injection) -----------------------------------
def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")  # NaN is written as NaN, as Python's JSON allows


@pytest.mark.parametrize(("key", "value"), [
    ("n_head", 0),  # was ZeroDivisionError
    ("n_head", "thirty-two"),
    ("n_embd", None),
    ("n_embd", True),
    ("n_positions", -1),  # was struct.error from the GGUF writer
    ("n_layer", 10**9),
    ("vocab_size", 2.5),
    ("rotary_dim", 0),
    ("n_inner", "300"),
    ("layer_norm_epsilon", float("nan")),
    ("mup_embeddings_scale", "14.6"),
    ("rotary_emb_base", -10000.0),
    ("mup_output_alpha", 10**400),
    ("tie_word_embeddings", "false"),
    ("mm_vision_select_layer", "last"),
    ("mm_hidden_size", -128),
])
def test_malformed_config_values(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object
) -> None:
    _edit_json(ckpt / "config.json", lambda c: c.__setitem__(key, value))
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, key)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("key", "value"), [
    ("num_attention_heads", 0),
    ("patch_size", 0),  # would divide by zero
    ("hidden_size", "wide"),
    ("layer_norm_eps", -1),
])
def test_malformed_vision_tower_config(
    tmp_path: Path, reference_tokenizer: Path, capsys: pytest.CaptureFixture[str], key: str, value: object
) -> None:
    from web2code.converters.synthetic import write_checkpoint

    ck = write_checkpoint(tmp_path / "sep", vision="separate", n_layer=1, dtype=torch.bfloat16,
                          tokenizer_json=reference_tokenizer)
    tower = tmp_path / "sep-clip"
    _edit_json(tower / "config.json", lambda c: c["vision_config"].__setitem__(key, value))
    fails([str(ck), "-o", str(tmp_path / "out")], capsys, key)
    assert not (tmp_path / "out").exists()


def _first_merge(value: object) -> Callable[[dict], None]:  # type: ignore[type-arg]
    return lambda t: t["model"]["merges"].__setitem__(0, value)


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda t: t["model"].__setitem__("vocab", ["<unk>", "<s>"]), "vocabulary"),
    (lambda t: t["model"]["vocab"].__setitem__("▁the", "x"), "'▁the': 'x'"),
    (lambda t: t["model"]["vocab"].__setitem__("▁the", -1), "'▁the': -1"),
    (lambda t: t["model"]["vocab"].__setitem__("▁the", 10**9), "from 0 to 32031"),
    (lambda t: t["model"]["vocab"].__setitem__("▁the", 5), "more than one piece"),
    (lambda t: t["model"].__setitem__("merges", "▁ t"), "merges"),
    (_first_merge(42), "merge 0"),
    (_first_merge(["▁"]), "merge 0"),
    (_first_merge("▁t"), "merge 0"),
    (_first_merge(["▁", None]), "merge 0"),
    (lambda t: t.__setitem__("added_tokens", {"id": 0}), "added_tokens"),
    (lambda t: t["added_tokens"][0].pop("id"), "added token"),
    (lambda t: t["added_tokens"][0].__setitem__("id", 99999), "added token"),
    (lambda t: t.__setitem__("normalizer", "nfc"), "normalizer"),
])
def test_mangled_tokenizer(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict], None], needle: str,  # type: ignore[type-arg]
) -> None:
    _edit_json(ckpt / "tokenizer.json", edit)
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "tokenizer.json", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("victim", ["config.json", "tokenizer.json", "pytorch_model.bin.index.json",
                                    "pytorch_model-00002-of-00002.bin"])
def test_fifo_instead_of_a_file_is_refused_not_waited_on(ckpt: Path, tmp_path: Path, victim: str) -> None:
    (ckpt / victim).unlink()
    os.mkfifo(ckpt / victim)
    # a subprocess with a deadline: before the fix, reading the FIFO blocked forever
    proc = subprocess.run([sys.executable, "-m", "web2code.converters", str(ckpt), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and victim in lines[0], proc.stderr
    assert "not a regular file" in lines[0]
    assert not (tmp_path / "out").exists()


def test_weight_index_naming_a_file_outside_the_folder(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit_json(ckpt / "pytorch_model.bin.index.json",
               lambda i: i["weight_map"].__setitem__("transformer.wte.weight", "/etc/passwd"))
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "/etc/passwd", "not file names in its folder")


def test_output_name_too_long_for_the_file_system(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fails([str(ckpt), "-o", str(tmp_path / "out"), "--name", "n" * 250], capsys, "--name", "too long")
    assert "255 bytes" in line
    assert not (tmp_path / "out").exists()
    # the default name comes from the folder; the message then says how to choose another
    long_dir = tmp_path / ("c" * 230)
    shutil.copytree(ckpt, long_dir)
    fails([str(long_dir), "-o", str(tmp_path / "out")], capsys, "too long", "pass --name")
    # a longest name that fits is accepted (the outputs and their temporaries all fit)
    room = int(line.rsplit("at most ", 1)[1].split()[0])
    assert main([str(ckpt), "-o", str(tmp_path / "out"), "--name", "n" * room, "--quant", "F16"]) == 0
    assert (tmp_path / "out" / f"mmproj-{'n' * room}-f16.gguf").is_file()


def test_paths_too_long_for_the_file_system(tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails([str(tmp_path / ("s" * 300)), "-o", str(tmp_path / "out")], capsys, "cannot be used")
    fails([str(ckpt), "-o", str(tmp_path / ("o" * 300))], capsys, "OUTDIR")


@pytest.mark.parametrize("value", ["100000", "-1", "many"])
def test_threads_out_of_range(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(ckpt), "-o", str(tmp_path / "out"), "--threads", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "--threads" in err, err
    assert not (tmp_path / "out").exists()


# -- damaged tensor data ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e30])
def test_nan_inf_or_absurd_weights_are_refused_with_the_tensor_named(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    name = "transformer.h.0.mlp.c_fc.weight"

    def poison(t: dict[str, torch.Tensor]) -> None:
        t[name] = t[name].clone()
        t[name][3, 7] = bad

    _edit_tensors(ckpt, name, poison)
    line = fails_late([str(ckpt), "-o", str(tmp_path / "out")], capsys, name, "damaged")
    assert ("NaN" if math.isnan(bad) else "infinite" if math.isinf(bad) else "-1e+30") in line
    assert not (tmp_path / "out").exists()


def test_integer_weights_are_refused_before_anything_is_written(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "transformer.h.0.attn.c_proj.weight"

    def as_int(t: dict[str, torch.Tensor]) -> None:
        t[name] = (t[name].float() * 100).to(torch.int32)

    _edit_tensors(ckpt, name, as_int)
    fails([str(ckpt), "-o", str(tmp_path / "out")], capsys, "not floating point", f"{name} (int32)")
    assert not (tmp_path / "out").exists()


def _record_data_offset(shard: Path, record_suffix: str) -> int:
    """Where the bytes of a torch zip record start (stored, uncompressed)."""
    import struct
    import zipfile

    with zipfile.ZipFile(shard) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(record_suffix))
    with shard.open("rb") as f:
        f.seek(info.header_offset + 26)
        n, m = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + n + m


def test_flipped_bit_in_a_bin_shard_is_found_by_its_checksum(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # shard 1 holds only the token embedding; flip the lowest mantissa bit of one bfloat16:
    # the value barely changes (no value check can see it), but the zip record's CRC-32 does
    shard = ckpt / "pytorch_model-00001-of-00002.bin"
    assert json.loads((ckpt / "pytorch_model.bin.index.json").read_text())["weight_map"][
        "transformer.wte.weight"] == shard.name
    data = bytearray(shard.read_bytes())
    data[_record_data_offset(shard, "/data/0") + 1000] ^= 0x01
    shard.write_bytes(bytes(data))
    fails_late([str(ckpt), "-o", str(tmp_path / "out"), "--quant", "F16"], capsys,
               "transformer.wte.weight", shard.name, "checksum")
    assert not (tmp_path / "out").exists()


def test_a_shard_saved_without_checksums_still_converts(ckpt: Path, tmp_path: Path) -> None:
    # torch.save can skip computing CRC-32s (torch.serialization.set_crc32_options(False)): it writes 0
    name = "transformer.h.0.mlp.c_fc.weight"
    torch.serialization.set_crc32_options(False)
    try:
        _edit_tensors(ckpt, name, lambda t: None)
    finally:
        torch.serialization.set_crc32_options(True)
    import zipfile

    shard = ckpt / json.loads((ckpt / "pytorch_model.bin.index.json").read_text())["weight_map"][name]
    assert {i.CRC for i in zipfile.ZipFile(shard).infolist()} == {0}
    assert main([str(ckpt), "-o", str(tmp_path / "out"), "--quant", "F16"]) == 0


@pytest.mark.parametrize(("high_byte", "needle"), [(0x7F, "NaN"), (0x7E, "far beyond any trained weight")])
def test_flipped_exponent_in_a_safetensors_shard_is_refused(
    tmp_path: Path, reference_tokenizer: Path, capsys: pytest.CaptureFixture[str], high_byte: int, needle: str
) -> None:
    # safetensors has no checksum: what a flip into the exponent makes (inf/NaN, 1e38) is what can be found
    import struct

    from web2code.converters.synthetic import write_checkpoint

    ck = write_checkpoint(tmp_path / "st", fmt="safetensors", dtype=torch.bfloat16, n_layer=1,
                          tokenizer_json=reference_tokenizer)
    shard = next(p for p in _shards(ck) if "transformer.wte.weight" in load_file(p))
    data = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    start = json.loads(data[8:8 + n])["transformer.wte.weight"]["data_offsets"][0]
    element = 8 + n + start + 2 * 12345  # bfloat16 little-endian: [low, high]
    data[element + 1] = high_byte
    data[element] = 0xC0 if high_byte == 0x7F else 0x01
    shard.write_bytes(bytes(data))
    fails_late([str(ck), "-o", str(tmp_path / "out"), "--quant", "F16"], capsys, "transformer.wte.weight", needle)
    assert not (tmp_path / "out").exists()


# -- --force replaces all or nothing ----------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes | str]:
    return {p.name: (p.read_bytes() if p.is_file() else "dir") for p in sorted(folder.iterdir())}


def test_force_with_a_folder_in_the_way_replaces_nothing(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([str(ckpt), "-o", str(out), "--quant", "F16"]) == 0
    (out / "ck-F32.gguf").mkdir()  # the second target of the next run is a folder
    before = _snapshot(out)
    capsys.readouterr()
    fails([str(ckpt), "-o", str(out), "--quant", "F16", "--quant", "F32", "--force"], capsys,
          "ck-F32.gguf", "nothing was replaced")
    assert _snapshot(out) == before  # the old model, mmproj and manifest, byte for byte; no temporaries


def test_force_when_a_folder_appears_while_converting_replaces_nothing(ckpt: Path, tmp_path: Path) -> None:
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.errors import ConvertError

    out = tmp_path / "out"
    assert main([str(ckpt), "-o", str(out), "--quant", "F16"]) == 0
    before = _snapshot(out)

    def log(message: str) -> None:  # someone creates a folder under an output name mid-run
        if message.startswith("vision projector"):
            (out / "ck-F32.gguf").mkdir()

    with pytest.raises(ConvertError, match=r"ck-F32.gguf: it is not a file \(nothing was replaced\)"):
        convert(ConvertOptions(outdir=out, source=str(ckpt), quants=["F16", "F32"], force=True, log=log))
    (out / "ck-F32.gguf").rmdir()
    assert _snapshot(out) == before
