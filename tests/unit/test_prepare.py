"""Input preparation (app/prepare.py): photos of sketches come back flat and clean, screenshots untouched."""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from bench.images import webpage
from tests.sketch_photos import Photo, ink_mask, photo, wireframe
from web2code.app.engine.image import load_image
from web2code.app.errors import ImageError
from web2code.app.prepare import CornersError, Prepared, prepare, prepare_source


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def ink_f1(result: Image.Image, drawing: Image.Image, tolerance: int = 3) -> tuple[float, float, float]:
    """F1 of the result's ink against the drawing's: both cropped to their ink, the result resized to
    the drawing's crop; a pixel of ink counts when the other side has ink within ``tolerance`` pixels."""
    truth = ink_mask(drawing)
    x0, y0, x1, y1 = _bbox(truth)
    truth = truth[y0:y1, x0:x1]
    found = ink_mask(result)
    if not found.any():
        return 0.0, 0.0, 0.0
    crop = result.crop(_bbox(found)).resize((truth.shape[1], truth.shape[0]), Image.Resampling.BILINEAR)
    found = ink_mask(crop)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1,) * 2)
    near_truth = cv2.dilate(truth.astype(np.uint8), k) > 0
    near_found = cv2.dilate(found.astype(np.uint8), k) > 0
    precision = float((found & near_truth).sum() / max(1, found.sum()))
    recall = float((truth & near_found).sum() / max(1, truth.sum()))
    return 2 * precision * recall / max(1e-9, precision + recall), precision, recall


ORIENTATIONS = [1, 6, 8, 3]


def _case(seed: int) -> tuple[Image.Image, Photo, int]:
    size = (900, 640) if seed % 3 else (640, 900)
    drawing = wireframe(seed, size).image
    orientation = ORIENTATIONS[seed % 4]
    return drawing, photo(drawing, seed, orientation=orientation, quality=68 + 2 * seed), orientation


@pytest.fixture(scope="module")
def cases() -> list[tuple[Image.Image, Photo, int]]:
    return [_case(seed) for seed in range(12)]


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


# ------------------------------------------------------------------ photos
def test_photos_of_wireframes_come_back_flat_upright_and_cropped(cases: list[tuple[Image.Image, Photo, int]]) -> None:
    prepared_f1, raw_f1 = [], []
    for seed, (drawing, shot, orientation) in enumerate(cases):
        result = prepare(shot.open())
        f1, p, r = ink_f1(result.image, drawing)
        raw = ink_f1(ImageOps.exif_transpose(shot.open()), drawing)[0]
        prepared_f1.append(f1)
        raw_f1.append(raw)
        print(f"seed {seed:2}: F1 {f1:.3f} (P {p:.3f}, R {r:.3f}); unprepared {raw:.3f}; {result.summary}")
        assert result.kind == "photo", result.note
        assert ("exif-orientation" in result.steps[0]) == (orientation != 1)
        assert {"perspective", "lighting", "contrast", "crop"} <= {s.split(" ")[0] for s in result.steps}
        assert result.image.mode == "RGB"
        assert result.corners is not None and result.corners_source == "detected"
    mean, low = float(np.mean(prepared_f1)), float(np.min(prepared_f1))
    print(f"ink F1 over {len(cases)} photos: mean {mean:.3f}, min {low:.3f}; unprepared mean {np.mean(raw_f1):.3f}")
    assert mean >= 0.85
    assert low >= 0.6
    assert np.mean(raw_f1) < 0.6  # the measure sees the desk and the keystone: it can tell


def test_the_detected_sheet_is_where_the_paper_lies(cases: list[tuple[Image.Image, Photo, int]]) -> None:
    for _, shot, _ in cases[:6]:
        result = prepare(shot.open())
        assert result.corners is not None
        w, h = result.source_size
        err = np.hypot(*(np.asarray(result.corners) - np.asarray(shot.sheet)).T).max()
        assert err <= 0.015 * math.hypot(w, h), (result.corners, shot.sheet)


def test_coloured_ink_keeps_its_colour() -> None:
    drawing = wireframe(5).image
    result = prepare(photo(drawing, 5).open())
    truth = ink_mask(drawing)
    x0, y0, x1, y1 = _bbox(truth)
    found = ink_mask(result.image)
    out = np.asarray(result.image.crop(_bbox(found)).resize((x1 - x0, y1 - y0)), dtype=np.int16)
    ref = np.asarray(drawing, dtype=np.int16)[y0:y1, x0:x1]
    coloured = (ref.max(axis=2) - ref.min(axis=2) > 120) & (cv2.erode(truth[y0:y1, x0:x1].astype(np.uint8),
                                                                       np.ones((3, 3), np.uint8)) > 0)
    assert coloured.sum() > 200
    dominant = ref[coloured].mean(axis=0).argmax()  # which channel the marker is
    got = out[coloured].mean(axis=0)
    assert got.argmax() == dominant and got.max() - got.min() > 40, got
    # and the paper is white, not the grey-yellow of a dim photo
    paper = ~cv2.dilate(found.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.asarray(result.image)[paper].mean() > 250


def test_corners_from_the_user_replace_the_detection() -> None:
    drawing = wireframe(7).image
    shot = photo(drawing, 7)
    result = prepare(shot.open(), corners=list(reversed(shot.sheet)))  # any order
    assert result.corners_source == "user" and "perspective (corners from the user)" in result.steps
    assert np.allclose(result.corners, shot.sheet, atol=0.1)
    assert ink_f1(result.image, drawing)[0] >= 0.9
    # corners on a screenshot: the user asked for it, so the screenshot check does not apply
    page = webpage(0, (800, 600))
    forced = prepare(page, corners=[(100, 100), (700, 100), (700, 500), (100, 500)])
    assert forced.kind == "photo" and forced.changed


def test_a_sheet_that_is_still_turned_is_deskewed() -> None:
    drawing = wireframe(2).image
    shot = photo(drawing, 2, angle=0.0)
    q = np.asarray(shot.sheet)
    c = q.mean(axis=0)
    t = math.radians(3.0)
    turned = (q - c) @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]]) + c
    result = prepare(shot.open(), corners=turned.tolist())
    skews = [s for s in result.steps if s.startswith("deskew")]
    assert skews, result.steps
    assert abs(abs(result.details["skew_degrees"]) - 3.0) < 0.6
    assert ink_f1(result.image, drawing)[0] >= 0.85


@pytest.mark.parametrize("corners", [
    [(0, 0), (10, 0), (10, 10)],  # three points
    [(0, 0), (1, 0), (1, 1), (0, 1)],  # a speck
    [(0, 0), (500, 500), (500, 0), (0, 500)] * 1,  # fine: any order is sorted, so this one is valid
    [(0, 0), (math.nan, 0), (9, 9), (0, 9)],
    "abcd",
])
def test_corners_that_are_no_quadrilateral_are_refused(corners: object) -> None:
    img = Image.new("RGB", (600, 600), (200, 200, 200))
    if corners == [(0, 0), (500, 500), (500, 0), (0, 500)]:
        assert prepare(img, corners=corners).corners_source == "user"  # type: ignore[arg-type]
        return
    with pytest.raises(CornersError):
        prepare(img, corners=corners)  # type: ignore[arg-type]


def test_the_output_is_capped() -> None:
    shot = photo(wireframe(1).image, 1)
    result = prepare(shot.open(), max_side=500)
    assert max(result.image.size) <= 500
    assert max(prepare(shot.open()).image.size) <= 2048


# ------------------------------------------------------------------ left alone
def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    out = Image.open(io.BytesIO(buf.getvalue()))
    out.load()
    return out


def _screenshots() -> list[tuple[str, Image.Image]]:
    shots = [(f"page {s}", webpage(s)) for s in range(4)]
    shots += [(f"page {s} as JPEG q{q}", _jpeg(webpage(s), q)) for s, q in ((0, 60), (1, 75), (2, 95))]
    shots += [("a drawing made on a computer", wireframe(3).image), ("the same as JPEG", _jpeg(wireframe(3).image, 80))]
    small = webpage(1, (640, 400)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    shots.append(("a palette PNG", small))
    # a page with a gradient band and a photograph in it: still a screenshot
    a = np.asarray(webpage(2)).copy()
    yy, xx = np.mgrid[0:300, 0:1280]
    a[100:400] = np.stack([xx / 1280 * 255, yy / 300 * 255, np.full_like(xx, 180)], -1).astype(np.uint8)
    a[500:800, 100:600] = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    shots.append(("a page with a gradient and a photo", Image.fromarray(a)))
    return shots


def test_screenshots_come_back_pixel_identical() -> None:
    for name, shot in _screenshots():
        result = prepare(shot)
        assert result.kind == "screenshot", (name, result.note, result.details)
        assert not result.changed and result.steps == ()
        assert _same_pixels(result.image, load_image(shot)), name
        if shot.mode == "RGB":
            assert result.image is shot  # not even a copy
    print("screenshots identical:", len(_screenshots()))


def test_a_sideways_screenshot_is_only_turned_upright() -> None:
    page = webpage(0, (800, 500))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    page.transpose(Image.Transpose.ROTATE_90).save(buf, "PNG", exif=exif.tobytes())
    result = prepare(Image.open(io.BytesIO(buf.getvalue())))
    assert result.kind == "screenshot" and result.steps == ("exif-orientation 6",)
    assert _same_pixels(result.image, page)


@pytest.mark.parametrize(("name", "img", "kind"), [
    ("white", Image.new("RGB", (800, 600), (255, 255, 255)), "blank"),
    ("grey with a little noise", Image.fromarray(np.random.default_rng(1).normal(128, 1.0, (600, 800, 3))
                                                  .clip(0, 255).astype(np.uint8)), "blank"),
    ("tiny", Image.new("RGB", (20, 20), (10, 200, 30)), "tiny"),
    ("one pixel", Image.new("RGB", (1, 1)), "tiny"),
    ("a thin strip", Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 3000, 3), dtype=np.uint8)),
     "tiny"),
    ("noise", Image.fromarray(np.random.default_rng(3).integers(0, 256, (600, 800, 3), dtype=np.uint8)),
     "unrecognised"),
    ("empty", Image.new("RGB", (0, 0)), "unrecognised"),
])
def test_what_cannot_be_prepared_passes_through_with_a_note(name: str, img: Image.Image, kind: str) -> None:
    result = prepare(img)
    assert result.kind == kind, (name, result.note)
    assert result.note.startswith(("unchanged", "not prepared"))
    assert not result.changed
    assert result.image.size == img.size
    assert np.array_equal(np.asarray(result.image), np.asarray(img.convert("RGB")))


def test_a_photo_of_no_sheet_is_left_alone() -> None:
    """A camera picture with no paper in it (a textured scene): no sheet found, nothing changed."""
    rng = np.random.default_rng(4)
    low = cv2.resize(rng.normal(120, 40, (12, 16, 3)).astype(np.float32), (1600, 1200), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(low + rng.normal(0, 4, low.shape), 0, 255).astype(np.uint8)
    img = _jpeg(Image.fromarray(scene), 85)
    result = prepare(img)
    assert result.kind == "unrecognised" and not result.changed
    assert result.image is img


def test_prepared_reports_itself() -> None:
    result = prepare(photo(wireframe(0).image, 0).open())
    d = result.to_dict()
    assert d["kind"] == "photo" and d["changed"] and len(d["corners"]) == 4
    assert d["size"] == list(result.image.size) and d["source_size"] == list(result.source_size)
    assert result.summary.startswith("photo: perspective+lighting+contrast")
    assert isinstance(result, Prepared)
    assert prepare(webpage(0)).summary == "screenshot: unchanged"


# ------------------------------------------------------------------ never raises
@st.composite
def _images(draw: st.DrawFn) -> Image.Image:
    w = draw(st.integers(1, 200))
    h = draw(st.integers(1, 200))
    kind = draw(st.sampled_from(["noise", "flat", "blocks", "gradient"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif kind == "flat":
        a = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    elif kind == "blocks":
        a = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w].astype(np.uint8)
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], -1).astype(np.uint8)
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P"]))
    img = Image.fromarray(a)
    return img.convert(mode) if mode != "RGB" else img


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_images())
def test_prepare_never_raises_and_keeps_what_it_does_not_change(img: Image.Image) -> None:
    result = prepare(img)
    assert result.image.mode == "RGB"
    assert result.note
    if not result.changed:
        assert _same_pixels(result.image, load_image(img))


def test_prepare_source_loads_like_the_engine_and_records_the_orientation(tmp_path: Path) -> None:
    shot = photo(wireframe(4).image, 4, orientation=8)
    path = tmp_path / "p.jpg"
    path.write_bytes(shot.jpeg)
    for source in (path, str(path), shot.jpeg):
        result = prepare_source(source)
        assert result.steps[0] == "exif-orientation 8" and result.kind == "photo"
        assert _same_pixels(result.image, prepare(shot.open()).image)
    with pytest.raises(ImageError):
        prepare_source(tmp_path / "missing.png")
