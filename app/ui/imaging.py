"""Conversions between Qt images and the engine's Pillow images (the engine validates every input)."""

from __future__ import annotations

import io

from PIL import Image
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QImage

from ..engine.image import load_image


def qimage_to_png(image: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")  # type: ignore[call-overload]  # the stubs want bytes, PySide wants str
    buf.close()
    return bytes(data.data())


def qimage_to_pil(image: QImage) -> Image.Image:
    """Through PNG and the engine's loader: the same checks and normalisation as a file."""
    return load_image(qimage_to_png(image))


def pil_to_qimage(image: Image.Image) -> QImage:
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    q = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return q.copy()  # own the pixels: ``data`` goes away


def thumbnail_png(image: Image.Image, size: int = 160) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return buf.getvalue()


def png_to_qimage(data: bytes) -> QImage:
    q = QImage()
    q.loadFromData(data, "PNG")
    return q


def scaled_for_icon(image: QImage, size: int) -> QImage:
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
