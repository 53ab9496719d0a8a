"""Synthetic webpage screenshots for the timed requests (speed does not depend on the pixels)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

PALETTES = [
    ((33, 37, 41), (13, 110, 253), (248, 249, 250)),
    ((52, 58, 64), (25, 135, 84), (255, 255, 255)),
    ((73, 80, 87), (220, 53, 69), (241, 243, 245)),
    ((20, 33, 61), (252, 163, 17), (229, 229, 229)),
]


def webpage(seed: int, size: tuple[int, int] = (1280, 960)) -> Image.Image:
    """A landing page: nav bar, hero with a button, a row of cards, a form, a footer."""
    rng = random.Random(seed)
    dark, accent, light = PALETTES[seed % len(PALETTES)]
    w, h = size
    img = Image.new("RGB", size, light)
    d = ImageDraw.Draw(img)
    # nav bar with a logo and links
    d.rectangle((0, 0, w, 64), fill=dark)
    d.text((24, 22), f"Brand{seed}", fill=(255, 255, 255))
    for i in range(rng.randint(3, 6)):
        d.text((w - 120 * (i + 1), 24), rng.choice(["Home", "About", "Pricing", "Blog", "Contact", "Docs"]),
               fill=(220, 220, 220))
    # hero
    y = 96
    d.text((64, y + 20), "Build something great today", fill=dark)
    d.text((64, y + 50), "A short sentence that explains the product in plain words.", fill=(90, 90, 90))
    d.rounded_rectangle((64, y + 90, 224, y + 134), radius=8, fill=accent)
    d.text((96, y + 104), "Get started", fill=(255, 255, 255))
    d.rectangle((w // 2 + 40, y, w - 64, y + 220), fill=tuple(min(255, c + 40) for c in accent))
    # cards
    y = 360
    n = rng.randint(3, 4)
    cw = (w - 64 * 2 - 32 * (n - 1)) // n
    for i in range(n):
        x = 64 + i * (cw + 32)
        d.rounded_rectangle((x, y, x + cw, y + 260), radius=10, fill=(255, 255, 255), outline=(210, 210, 210))
        d.rectangle((x, y, x + cw, y + 110), fill=tuple(rng.randint(120, 230) for _ in range(3)))
        d.text((x + 16, y + 126), f"Card title {i + 1}", fill=dark)
        for k in range(3):
            d.line((x + 16, y + 160 + 18 * k, x + cw - 16 - rng.randint(0, 80), y + 160 + 18 * k),
                   fill=(170, 170, 170), width=6)
        d.rounded_rectangle((x + 16, y + 216, x + 116, y + 246), radius=6, outline=accent, width=2)
    # form
    y = 660
    d.text((64, y), "Subscribe to our newsletter", fill=dark)
    for k, label in enumerate(["Name", "Email"]):
        d.text((64, y + 36 + 56 * k), label, fill=(90, 90, 90))
        d.rectangle((160, y + 28 + 56 * k, 640, y + 64 + 56 * k), outline=(180, 180, 180), fill=(255, 255, 255))
    d.rounded_rectangle((160, y + 150, 300, y + 190), radius=6, fill=accent)
    d.text((196, y + 162), "Subscribe", fill=(255, 255, 255))
    # footer
    d.rectangle((0, h - 72, w, h), fill=dark)
    d.text((24, h - 44), "© 2024 Brand. All rights reserved.", fill=(200, 200, 200))
    return img


def prepared_page(seed: int, image_size: int) -> Image.Image:
    """The page as the model sees it (LLaVA pad + resize), so every program gets identical pixels."""
    from web2code.app.engine.image import prepare_for_model

    return prepare_for_model(webpage(seed), image_size=image_size)


def write_page(path: Path, seed: int, image_size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prepared_page(seed, image_size).save(path)
    return path
