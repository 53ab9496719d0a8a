"""``web2code prepare``, and the preparation stage of ``generate`` and ``ask``, through the real command line."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.images import webpage
from tests.fixtures_models import TinyPair
from tests.integration.test_cli import _pair_args, web2code
from tests.sketch_photos import photo, wireframe
from web2code.app import cli
from web2code.app.engine.backend import LocalBackend, Request
from web2code.app.engine.events import Event
from web2code.app.prepare import prepare_source


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("shots")
    sideways = d / "sketch.jpg"  # stored sideways, with an EXIF orientation, as phones do
    sideways.write_bytes(photo(wireframe(3).image, 3, orientation=6).jpeg)
    page = d / "page.png"
    webpage(1, (800, 600)).save(page)
    return {"photo": sideways, "page": page}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_prepare_writes_exactly_the_prepared_image(shots: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    r = web2code("prepare", str(shots["photo"]), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "photo" and info["changed"] and info["steps"][0] == "exif-orientation 6"
    assert len(info["corners"]) == 4 and info["corners_source"] == "detected"
    expected = prepare_source(shots["photo"]).image
    assert np.array_equal(_pixels(out), np.asarray(expected))
    assert info["size"] == list(expected.size)
    # plain output: the note, then the corners
    r = web2code("prepare", str(shots["photo"]))
    assert r.returncode == 0 and r.stdout.startswith("photo of a sheet:") and "corners: " in r.stdout


def test_prepare_leaves_a_screenshot_as_it_is(shots: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "same.png"
    r = web2code("prepare", str(shots["page"]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "unchanged: a clean digital image (screenshot or drawing)"
    assert np.array_equal(_pixels(out), _pixels(shots["page"]))


def test_prepare_with_corners_from_the_user(shots: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.png"
    r = web2code("prepare", str(shots["page"]), "-o", str(out), "--corners", "100,100,700,120,690,500,90,480",
                 "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["corners_source"] == "user" and info["kind"] == "photo"
    assert out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["missing.png"], "not found"),
    (["{notimage}"], "not an image"),
    (["{page}", "-o", "{tmp}/out.jpg"], "must name a .png"),
    (["{page}", "--corners", "1,2,3"], "eight numbers"),
    (["{page}", "--corners", "0,0,1,0,1,1,0,1"], "convex area"),
])
def test_prepare_bad_input_is_one_line_and_exit_2(args: list[str], message: str, shots: dict[str, Path],
                                                  tmp_path: Path) -> None:
    notimage = tmp_path / "notes.png"
    notimage.write_text("hello")
    args = [a.format(page=shots["page"], notimage=notimage, tmp=tmp_path) for a in args]
    r = web2code("prepare", *args, "-o", str(tmp_path / "x.png")) if "-o" not in args else web2code("prepare", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("x*.png")) and not (tmp_path / "out.jpg").exists()


def test_generate_and_ask_send_the_prepared_image(tiny_pair: TinyPair, shots: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The real CLI and the real engine, in this process; the backend's requests are only recorded.
    (The tiny model's first tokens do not depend on the image, so its output cannot tell.)"""
    seen: list[object] = []
    real_stream = LocalBackend.stream

    def recording(self: LocalBackend, request: Request) -> Iterator[Event]:
        seen.append(request.image)
        return real_stream(self, request)

    monkeypatch.setattr(LocalBackend, "stream", recording)
    prepared_png = tmp_path / "prepared.png"
    assert cli.main(["prepare", str(shots["photo"]), "-o", str(prepared_png)]) == 0
    capsys.readouterr()
    common = [*_pair_args(tiny_pair), "--temperature", "0", "--max-tokens", "2", "--json"]

    assert cli.main(["generate", str(shots["photo"]), *common]) == 0
    sent = seen[-1]
    assert isinstance(sent, Image.Image)
    assert np.array_equal(np.asarray(sent), _pixels(prepared_png))  # what `prepare` writes is what was sent
    out = json.loads(capsys.readouterr().out)
    assert out["prepared"]["kind"] == "photo" and out["prepared"]["changed"]

    assert cli.main(["generate", str(shots["photo"]), *common, "--no-prepare"]) == 0
    assert seen[-1] == shots["photo"]  # the file as it is
    assert json.loads(capsys.readouterr().out)["prepared"] is None

    assert cli.main(["generate", str(shots["page"]), *common]) == 0
    assert seen[-1] == shots["page"]  # a screenshot: nothing to do, the file goes as it is
    assert json.loads(capsys.readouterr().out)["prepared"]["kind"] == "screenshot"

    assert cli.main(["ask", str(shots["photo"]), "What is on the page?", *common]) == 0
    assert isinstance(seen[-1], Image.Image) and np.array_equal(np.asarray(seen[-1]), _pixels(prepared_png))
    assert cli.main(["ask", str(shots["photo"]), "What is on the page?", *common, "--no-prepare"]) == 0
    assert seen[-1] == shots["photo"]
    capsys.readouterr()


def test_generate_says_what_was_prepared(tiny_pair: TinyPair, shots: dict[str, Path], tmp_path: Path) -> None:
    r = web2code("generate", str(shots["photo"]), *_pair_args(tiny_pair), "--max-tokens", "2", "-o",
                 str(tmp_path / "p.html"))
    assert r.returncode == 0, r.stderr
    assert "prepared: photo of a sheet" in r.stderr and r.stdout == ""
    r = web2code("generate", str(shots["photo"]), *_pair_args(tiny_pair), "--max-tokens", "2", "--no-prepare")
    assert r.returncode == 0 and "prepared" not in r.stderr


def test_batch_reports_what_was_done_to_each_image(tiny_pair: TinyPair, shots: dict[str, Path],
                                                   tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, p in shots.items():
        (inputs / f"{name}{p.suffix}").write_bytes(p.read_bytes())
    for flag, expected in (((), {"photo.jpg": "photo: exif-orientation+perspective+lighting+contrast",
                                  "page.png": "screenshot: unchanged"}),
                           (("--no-prepare",), {"photo.jpg": "off", "page.png": "off"})):
        out = tmp_path / f"out{len(flag)}"
        r = web2code("generate", str(inputs), *_pair_args(tiny_pair), "--max-tokens", "4", "--out-dir", str(out),
                     "--no-score", *flag)
        assert r.returncode == 0, r.stderr
        rows = {Path(row["image"]).name: row for row in csv.DictReader((out / "report.csv").open())}
        report = {Path(row["image"]).name: row for row in json.loads((out / "report.json").read_text())["results"]}
        for name, want in expected.items():
            assert rows[name]["prepared"].startswith(want), rows[name]
            assert report[name]["prepared"] == rows[name]["prepared"]
