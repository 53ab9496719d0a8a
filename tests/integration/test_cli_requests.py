"""The command line's side of requests and batches: the context note, batch names, ``--jobs``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_models import TinyPair
from tests.gui.helpers import page_image
from tests.integration.test_llama_server import pair_dir  # noqa: F401  (the server's pair, built once)
from web2code.app.engine.pair import ModelPair, discover


@pytest.fixture(scope="module")
def server_pair(pair_dir: Path) -> ModelPair:  # noqa: F811
    """A copy-head pair whose output replays the image rows: each page depends on its image."""
    return next(p for p in discover(pair_dir) if p.quant == "F32")


def _web2code(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "web2code.app", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), check=False)


def test_the_max_tokens_note_names_the_loaded_model_s_context(tiny_pair: TinyPair, tmp_path: Path) -> None:
    from web2code.app.engine.pair import discover, inspect_pair

    n_ctx = inspect_pair(discover(tiny_pair.dir)[0]).n_ctx_train
    assert n_ctx == 512  # the tiny pair's own size, not the 7B model's 2048
    img = page_image(tmp_path / "page.png")
    r = _web2code("generate", str(img), "--model", str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj),
                  "--temperature", "0", "--max-tokens", "2000", "-o", str(tmp_path / "page.html"))
    assert r.returncode == 0, r.stderr
    note = next(line for line in r.stderr.splitlines() if "--max-tokens was lowered" in line)
    assert f"{n_ctx}-token" in note and "2048" not in note, note


def test_a_batch_with_jobs_against_a_real_server_equals_the_one_at_a_time_batch(
        server_pair: ModelPair, tmp_path: Path) -> None:
    """``web2code generate A B C --backend URL --jobs 2``: two requests in flight at once (each on its own
    connection), every page written under its own name, each the same page as one at a time writes."""
    import json

    from PIL import Image

    from tests.integration.test_llama_server import llama_server

    images = []
    for i, colour in enumerate(["#000000", "#ffffff", "#ff2000"]):  # flat: they stay apart at the tower's size
        path = tmp_path / "in" / f"shot{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (400, 300), colour).save(path)
        images.append(str(path))
    pages: dict[int, dict[str, str]] = {}
    with llama_server(server_pair, tmp_path / "server.log") as url:
        for jobs in (1, 2):
            out = tmp_path / f"out-{jobs}"
            r = _web2code("generate", *images, "--backend", url, "--jobs", str(jobs), "--out-dir", str(out),
                          "--temperature", "0", "--max-tokens", "12", "--no-score", "--seed", "1",
                          "--model", str(server_pair.model), "--mmproj", str(server_pair.mmproj))
            assert r.returncode == 0, r.stderr
            report = json.loads((out / "report.json").read_text())
            assert report["ok"] == 3, report
            pages[jobs] = {p.name: p.read_text() for p in out.glob("*.html")}
    assert sorted(pages[2]) == ["shot0.html", "shot1.html", "shot2.html"]
    assert pages[2] == pages[1]
    assert len(set(pages[1].values())) > 1  # the pages depend on their images: a mix-up would show
