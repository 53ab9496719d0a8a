"""A real llama-server, built from our patched llama.cpp, serving the tiny pair on 127.0.0.1.

llama-server renders the GGUF's own chat template in llama.cpp's Jinja engine and
swaps its media marker for the image: these tests check the prompt it renders is
the training text, and that RemoteBackend's greedy output from it equals the
local engine's token for token. The tiny pair's copy head makes the output
depend on the prompt, so a template that is off by one newline fails; a pair
carrying the old converter's template shows that, and ``web2code models verify
--fix`` mends it in place.

The executable comes from ``$WEB2CODE_LLAMA_SERVER`` (``./dev.sh test`` builds it
once per build key and sets it) or from build_wheel.py's cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.unit.test_chat_template import OLD_CONVERTER_TEMPLATE
from web2code.app.cli import main as web2code_main
from web2code.app.engine.backend import Backend, LocalBackend, Request
from web2code.app.engine.chat_template import rewrite_chat_template
from web2code.app.engine.events import Finished, GenerationParams, Token
from web2code.app.engine.pair import ModelPair, discover, inspect_pair
from web2code.app.engine.prompt import DEFAULT_INSTRUCTION, Exchange, build_prompt
from web2code.app.engine.remote import RemoteBackend
from web2code.app.engine.session import EngineOptions

REPO = Path(__file__).resolve().parents[2]
SERVER_ENV = "WEB2CODE_LLAMA_SERVER"
N_TOKENS = 24
HISTORY = (Exchange("What is the title of this page?", "Acme Tools"),)
FOLLOW_UP = "Which colour is the button?"


def _server_exe() -> Path:
    env = os.environ.get(SERVER_ENV)
    if env:
        exe = Path(env)
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            pytest.fail(f"{SERVER_ENV}={env} is not an executable file")
        return exe
    spec = importlib.util.spec_from_file_location("w2c_build_wheel", REPO / "packaging/llama.cpp/build_wheel.py")
    assert spec and spec.loader
    bw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bw)
    exe = bw.server_path()
    if not exe.is_file():
        pytest.skip(f"llama-server is not built; ./dev.sh test builds it, or: "
                    f"{sys.executable} packaging/llama.cpp/build_wheel.py --server")
    return Path(exe)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def llama_server(pair: ModelPair, log: Path) -> Iterator[str]:
    """``llama-server -m M --mmproj P`` on a free loopback port, run as the local engine runs the pair."""
    opts = EngineOptions(n_gpu_layers=0)
    port = _free_port()
    cmd = [str(_server_exe()), "-m", str(pair.model), "--mmproj", str(pair.mmproj),
           "--host", "127.0.0.1", "--port", str(port), "-np", "1", "-t", str(opts.threads()),
           "-b", str(opts.n_batch), "-ub", str(opts.n_ubatch), "-fa", "off", "-ngl", "0",
           "--no-warmup", "--no-webui", "--offline"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.HTTPError):
                pass
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited ({proc.returncode}): {log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server did not become ready: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (336, 336, 3), dtype=np.uint8))


REQUESTS = {
    # one image turn: the HTML instruction
    "generate": Request(_image(), GenerationParams(temperature=0.0, max_tokens=N_TOKENS, seed=1)),
    # the text path: an earlier exchange and a follow-up question, sent as plain-string turns
    "ask-history": Request(_image(), GenerationParams(temperature=0.0, max_tokens=N_TOKENS, seed=1,
                                                      instruction=FOLLOW_UP), "ask", HISTORY),
}


def _pieces(backend: Backend, request: Request) -> tuple[list[str], str]:
    """The streamed token texts and why generation ended."""
    events = list(backend.stream(request))
    assert isinstance(events[-1], Finished), events[-1]
    return [e.text for e in events if isinstance(e, Token)], events[-1].stats.finish_reason


#: The copy head attends this far back, so the first generated tokens replay the image rows and
#: then the text after the image (tests/integration/test_engine.py): every prompt token counts.
#: (The session's tiny_pair copies 3 back and answers "ASSISTANT:" to any template.)
COPY_DISTANCE = 20


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> Path:
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.synthetic import write_checkpoint

    root = tmp_path_factory.mktemp("server-pair")
    ckpt = write_checkpoint(root / "ckpt", seed=1, tokenizer_json=reference_tokenizer, copy_distance=COPY_DISTANCE)
    convert(ConvertOptions(outdir=root / "out", source=str(ckpt), quants=["F32", "F16"], name="tiny-server"))
    return root / "out"


@pytest.fixture(scope="module")
def pair(pair_dir: Path) -> ModelPair:
    return next(p for p in discover(pair_dir) if p.quant == "F32")


@pytest.fixture(scope="module")
def local_pieces(pair: ModelPair) -> dict[str, tuple[list[str], str]]:
    """The local engine's greedy tokens for each request (what every server must reproduce)."""
    with LocalBackend(pair, EngineOptions(n_gpu_layers=0)) as local:
        out = {name: _pieces(local, req) for name, req in REQUESTS.items()}
    # Sensitive outputs, not one token repeated: the copy head replays the image rows and the prompt.
    assert out["generate"][1] == "length" and len(set(out["generate"][0])) > 8, out
    # The follow-up replays the earlier answer and then the "</s>" after it, token 2, and stops there.
    assert out["ask-history"][1] == "stop" and "Tools" in "".join(out["ask-history"][0]), out
    return out


@pytest.fixture(scope="module")
def server(pair: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(pair, tmp_path_factory.mktemp("server") / "llama-server.log") as url:
        yield url


# ------------------------------------------------------------------ the prompt llama-server renders
IMAGE_URL = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TEXT = {"type": "text", "text": DEFAULT_INSTRUCTION}
CHATS = {
    "image-first": ([{"role": "user", "content": [IMAGE_URL, TEXT]}], build_prompt()),
    "image-last": ([{"role": "user", "content": [TEXT, IMAGE_URL]}], build_prompt()),
    "system": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": [IMAGE_URL, TEXT]}],
               build_prompt(system="Be brief.")),
    "several-turns": ([{"role": "user", "content": [{"type": "text", "text": "Title?"}, IMAGE_URL]},
                       {"role": "assistant", "content": "Acme"},
                       {"role": "user", "content": "Logo?"},
                       {"role": "assistant", "content": [{"type": "text", "text": "Top left."}]},
                       {"role": "user", "content": [{"type": "text", "text": "Button?"}]}],
                      build_prompt("Button?", [Exchange("Title?", "Acme"), Exchange("Logo?", "Top left.")])),
}


@pytest.mark.parametrize("chat", CHATS)
def test_llama_server_renders_the_training_prompt(server: str, chat: str) -> None:
    messages, expected = CHATS[chat]
    marker = _get(server + "/props")["media_marker"]
    assert marker.startswith("<__media_") and marker.endswith("__>")
    rendered = _post(server + "/apply-template", {"messages": messages})["prompt"]
    assert rendered == expected.text(image_marker=marker)


# ------------------------------------------------------------------ greedy parity
@pytest.mark.parametrize("request_name", REQUESTS)
def test_remote_greedy_output_equals_the_local_engine(server: str, pair: ModelPair,
                                                      local_pieces: dict[str, tuple[list[str], str]],
                                                      request_name: str) -> None:
    remote = RemoteBackend(server, logit_offset=inspect_pair(pair).logit_offset)
    assert _pieces(remote, REQUESTS[request_name]) == local_pieces[request_name]


# ------------------------------------------------------------------ a pair from an older converter
def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_old_template_breaks_parity_and_verify_fix_mends_it(pair_dir: Path,
                                                            local_pieces: dict[str, tuple[list[str], str]],
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old"
    shutil.copytree(pair_dir, old)
    # What an older web2code-convert wrote: its own template, the manifest's checksums true to it.
    manifest = json.loads((old / "manifest.json").read_text())
    for entry in manifest["models"]:
        entry["sha256"] = rewrite_chat_template(old / entry["file"], OLD_CONVERTER_TEMPLATE)
    (old / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    old_pair = next(p for p in discover(old) if p.quant == "F32")
    assert any("outdated chat template" in w for w in inspect_pair(old_pair).warnings)

    request = REQUESTS["generate"]
    offset = inspect_pair(old_pair).logit_offset
    with llama_server(old_pair, tmp_path / "old.log") as url:
        # The parity test tells a wrong template: the same weights give other tokens.
        assert _pieces(RemoteBackend(url, logit_offset=offset), request) != local_pieces["generate"]

    assert web2code_main(["models", "verify", str(old), "--fix", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(Path(p).name for p in result["fixed"]) == sorted(e["file"] for e in manifest["models"])
    assert not any("chat template" in w for w in result["warnings"])
    fixed_manifest = json.loads((old / "manifest.json").read_text())
    for entry in fixed_manifest["models"]:
        path = old / entry["file"]
        assert entry["sha256"] == _file_sha256(path)
        # Only the template moved: the fixed file is the converter's own file again, byte for byte.
        assert entry["sha256"] == _file_sha256(pair_dir / entry["file"])
    assert fixed_manifest["mmproj"] == manifest["mmproj"]
    assert not [p for p in old.iterdir() if p.name.startswith(".")]  # no temporaries left

    with llama_server(old_pair, tmp_path / "fixed.log") as url:
        assert _pieces(RemoteBackend(url, logit_offset=offset), request) == local_pieces["generate"]


# ------------------------------------------------------------------ the cached build
def test_a_cached_server_is_reused_without_a_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("w2c_build_wheel", REPO / "packaging/llama.cpp/build_wheel.py")
    assert spec and spec.loader
    bw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bw)
    monkeypatch.setenv("WEB2CODE_WHEEL_CACHE", str(tmp_path))
    key = bw.build_key()
    cached = bw.server_path()
    assert cached == tmp_path / "tools" / key / "llama-server"  # keyed like the wheel
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    monkeypatch.setenv("PATH", "")  # no cmake, no compiler: a build could not even start
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    assert bw.main(["--server"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(cached)
    cached.unlink()
    assert bw.main(["--server"]) == 2  # not cached: the build needs a compiler, said in one line
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "compiler" in err[-1]
    assert not list((tmp_path / "tools" / key).iterdir())  # nothing half-built left in the cache
