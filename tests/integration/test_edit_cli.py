"""``web2code edit`` with the real engine (the tiny converted pair): a region of the input goes to the model,
its answer replaces one element, and the rest of the page stays byte-identical.

The tiny model writes random tokens, so what it returns says nothing about quality; what is
proven is the plumbing: the crop reaches llama.cpp, the answer is extracted and spliced into
the right place, the record tells what happened, and bad input is one line and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_models import TinyPair
from web2code.app.edit import locate
from web2code.app.engine.backend import LocalBackend
from web2code.app.engine.events import GenerationParams
from web2code.app.engine.pair import ModelPair
from web2code.app.regions import edit_region

PAGE = (b"<!DOCTYPE html>\r\n<html><head><title>Shop</title></head>\r\n<body>\r\n"
        b"<header><h1>Caf\xe9 Shop</h1></header>\r\n"  # a Latin-1 byte: kept as it is
        b"<main><section class=hero><p>Old hero text<p>second</section>\r\n<ul><li>a<li>b</ul></main>\r\n"
        b"</body></html>\r\n")


def web2code(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "web2code.app", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ}, check=False)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    page = tmp_path / "page.html"
    page.write_bytes(PAGE)
    image = tmp_path / "input.png"
    img = Image.new("RGB", (400, 300), (250, 250, 250))
    img.paste((200, 40, 40), (20, 60, 380, 160))
    img.save(image)
    return page, image


def _pair_args(tp: TinyPair) -> list[str]:
    return ["--model", str(tp.model), "--mmproj", str(tp.mmproj)]


def test_edit_replaces_only_the_element_and_records_the_result(tiny_pair: TinyPair, files: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    page, image = files
    out = tmp_path / "out.html"
    r = web2code("edit", str(page), str(image), "--box", "20,60,360,100", "--element", "1/0",
                 *_pair_args(tiny_pair), "--temperature", "0", "--max-tokens", "24", "--json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    text = PAGE.decode("utf-8", "surrogateescape")
    el = locate(text, [1, 0])
    assert text[el.start:el.end].startswith("<section class=hero>")
    assert record["element"] == [1, 0] and record["tag"] == "section" and record["span"] == [el.start, el.end]
    assert record["crop"] == [20, 60, 380, 160] and record["best_effort"] is False
    assert record["raw"] != "" and record["output"] == str(out)
    new = out.read_bytes()
    head = PAGE[:len(text[:el.start].encode("utf-8", "surrogateescape"))]
    tail = PAGE[len(text[:el.end].encode("utf-8", "surrogateescape")):]
    assert new.startswith(head) and new.endswith(tail)
    assert new[len(head):len(new) - len(tail)].decode("utf-8") == record["replacement"]
    assert page.read_bytes() == PAGE  # the input page is not touched


def test_instruct_sends_the_elements_html_and_is_labelled_best_effort(tiny_pair: TinyPair,
                                                                      files: tuple[Path, Path]) -> None:
    page, image = files
    text = page.read_bytes().decode("utf-8", "surrogateescape")
    with LocalBackend(ModelPair(tiny_pair.model, tiny_pair.mmproj)) as backend:
        result = edit_region(backend, text, Image.open(image), (0, 0, 400, 40), [0, 0],
                             instruction="make the heading blue", params=GenerationParams(temperature=0, max_tokens=8))
    assert result.best_effort and "make the heading blue" in result.instruction
    assert "<h1>Caf\ufffd Shop</h1>" in result.instruction  # the element's HTML went with it (bad byte as U+FFFD)
    assert result.edit.after.startswith(text[:result.edit.span[0]])
    assert result.edit.after.endswith(text[result.edit.span[1]:])
    assert result.edit.notes and "best-effort" in result.edit.notes[0]


def test_edit_picks_the_element_from_the_render_boxes(tiny_pair: TinyPair, files: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    page, image = files
    boxes = tmp_path / "boxes.json"  # rendered 800 px wide: twice the input's size
    boxes.write_text(json.dumps({"width": 800, "boxes": [
        {"path": [1], "tag": "main", "x": 0, "y": 100, "w": 800, "h": 400},
        {"path": [1, 0], "tag": "section", "x": 40, "y": 120, "w": 720, "h": 200},
        {"path": [1, 1], "tag": "ul", "x": 40, "y": 330, "w": 720, "h": 80}]}))
    out = tmp_path / "out.html"
    r = web2code("edit", str(page), str(image), "--box", "20,165,360,40", "--boxes", str(boxes),
                 *_pair_args(tiny_pair), "--temperature", "0", "--max-tokens", "8", "--json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["element"] == [1, 1]


@pytest.mark.parametrize(("args", "message"), [
    (["--box", "1,2,3"], "--box is x,y,w,h"),
    (["--box", "0,0,10,10"], "--element PATH or --boxes"),
    (["--box", "0,0,10,10", "--element", "9"], "no element at 9"),
    (["--box", "0,0,10,10", "--element", "a.b"], "child indexes"),
    (["--box", "900,900,10,10", "--element", "0"], "outside the image"),
    (["--box", "0,0,10,10", "--element", "0", "--instruction", "  "], "instruction is empty"),
])
def test_edit_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tiny_pair: TinyPair,
                                               files: tuple[Path, Path], tmp_path: Path) -> None:
    page, image = files
    out = tmp_path / "out.html"
    r = web2code("edit", str(page), str(image), *args, *_pair_args(tiny_pair), "--max-tokens", "4", "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
