"""Turn whatever picture the user gives us into the image the model was trained on.

Two stages:

* :func:`load_image` decodes safely and normalizes to a plain RGB image:
  bounded decode (the pixel count is read from the header and checked *before*
  any pixel is decoded), EXIF orientation applied, transparency composited on
  white, palette / CMYK / 16-bit / greyscale / float modes to 8-bit RGB, the
  first frame of an animation. Every user-caused failure is an
  :class:`~web2code.app.errors.ImageError` whose message names the problem.
* :func:`prepare_for_model` reproduces LLaVA-1.5's ``image_aspect_ratio="pad"``
  preprocessing: pad to a square with the CLIP mean colour (``expand2square``),
  then a bicubic resize to the tower's size with Pillow, exactly as
  ``CLIPImageProcessor`` did in training. llama.cpp's clip.cpp instead resizes
  to fit and then pads; on an image that is already square and already the
  tower's size both of its steps are the identity, so handing it our result
  makes the two agree.

:func:`image_fingerprint` keys the engine's cache of encoded images.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "EXACT_PAD_MAX_SIDE",
    "MEAN_RGB",
    "ImageSource",
    "image_fingerprint",
    "load_image",
    "pad_to_square",
    "prepare_for_model",
    "to_png_bytes",
]

ImageSource = Path | str | os.PathLike[str] | bytes | Image.Image

# 80 megapixels: a full-page screenshot of 2560×30000 fits; an RGBA decode of
# that size is ~320 MB, which a desktop machine survives. Above it we refuse
# before decoding rather than let a crafted file allocate gigabytes.
DEFAULT_MAX_PIXELS = 80_000_000

# CLIP's image_mean × 255, rounded as LLaVA does: tuple(int(x*255) for x in image_mean).
MEAN_RGB: tuple[int, int, int] = (122, 116, 104)

# Formats a screenshot, photo or sketch comes in. Restricting the list keeps
# Pillow from handing a file to Ghostscript (EPS) or other exotic decoders.
# (Multi-picture JPEGs from phones, MPO, open through the JPEG decoder.)
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM", "TGA", "AVIF")


def _open_formats() -> list[str]:
    # Pillow raises KeyError for a format name it does not know (AVIF before 11.2).
    Image.init()
    return [f for f in ALLOWED_FORMATS if f in Image.OPEN]

# Padding a 40000×2000 page to a square would allocate 1.6 gigapixels. Above this
# side we first shrink by an integer factor with a box filter; the result then
# differs from LLaVA's own pipeline by a rounding-level amount instead of being
# bit-identical (which only matters for absurdly long images anyway).
EXACT_PAD_MAX_SIDE = 4096

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, KeyError)


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{os.fspath(source)}'"
    return "the image"


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels"


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} is empty ({width}×{height} pixels).")
    if width * height > max_pixels:
        raise ImageError(
            f"{what} is too large: {width}×{height} pixels ({_megapixels(width * height)}); "
            f"the limit is {_megapixels(max_pixels)}. Scale it down or crop it first."
        )


def _open(source: str | os.PathLike[str] | bytes, what: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only): no pixel data is decoded here."""
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{what} is empty (0 bytes).")
        fp: Path | io.BytesIO = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"Image file not found: {what}.")
        if path.is_dir():
            raise ImageError(f"{what} is a folder, not an image file.")
        try:
            if path.stat().st_size == 0:
                raise ImageError(f"{what} is an empty file.")
        except OSError as exc:
            raise ImageError(f"Cannot read {what}: {exc.strerror or exc}.") from exc
        fp = path
    try:
        with warnings.catch_warnings():
            # Our own limit (checked by the caller) decides; Pillow's global one only
            # backs it up for sizes beyond twice its default, where it raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp, formats=_open_formats())
    except Image.DecompressionBombError as exc:
        # Pillow's own limit fired while reading the header (beyond twice its default);
        # its message holds the pixel count.
        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({_megapixels(int(m[1]))})" if m else ""
        raise ImageError(
            f"{what} is too large{size}; the limit is {_megapixels(max_pixels)}. "
            "Scale it down or crop it first."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{what} is not an image, or not in a supported format ({', '.join(ALLOWED_FORMATS)})."
        ) from exc
    except PermissionError as exc:
        raise ImageError(f"Cannot read {what}: permission denied.") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{what} is damaged and cannot be read ({exc}).") from exc


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer and float greyscale to 8-bit, keeping the full range."""
    arr = np.asarray(img)
    if img.mode == "F":
        f = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        # Float images are either 0..1 (scientific convention) or already 0..255.
        scale = 255.0 if f.size and float(f.max()) <= 1.0 else 1.0
        out = np.clip(np.rint(f * scale), 0, 255)
    else:
        v = arr.astype(np.int64)
        if img.mode.startswith("I;16") or (v.size and int(v.max()) > 255):
            # 16-bit range (Pillow opens 16-bit PNG/TIFF as I;16 or as I).
            out = np.clip(v, 0, 65535) // 257
        else:
            out = np.clip(v, 0, 255)
    return Image.fromarray(out.astype(np.uint8))


def _on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _normalize_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, transparency composited on white."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _to_8bit_grey(img).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        # P with a tRNS chunk, and L/RGB with a transparent colour key, also land here.
        return _on_white(img.convert("RGBA"))
    if mode == "RGB":
        return img
    # P, L, 1, CMYK, YCbCr, LAB, HSV: Pillow's own conversions are right for these.
    return img.convert("RGB")


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` (a path, the file's bytes, or a Pillow image) into a clean RGB image.

    Raises :class:`ImageError` when the file is missing, not an image, damaged or
    truncated, empty, or larger than ``max_pixels`` (checked before decoding).
    """
    what = _describe(source)
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, max_pixels, what)
        img = source
        opened: Image.Image | None = None
    else:
        opened = img = _open(source, what, max_pixels)
    try:
        # Header-declared size, before a single pixel is decoded.
        _check_size(img.width, img.height, max_pixels, what)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if getattr(img, "is_animated", False):
                    img.seek(0)  # animations: the first frame
                img.load()
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{what} is too large to decode safely ({exc}).") from exc
        except MemoryError as exc:
            raise ImageError(f"{what} is too large to decode in the memory available.") from exc
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{what} is damaged or truncated and cannot be decoded ({exc}).") from exc
        # Some containers (ICO, TIFF pages) settle their real size only on load.
        _check_size(img.width, img.height, max_pixels, what)
        try:
            # Returns a copy, which also detaches the result from the open file.
            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block must not reject a good picture
            img = img.copy()
        out = _normalize_mode(img)
        if out is source or out is opened:
            out = out.copy()
        return out
    finally:
        if opened is not None:
            opened.close()


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = MEAN_RGB) -> Image.Image:
    """LLaVA's ``expand2square``: the image centred on a square of ``fill``.

    Offsets are ``((s - w) // 2, (s - h) // 2)``, exactly as in LLaVA. A square
    input comes back as a copy.
    """
    w, h = img.size
    if w == h:
        return img.copy()
    side = max(w, h)
    result = Image.new(img.mode, (side, side), fill)
    result.paste(img, ((side - w) // 2, (side - h) // 2))
    return result


def prepare_for_model(
    source: ImageSource,
    image_size: int = 336,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fill: tuple[int, int, int] = MEAN_RGB,
) -> Image.Image:
    """The ``image_size``² RGB image LLaVA-1.5 "pad" preprocessing would feed CLIP.

    Load (see :func:`load_image`), pad to a square with the mean colour, then
    resize with Pillow's bicubic filter, as the training pipeline did.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    img = load_image(source, max_pixels=max_pixels)
    longest = max(img.size)
    if longest > EXACT_PAD_MAX_SIDE:
        # See EXACT_PAD_MAX_SIDE: bound the padded canvas for extreme images.
        factor = math.ceil(longest / EXACT_PAD_MAX_SIDE)
        img = img.reduce(factor)
    square = pad_to_square(img, fill)
    if square.size == (image_size, image_size):
        return square
    return square.resize((image_size, image_size), Image.Resampling.BICUBIC)


def image_fingerprint(img: Image.Image) -> str:
    """A hex digest identifying the pixels (mode, size and data): the encoded-image cache key."""
    h = hashlib.sha256()
    h.update(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def to_png_bytes(img: Image.Image) -> bytes:
    """Lossless PNG bytes of ``img`` (for a remote server, which must see the same pixels)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
