"""Image preprocessing: every awkward input a user can drop on the window has an expected result."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from web2code.app.engine.image import (
    MEAN_RGB,
    image_fingerprint,
    load_image,
    pad_to_square,
    prepare_for_model,
    to_png_bytes,
)
from web2code.app.errors import ImageError, Web2CodeError

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


def _png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``×``height`` RGB pixels, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 2) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------- orientation


def test_exif_orientation_6_is_applied_so_the_left_half_ends_on_top(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "photo.jpg"
    img.save(path, format="JPEG", exif=exif, quality=95)

    out = load_image(path)

    assert out.mode == "RGB"
    assert out.size == (20, 40)
    assert _close(out.getpixel((10, 5)), RED, tol=10)
    assert _close(out.getpixel((10, 35)), BLUE, tol=10)


def test_broken_exif_does_not_reject_the_picture() -> None:
    img = Image.new("RGB", (8, 8), RED)
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation: ignored
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    out = load_image(buf.getvalue())
    assert out.size == (8, 8)


# -------------------------------------------------------------- transparency


def test_rgba_transparent_pixels_become_white_and_half_alpha_blends_with_white() -> None:
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 255))
    img.putpixel((2, 0), (255, 0, 0, 128))
    out = load_image(_png(img))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == RED
    assert _close(out.getpixel((2, 0)), (255, 127, 127))


def test_la_greyscale_with_alpha_is_composited_on_white() -> None:
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (0, 255))
    out = load_image(img)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (0, 0, 0)


def test_palette_image_with_a_transparent_index_shows_white_there() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 255, 0, 0, 0, 0] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 0)  # green
    img.putpixel((1, 0), 1)  # black, marked transparent
    img.info["transparency"] = 1
    data = _png(img, transparency=1)
    assert Image.open(io.BytesIO(data)).mode == "P"

    out = load_image(data)

    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == GREEN
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_palette_image_without_transparency_keeps_its_colours() -> None:
    img = Image.new("RGB", (2, 1), RED).convert("P")
    out = load_image(_png(img))
    assert out.getpixel((1, 0)) == RED


# ------------------------------------------------------------------- modes


def test_cmyk_tiff_is_converted_to_rgb(tmp_path: Path) -> None:
    img = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    path = tmp_path / "print.tif"
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == RED


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buf, format="JPEG", quality=95)
    out = load_image(buf.getvalue())
    assert out.mode == "RGB"
    assert _close(out.getpixel((8, 8)), RED, tol=8)


def test_16_bit_greyscale_png_keeps_its_full_range() -> None:
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    data = _png(img)
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I")

    out = load_image(data)

    assert out.mode == "RGB"
    assert [out.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_32_bit_integer_greyscale_above_255_is_treated_as_16_bit() -> None:
    img = Image.new("I", (2, 1))
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 65535)
    out = load_image(img)
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_float_image_in_unit_range_is_scaled_to_8_bit() -> None:
    img = Image.new("F", (2, 1))
    img.putpixel((0, 0), 0.0)
    img.putpixel((1, 0), 1.0)
    out = load_image(img)
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_grey_rgb(mode: str) -> None:
    img = Image.new(mode, (2, 1), 0)
    img.putpixel((1, 0), 255 if mode == "L" else 1)
    out = load_image(_png(img))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, GREEN, BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 3

    out = load_image(buf.getvalue())

    assert out.mode == "RGB"
    assert out.getpixel((4, 4)) == RED


def test_a_pillow_image_passed_in_is_not_modified() -> None:
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    out = load_image(img)
    assert out is not img
    assert img.mode == "RGBA" and img.getpixel((0, 0)) == (0, 0, 0, 0)
    rgb = Image.new("RGB", (2, 2), RED)
    assert load_image(rgb) is not rgb


# ------------------------------------------------------------------- sizes


def test_one_by_one_image_becomes_a_uniform_model_image() -> None:
    out = prepare_for_model(Image.new("RGB", (1, 1), (10, 200, 30)))
    assert out.size == (336, 336)
    assert out.mode == "RGB"
    colours = out.getcolors()
    assert colours is not None and len(colours) == 1 and colours[0][1] == (10, 200, 30)


def test_very_wide_image_is_padded_with_the_mean_colour_above_and_below() -> None:
    wide = Image.new("RGB", (4000, 20), RED)
    square = pad_to_square(wide)
    assert square.size == (4000, 4000)
    top = (4000 - 20) // 2  # LLaVA's expand2square offset
    assert square.getpixel((2000, 0)) == MEAN_RGB
    assert square.getpixel((2000, top - 1)) == MEAN_RGB
    assert square.getpixel((2000, top)) == RED
    assert square.getpixel((2000, top + 19)) == RED
    assert square.getpixel((2000, top + 20)) == MEAN_RGB
    assert square.getpixel((2000, 3999)) == MEAN_RGB

    out = prepare_for_model(wide)

    assert out.size == (336, 336)
    assert out.getpixel((168, 0)) == MEAN_RGB
    assert out.getpixel((168, 335)) == MEAN_RGB
    middle = out.getpixel((168, 168))
    assert middle[0] > 200 and middle[1] < 60 and middle[2] < 60


def test_tall_image_is_centered_horizontally() -> None:
    tall = Image.new("RGB", (3, 10), BLUE)
    square = pad_to_square(tall)
    assert square.size == (10, 10)
    assert [square.getpixel((x, 5)) for x in range(10)] == [MEAN_RGB] * 3 + [BLUE] * 3 + [MEAN_RGB] * 4


def test_pad_then_resize_equals_llava_pipeline_exactly() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (50, 120, 3), dtype=np.uint8))
    expected = pad_to_square(img).resize((336, 336), Image.Resampling.BICUBIC)
    assert prepare_for_model(img).tobytes() == expected.tobytes()


def test_extremely_wide_image_is_prepared_without_a_gigapixel_canvas() -> None:
    t0 = time.perf_counter()
    out = prepare_for_model(Image.new("RGB", (10000, 10), GREEN))
    assert time.perf_counter() - t0 < 5
    assert out.size == (336, 336)
    assert out.getpixel((168, 0)) == MEAN_RGB


def test_square_model_sized_image_passes_through_unchanged() -> None:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (336, 336, 3), dtype=np.uint8))
    assert prepare_for_model(img).tobytes() == img.tobytes()


def test_image_over_the_pixel_limit_is_refused_from_its_header_with_the_sizes() -> None:
    data = _png_header_only(10000, 10000)  # 100 MP: over our 80 MP limit, under Pillow's error
    with pytest.raises(ImageError, match=r"10000×10000.*limit is 80\.0 megapixels"):
        load_image(data)


def test_gigantic_header_is_refused_quickly_without_allocating() -> None:
    data = _png_header_only(1_000_000, 1_000_000)
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match="too large"):
        load_image(data)
    assert time.perf_counter() - t0 < 1


def test_a_lower_pixel_limit_is_honoured() -> None:
    with pytest.raises(ImageError, match="too large"):
        load_image(_png(Image.new("RGB", (20, 20))), max_pixels=100)


def test_zero_sized_image_object_is_refused() -> None:
    with pytest.raises(ImageError, match="empty"):
        load_image(Image.new("RGB", (0, 5)))


# ------------------------------------------------------------------ damage


def test_truncated_png_is_an_image_error_naming_the_damage() -> None:
    rng = np.random.default_rng(2)
    data = _png(Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match=r"damaged|truncated"):
        load_image(data[: len(data) // 2])


def test_truncated_jpeg_is_an_image_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[:2000])
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


def test_a_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, this is not a picture")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_bytes_that_are_not_an_image() -> None:
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"GIF89a? no")


@pytest.mark.parametrize("make", ["missing", "empty", "folder"])
def test_missing_empty_or_folder_path_is_a_clear_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x.png"
    if make == "empty":
        path.write_bytes(b"")
    elif make == "folder":
        path.mkdir()
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert {"missing": "not found", "empty": "empty", "folder": "folder"}[make] in str(info.value)
    assert "\n" not in str(info.value)


def test_image_errors_are_user_facing_errors() -> None:
    with pytest.raises(Web2CodeError) as info:
        load_image(b"")
    assert info.value.exit_code == 2


def test_eps_is_not_handed_to_ghostscript() -> None:
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")


# ------------------------------------------------------------- fingerprint


def test_fingerprint_depends_on_pixels_mode_and_size() -> None:
    a = Image.new("RGB", (4, 4), RED)
    assert image_fingerprint(a) == image_fingerprint(a.copy())
    b = a.copy()
    b.putpixel((3, 3), (254, 0, 0))
    assert image_fingerprint(a) != image_fingerprint(b)
    assert image_fingerprint(Image.new("RGB", (2, 8), RED)) != image_fingerprint(a)
    assert image_fingerprint(Image.new("L", (4, 4))) != image_fingerprint(Image.new("P", (4, 4)))


def test_png_bytes_round_trip_losslessly() -> None:
    rng = np.random.default_rng(4)
    img = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8))
    assert load_image(to_png_bytes(img)).tobytes() == img.tobytes()
