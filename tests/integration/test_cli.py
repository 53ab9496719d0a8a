"""``web2code`` on the command line, and the pair checks that run before llama.cpp sees a file."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import TinyPair
from web2code.app.engine import clsprobe
from web2code.app.engine.pair import ModelPair, discover, inspect_pair
from web2code.app.errors import ModelError


def web2code(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "web2code.app", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "page.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(path)
    return path


def _pair_args(tp: TinyPair) -> list[str]:
    return ["--model", str(tp.model), "--mmproj", str(tp.mmproj)]


# ------------------------------------------------------------------ pair checks
def _set_pair_id(path: Path, new: str) -> None:
    import gguf

    r = gguf.GGUFReader(str(path), "r+")
    field = r.fields["web2code.pair_id"]
    data = field.parts[field.data[0]]
    assert len(new) == len(data)
    data[:] = np.frombuffer(new.encode(), dtype=np.uint8)
    del r


def test_pair_checks_catch_every_mismatch_before_llama_cpp(tiny_pair: TinyPair, tmp_path: Path) -> None:
    good = ModelPair(tiny_pair.model, tiny_pair.mmproj)
    info = inspect_pair(good)
    assert info.pair_id and info.logit_offset is not None and info.n_embd == info.projector_dim
    assert not info.warnings

    with pytest.raises(ModelError, match="swapped"):
        inspect_pair(ModelPair(tiny_pair.mmproj, tiny_pair.model))
    with pytest.raises(ModelError, match="does not exist"):
        inspect_pair(ModelPair(tmp_path / "missing.gguf", tiny_pair.mmproj))
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(ModelError, match="not a GGUF"):
        inspect_pair(ModelPair(not_gguf, tiny_pair.mmproj))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_pair.model.read_bytes()[:5000])
    with pytest.raises(ModelError, match="damaged or truncated"):
        inspect_pair(ModelPair(truncated, tiny_pair.mmproj))

    # A projector of another width: the probe's 8-wide mmproj.
    probe_model, probe_mmproj = clsprobe.write_probe_files(tmp_path, clsprobe._weights())
    with pytest.raises(ModelError, match="width"):
        inspect_pair(ModelPair(tiny_pair.model, probe_mmproj))

    # Same width but from another conversion: the pair ids differ.
    other = tmp_path / "other-mmproj.gguf"
    shutil.copyfile(tiny_pair.mmproj, other)
    _set_pair_id(other, "0" * len(info.pair_id))
    with pytest.raises(ModelError, match="different conversions"):
        inspect_pair(ModelPair(tiny_pair.model, other))

    # A third-party pair without ids loads with a warning.
    warned = inspect_pair(ModelPair(probe_model, probe_mmproj))
    assert any("pair id" in w for w in warned.warnings)


def test_discover_reads_manifests_and_skips_broken_ones(tiny_pair: TinyPair, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_pair.dir, root / "tiny")
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{")
    pairs = discover(root)
    assert {p.quant for p in pairs} == {"F32", "Q8_0"}
    assert all(p.pair_id == tiny_pair.manifest_data()["pair_id"] for p in pairs)


# ------------------------------------------------------------------ command line
def test_no_speculative_drafts_nothing_and_changes_nothing(tiny_pair: TinyPair, page: Path) -> None:
    runs = {}
    for flag in ((), ("--no-speculative",)):
        r = web2code("generate", str(page), *_pair_args(tiny_pair), "--temperature", "0", "--max-tokens", "24",
                     "--json", *flag)
        assert r.returncode == 0, r.stderr
        runs[bool(flag)] = json.loads(r.stdout)
    assert runs[True]["draft_tokens"] == 0
    assert runs[False]["draft_tokens"] > 0  # the tiny model copies its prompt: drafts are found
    assert runs[True]["token_ids"] == runs[False]["token_ids"]


def test_generate_json_reports_text_ids_and_timings(tiny_pair: TinyPair, page: Path,
                                                    reference_tokenizer: Path) -> None:
    from tests.unit.test_prompt import expected_prompt_token_ids

    r = web2code("generate", str(page), *_pair_args(tiny_pair), "--temperature", "0", "--max-tokens", "12",
                 "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"html", "text", "token_ids", "prompt_token_ids", "n_prompt_tokens", "timings"}
    assert len(out["token_ids"]) == 12
    assert out["prompt_token_ids"] == expected_prompt_token_ids(
        reference_tokenizer, "Please generate html code for the given image")
    n_text = sum(1 for t in out["prompt_token_ids"] if t != -1)
    assert out["n_prompt_tokens"] == n_text + 4  # the tiny tower's 2×2 image positions
    assert set(out["timings"]) == {"load_s", "image_encode_s", "prefill_s", "decode_s", "tokens_per_s"}
    assert out["timings"]["tokens_per_s"] > 0
    assert out["html"].lstrip().lower().startswith(("<!doctype", "<html"))
    # Greedy is deterministic across processes.
    again = json.loads(web2code("generate", str(page), *_pair_args(tiny_pair), "--temperature", "0",
                                "--max-tokens", "12", "--json").stdout)
    assert again["token_ids"] == out["token_ids"]


def test_generate_writes_the_html_file_and_ask_answers(tiny_pair: TinyPair, page: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    r = web2code("generate", str(page), *_pair_args(tiny_pair), "--max-tokens", "8", "-o", str(target))
    assert r.returncode == 0, r.stderr
    assert target.read_text().strip()
    assert r.stdout == ""
    r = web2code("ask", str(page), "What is the main heading?", *_pair_args(tiny_pair), "--max-tokens", "6",
                 "--json")
    assert r.returncode == 0, r.stderr
    ans = json.loads(r.stdout)
    assert len(ans["token_ids"]) == 6
    assert -1 in ans["prompt_token_ids"]


def test_batch_reports_every_input_and_one_failure_does_not_stop_it(tiny_pair: TinyPair, page: Path,
                                                                    tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copyfile(page, inputs / "a.png")
    shutil.copyfile(page, inputs / "b.png")
    (inputs / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    r = web2code("generate", str(inputs), *_pair_args(tiny_pair), "--max-tokens", "6", "--out-dir", str(out))
    assert r.returncode == 1  # one input failed
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 3 and report["ok"] == 2 and report["failed"] == 1
    status = {Path(row["image"]).name: row for row in report["results"]}
    assert status["c.png"]["status"] == "failed" and status["c.png"]["error"]
    assert (out / "a.html").exists() and (out / "b.html").exists() and not (out / "c.html").exists()
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [Path(row["image"]).name for row in rows] == ["a.png", "b.png", "c.png"]


def test_models_list_and_verify(tiny_pair: TinyPair) -> None:
    env = {"WEB2CODE_MODELS_DIR": str(tiny_pair.dir)}
    r = web2code("models", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert {m["quant"] for m in listed} == {"F32", "Q8_0"}
    r = web2code("models", "verify", str(tiny_pair.dir))
    assert r.returncode == 0, r.stderr
    assert "one-token run: ok" in r.stdout
    # Without --models-dir or --model the user data folder is used, and it is empty.
    r = web2code("generate", str(tiny_pair.dir / "manifest.json"))
    assert r.returncode == 2 and "no model pair" in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["generate", "missing.png"], "no such file"),
    (["generate", "{page}", "--model", "{model}"], "--model and --mmproj go together"),
    (["generate", "{page}", "--model", "{mmproj}", "--mmproj", "{model}"], "swapped"),
    (["generate", "{notimage}", "--model", "{model}", "--mmproj", "{mmproj}"], "image"),
    (["generate", "{page}", "--model", "{model}", "--mmproj", "{mmproj}", "--temperature", "-1"], "temperature"),
    (["generate", "{page}", "--model", "{model}", "--mmproj", "{mmproj}", "--gpu-layers", "lots"],
     "--gpu-layers"),
    (["models", "verify", "{model}"], "--mmproj"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tiny_pair: TinyPair, page: Path,
                                          tmp_path: Path) -> None:
    notimage = tmp_path / "notes.png"
    notimage.write_text("this is text")
    subst = {"{page}": str(page), "{model}": str(tiny_pair.model), "{mmproj}": str(tiny_pair.mmproj),
             "{notimage}": str(notimage)}
    r = web2code(*[subst.get(a, a) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------ batch names, signals
def _same_stem_inputs(page: Path, folder: Path) -> None:
    folder.mkdir()
    shutil.copyfile(page, folder / "good.png")
    Image.open(page).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "good.jpg")
    shutil.copyfile(page, folder / "other.png")


def _check_same_stem_outputs(out: Path) -> None:
    report = json.loads((out / "report.json").read_text())
    rows = {Path(row["image"]).name: row for row in report["results"]}
    assert report["ok"] == 3, report
    assert Path(rows["good.png"]["output"]).name == "good.png.html"
    assert Path(rows["good.jpg"]["output"]).name == "good.jpg.html"
    assert Path(rows["other.png"]["output"]).name == "other.html"
    assert sorted(p.name for p in out.glob("*.html")) == ["good.jpg.html", "good.png.html", "other.html"]


def test_batch_inputs_with_the_same_stem_get_distinct_outputs(tiny_pair: TinyPair, page: Path,
                                                              tmp_path: Path) -> None:
    _same_stem_inputs(page, tmp_path / "in")
    out = tmp_path / "out"
    r = web2code("generate", str(tmp_path / "in"), *_pair_args(tiny_pair), "--max-tokens", "4",
                 "--out-dir", str(out))
    assert r.returncode == 0, r.stderr
    _check_same_stem_outputs(out)


def test_batch_with_jobs_names_outputs_the_same_way(tiny_pair: TinyPair, page: Path, tmp_path: Path) -> None:
    from tests.integration.test_backends import _server
    from web2code.app.engine.pair import ModelPair

    _same_stem_inputs(page, tmp_path / "in")
    out = tmp_path / "out"
    with _server(ModelPair(tiny_pair.model, tiny_pair.mmproj)) as (url, _proc):
        r = web2code("generate", str(tmp_path / "in"), "--backend", url, "--jobs", "3", "--max-tokens", "4",
                     "--out-dir", str(out))
    assert r.returncode == 0, r.stderr
    _check_same_stem_outputs(out)


def _slow_args(tiny_pair: TinyPair) -> list[str]:
    # A few seconds a page on the tiny model: 4 variants, one token a step, one thread.
    return [*_pair_args(tiny_pair), "--max-tokens", "2000", "--variants", "4", "--no-speculative",
            "--threads", "1", "--temperature", "0"]


def test_ctrl_c_during_a_batch_writes_the_report_of_what_finished(tiny_pair: TinyPair, page: Path,
                                                                  tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        shutil.copyfile(page, inputs / f"p{i}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "web2code.app", "generate", str(inputs), *_slow_args(tiny_pair),
                             "--out-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "[1/6] p0.png: ok": one image is done, the second is running
        assert first.startswith("[1/6] p0.png: ok"), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True
    status = {Path(row["image"]).name: row["status"] for row in report["results"]}
    assert status["p0.png"] == "ok" and list(status) == [f"p{i}.png" for i in range(6)]
    assert set(status.values()) <= {"ok", "cancelled", "skipped"} and "skipped" in status.values()
    assert report["ok"] == sum(s == "ok" for s in status.values()) < 6
    assert report["failed"] == 0 and report["ok"] + report["cancelled"] + report["skipped"] == 6
    # An output for every page that finished, none for the others, and no temporary files.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", "report.csv", *(f"{Path(n).stem}.html" for n, s in status.items() if s == "ok")])
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert len(rows) == 6


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_during_generate_cancels_cleanly(sig: signal.Signals, code: int, tiny_pair: TinyPair,
                                                  page: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "page.html"
    target.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "web2code.app", "generate", str(page), *_slow_args(tiny_pair),
                             "--stream", "-o", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(1), "nothing was generated"  # it is generating
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == code, text
    assert took < 5, f"took {took:.1f} s to stop"
    assert text.strip().splitlines()[-1] == "interrupted" and "Traceback" not in text
    assert list(target.parent.iterdir()) == []  # no output, not even a temporary one
