"""The image as the model sees it, made where the picture is, so a process boundary carries only that.

The window holds the user's picture (a 4000×3000 screenshot is 36 MB of pixels);
the model sees a padded square at its vision tower's size (image.prepare_for_model).
:func:`model_image` makes that square on the caller's side of the worker pipe,
together with what the engine would otherwise still need the original for:

* the encoded-image cache is keyed by the model-ready pixels (image.image_fingerprint),
  and preparing an already prepared square is the identity, so a request sent this
  way finds the same cache entry as one sent with the whole picture;
* the drafts from the image's text (ocrdraft.py) come from the OCR cache, which is
  keyed by the *original* pixels, and from the original's dominant colours: a
  :class:`TextRef` carries that key and those colours, and :meth:`TextRef.read`
  builds the same :class:`~.ocrdraft.ImageText` as ``read_image_text(original, run=False)``.

Qt-free and model-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .image import ImageSource, load_image, prepare_for_model
from .ocrdraft import ImageText, dominant_colours, image_text

__all__ = ["ModelImage", "TextRef", "model_image"]


@dataclass(frozen=True)
class TextRef:
    """The original picture's text, by reference: its OCR cache key and its dominant colours."""

    key: str
    colours: tuple[str, ...] = ()

    def cache_file(self) -> Path:
        """Where the client's OCR result appears (see ``fidelity.ocr.read_blocks``)."""
        from ..fidelity.ocr import key_file

        return key_file(self.key)

    def read(self) -> ImageText | None:
        """The text found in the cache (None when nobody has read it yet); never runs an OCR."""
        import time

        from ..fidelity.ocr import cached_blocks_for_key

        t0 = time.perf_counter()
        blocks = cached_blocks_for_key(self.key)
        if blocks is None:
            return None
        return image_text(blocks, self.colours, time.perf_counter() - t0)


@dataclass(frozen=True)
class ModelImage:
    """A model-ready RGB square (the tower's size) and, for the text drafts, a reference to the original's text."""

    image: Image.Image
    text: TextRef | None = None


def model_image(source: ImageSource, image_size: int, *, with_text: bool) -> ModelImage:
    """The square the engine would prepare from ``source`` (same pixels), and with ``with_text`` the
    :class:`TextRef` of the original. Raises :class:`~..errors.ImageError` for a bad picture."""
    img = load_image(source)
    prepared = prepare_for_model(img, image_size=image_size)
    ref = None
    if with_text:
        from ..fidelity.ocr import image_key

        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        ref = TextRef(image_key(rgb), tuple(dominant_colours(rgb)))
    return ModelImage(prepared, ref)
