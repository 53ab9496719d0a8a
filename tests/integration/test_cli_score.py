"""``web2code score``, ``generate --pick best`` and the batch report's score column, on the real command line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import fidelity_pages as fp
from tests.fixtures_models import TinyPair
from tests.integration.test_cli import _pair_args, web2code


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated page and a screenshot of it, made by the command line's own renderer."""
    folder = tmp_path_factory.mktemp("score")
    page = folder / "page.html"
    page.write_text(fp.make_site(5).html(), encoding="utf-8")
    png = folder / "page.png"
    code = ("import sys; from web2code.app import cli_score; cli_score.qt_ready();"
            "from web2code.app.ui.render import render_html_sync; from PIL import Image;"
            f"r = render_html_sync(open({str(page)!r}).read(), 900, 700);"
            f"Image.fromarray(r.image).save({str(png)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    return png, page


def test_score_prints_the_overall_and_every_sub_score(shot: tuple[Path, Path], tmp_path: Path) -> None:
    png, page = shot
    r = web2code("score", str(png), str(page), "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["score"] >= 0.9 and obj["mode"] == "text"
    for key in ("block_match", "text", "position", "color", "visual"):
        assert 0.0 <= obj[key] <= 1.0
    assert abs(sum(obj["weights"].values()) - 1.0) < 1e-9
    assert abs(obj["score"] - sum(obj[k] * w for k, w in obj["weights"].items())) < 1e-5
    other = tmp_path / "other.html"
    other.write_text(fp.make_site(99).html(), encoding="utf-8")
    r2 = web2code("score", str(png), str(other), "--json")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["score"] < obj["score"] - 0.2
    plain = web2code("score", str(png), str(page))
    assert plain.returncode == 0 and plain.stdout.split()[0] == f"{obj['score']:.3f}"
    forced = web2code("score", str(png), str(page), "--mode", "layout", "--json")
    assert json.loads(forced.stdout)["mode"] == "layout"


@pytest.mark.parametrize("case", ["no_image", "no_page", "binary_page", "not_an_image", "page_is_folder"])
def test_bad_input_is_one_line_and_exit_2(shot: tuple[Path, Path], tmp_path: Path, case: str) -> None:
    png, page = shot
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01\x02" * 100)
    args = {"no_image": (tmp_path / "nope.png", page), "no_page": (png, tmp_path / "nope.html"),
            "binary_page": (png, bad), "not_an_image": (page, page), "page_is_folder": (png, tmp_path)}[case]
    r = web2code("score", str(args[0]), str(args[1]))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr


def test_pick_best_keeps_the_best_scoring_variant(tiny_pair: TinyPair, shot: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    png, _page = shot
    out = tmp_path / "best.html"
    r = web2code("generate", str(png), *_pair_args(tiny_pair), "--variants", "3", "--pick", "best",
                 "--temperature", "1.0", "--seed", "7", "--max-tokens", "48", "--json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    scores = obj["variant_scores"]
    assert [s["variant"] for s in scores] == [0, 1, 2]
    best = max(scores, key=lambda s: (s["score"], -s["variant"]))
    assert obj["picked_variant"] == best["variant"] and obj["score"] == best["score"]
    assert obj["html"] == obj["variants"][best["variant"]] == out.read_text(encoding="utf-8")
    plain = web2code("generate", str(png), *_pair_args(tiny_pair), "--variants", "3", "--pick", "best",
                     "--temperature", "1.0", "--seed", "7", "--max-tokens", "48", "-o", str(tmp_path / "p.html"))
    assert plain.returncode == 0
    listed = [ln for ln in plain.stderr.splitlines() if "variant" in ln and "score" in ln]
    assert len(listed) == 3 and listed[0].startswith("*")


def test_batch_report_has_a_score_column(tiny_pair: TinyPair, shot: tuple[Path, Path], tmp_path: Path) -> None:
    png, _page = shot
    imgs = tmp_path / "in"
    imgs.mkdir()
    for name in ("a.png", "b.png"):
        (imgs / name).write_bytes(png.read_bytes())
    out = tmp_path / "out"
    r = web2code("generate", str(imgs), *_pair_args(tiny_pair), "--out-dir", str(out), "--max-tokens", "24",
                 "--temperature", "0")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "report.csv").open(encoding="utf-8")))
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= float(row["score"]) <= 1.0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert all("score" in r for r in report["results"])
    r2 = web2code("generate", str(imgs), *_pair_args(tiny_pair), "--out-dir", str(tmp_path / "o2"),
                  "--max-tokens", "8", "--no-score")
    assert r2.returncode == 0
    assert all(not row["score"] for row in csv.DictReader((tmp_path / "o2" / "report.csv").open(encoding="utf-8")))
