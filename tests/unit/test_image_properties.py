"""Property tests for the image loader: any bytes give an RGB image or one ImageError, never anything else.

Real images of every mode and format are built, then truncated, bit-flipped or spliced; random bytes
and corrupted headers are tried too. Bounded so the suite stays fast.
"""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from web2code.app.engine.image import load_image, prepare_for_model
from web2code.app.errors import ImageError

MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F"]
FORMATS = {"PNG": {"RGB", "RGBA", "L", "LA", "P", "1", "I;16"},
           "JPEG": {"RGB", "L", "CMYK"},
           "GIF": {"P", "L"},
           "BMP": {"RGB", "L", "P", "1"},
           "TIFF": {"RGB", "RGBA", "L", "P", "1", "CMYK", "I;16", "I", "F"},
           "WEBP": {"RGB", "RGBA"}}


@st.composite
def encoded_images(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(sorted(FORMATS[fmt])))
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, ValueError, KeyError):  # this Pillow cannot write that mode in that format
        assume(False)
    return buf.getvalue()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(encoded_images()))
    how = draw(st.sampled_from(["truncate", "flip", "splice", "header", "intact"]))
    if how == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "splice":
        junk = draw(st.binary(min_size=1, max_size=64))
        i = draw(st.integers(0, len(data)))
        data[i:i] = junk
    elif how == "header":
        data = bytearray(data[:16]) + draw(st.binary(max_size=256))
    return bytes(data)


def _check(data: bytes) -> None:
    try:
        img = load_image(data)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line for the user
        return
    assert img.mode == "RGB" and img.width >= 1 and img.height >= 1
    ready = prepare_for_model(img, image_size=28)
    assert ready.mode == "RGB" and ready.size == (28, 28)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_images_load_as_rgb_or_fail_with_one_image_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_but_image_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=60, deadline=None, database=None)
@given(encoded_images())
def test_intact_images_of_every_mode_and_format_load(data: bytes) -> None:
    img = load_image(data)
    assert img.mode == "RGB"
