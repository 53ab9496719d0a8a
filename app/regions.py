"""Regenerate one region of a page, or change one element by an instruction, with the model.

The model's context (2,048 tokens, 576 of them for the image) is too small to redo a long
page, so edits work on parts: the crop of the input at the element's box goes to the model,
and the HTML it returns replaces that element only (:func:`~.edit.replace_element`;
everything else stays byte-identical).

* Regenerate: the crop with the usual instruction; the model writes HTML for the crop.
* Instruct: the crop, the element's HTML and the user's instruction. This is best-effort:
  the model was trained for image -> HTML, not for editing HTML by instructions.

Boxes here are in input-image pixels (what a user draws on the input); a box from the render
is scaled with :func:`render_box_to_image`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from .edit import Edit, EditError, extract_replacement, locate, replace_element
from .engine.backend import Backend
from .engine.events import Failed, GenerationParams, Token
from .engine.prompt import DEFAULT_INSTRUCTION
from .errors import GenerationError

__all__ = [
    "MAX_ELEMENT_CHARS",
    "RegionResult",
    "crop_region",
    "edit_region",
    "instruct_prompt",
    "render_box_to_image",
]

#: The longest element HTML sent with an instruction: about 1,000 tokens, room for the image and the answer.
MAX_ELEMENT_CHARS = 3000

BEST_EFFORT = ("Instructions are best-effort: the model was trained to write HTML for an image, "
               "not to edit HTML by instructions.")


@dataclass
class RegionResult:
    edit: Edit
    raw: str  # what the model wrote
    instruction: str  # what the model was asked
    best_effort: bool  # an instruction edit
    crop: tuple[int, int, int, int]

    def record(self) -> dict[str, object]:
        """A JSON-ready account of the edit (the CLI prints it, the history stores it)."""
        return {
            "element": list(self.edit.path),
            "tag": self.edit.tag,
            "span": list(self.edit.span),
            "new_span": list(self.edit.new_span),
            "crop": list(self.crop),
            "instruction": self.instruction,
            "best_effort": self.best_effort,
            "raw": self.raw,
            "replacement": self.edit.replacement,
        }


def render_box_to_image(box: tuple[float, float, float, float], render_width: float, image_width: int,
                        ) -> tuple[float, float, float, float]:
    """A box in the render's CSS pixels -> the same box in the input image's pixels."""
    if render_width <= 0:
        raise EditError("the render width must be positive")
    s = image_width / render_width
    x, y, w, h = box
    return x * s, y * s, w * s, h * s


def crop_region(image: Image.Image, box: tuple[float, float, float, float],
                ) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The crop of ``image`` at ``box`` (x, y, w, h in image pixels), clamped; one-line error if empty."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise EditError(f"the box {_fmt(box)} is empty: width and height must be positive")
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(image.width, round(x + w)), min(image.height, round(y + h))
    if right - left < 2 or bottom - top < 2:
        raise EditError(f"the box {_fmt(box)} is outside the image ({image.width}x{image.height})")
    return image.crop((left, top, right, bottom)), (left, top, right, bottom)


def _fmt(box: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in box)


def instruct_prompt(element_html: str, instruction: str) -> str:
    """What the model is asked for an instruction edit."""
    instruction = " ".join(instruction.split())
    # A byte of the page that is not UTF-8 (kept as a surrogate) cannot be tokenized: the model sees U+FFFD.
    element_html = element_html.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if not instruction:
        raise EditError("the instruction is empty")
    if len(element_html) > MAX_ELEMENT_CHARS:
        raise EditError(f"the element's HTML is {len(element_html)} characters, more than the model's context "
                        f"leaves room for ({MAX_ELEMENT_CHARS}): select a smaller element")
    return (f"This image shows one part of a webpage. Its HTML is:\n{element_html}\n"
            f"Change it: {instruction}\nWrite the complete new HTML of this part only.")


def _run(backend: Backend, crop: Image.Image, params: GenerationParams,
         on_token: Callable[[str], None] | None) -> str:
    texts: list[str] = []
    for ev in backend.generate(crop, params):
        if isinstance(ev, Token) and getattr(ev, "variant", 0) == 0:
            texts.append(ev.text)
            if on_token is not None:
                on_token(ev.text)
        elif isinstance(ev, Failed):
            raise ev.to_exception()
    return "".join(texts)


def edit_region(backend: Backend, source: str, image: Image.Image, box: tuple[float, float, float, float],
                path: Sequence[int], *, instruction: str | None = None, params: GenerationParams | None = None,
                tag: str | None = None, on_token: Callable[[str], None] | None = None) -> RegionResult:
    """Regenerate (no ``instruction``) or instruct the element at ``path``, from the crop at ``box``.

    The element is located before the model runs (a wrong path costs nothing). Whatever the
    model answers, only the element's span changes. A failed or cancelled request raises
    (:class:`~.errors.Cancelled`, :class:`~.errors.GenerationError`...) and changes nothing.
    """
    el = locate(source, path, tag)
    crop, rect = crop_region(image, box)
    params = params or GenerationParams()
    if instruction is not None:
        asked = instruct_prompt(source[el.start:el.end], instruction)
    else:
        asked = params.instruction or DEFAULT_INSTRUCTION
    raw = _run(backend, crop, params.replace(instruction=asked), on_token)
    replacement = extract_replacement(raw)
    if not replacement.strip():
        raise GenerationError("the model wrote no HTML for this part; the page is unchanged")
    label = "instruct" if instruction is not None else "regenerate"
    edit = replace_element(source, path, replacement, tag=tag, label=label)
    if instruction is not None:
        edit.notes.append(BEST_EFFORT)
    return RegionResult(edit, raw, asked, instruction is not None, rect)
