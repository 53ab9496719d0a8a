r"""The prompt, exactly as the model saw it in training (LLaVA ``conv_vicuna_v1``).

One turn::

    {SYSTEM} USER: <image>\n{instruction} ASSISTANT:

Follow-up questions about the same image continue the conversation::

    {SYSTEM} USER: <image>\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT:

:func:`build_prompt` returns this as :class:`Prompt`, a sequence of parts
(text, the image, the end-of-sequence token) so the engine never has to find
markers inside user text.

How the engine must tokenize it (this is what makes the ids equal training's)
---------------------------------------------------------------------------
* **No BOS.** The Crystal tokenizer adds none, and neither must llama.cpp
  (``add_special=False``; the GGUF also says ``add_bos_token=false``).
* **Chunk by chunk.** LLaVA's ``tokenizer_image_token`` split the prompt at
  ``<image>`` and tokenized each piece on its own. Tokenize every text part
  separately, with ``add_special=False`` and ``parse_special=False`` (user text
  that happens to contain ``</s>`` or ``<|im_end|>`` stays text). The image part
  is encoded by mtmd in between.
* **Leading space.** The SentencePiece-style tokenizer prepends ``▁`` to every
  chunk it is given (llama.cpp's SPM ``add_space_prefix``, and the
  ``Prepend("▁")`` normalizer of tokenizer.json). So the text after the image
  starts with ids 29871 (``▁``) and 13 (``\n``), and the text before it ends
  with the ``▁`` of the space after ``USER:``. Do not strip or merge chunks.
* **``</s>``** between turns is the token id (2), a part of its own
  (:attr:`PartKind.EOS`), never the five characters. The text after it is a
  new chunk and starts with ``▁USER`` — which is also what the training-time
  tokenizer produced after its special token.

llama.cpp programs (llama-server, LM Studio, ...)
-------------------------------------------------
:data:`CHAT_TEMPLATE` is the Jinja chat template the converter writes into
``tokenizer.chat_template`` (the only copy: ``web2code models verify --fix``
rewrites files from older converters). llama-server (llama.cpp's
``tools/server``) loads each OpenAI ``image_url`` part and replaces it by a
``media_marker`` part whose text is its media marker: ``<__media_`` + 32 random
letters and digits + ``__>``, made once per process (``LLAMA_MEDIA_MARKER``
pins it; older builds used mtmd's default ``<__media__>``). A message with media
reaches the template as one string, the parts joined with ``"\n"`` between text
parts and nothing around a marker, so ``[image, text]`` is ``"{marker}{text}"``
and ``[text, image]`` is ``"{text}{marker}"``. mtmd then splits the rendered
text at each marker and tokenizes the pieces separately, with
``parse_special=true`` — the same chunking as above, and the ``</s>`` the
template writes between turns becomes token 2.

So the template finds the marker by its fixed ends, writes every marker first
in the user turn followed by ``"\n"`` (where training had ``<image>\n``), then
the text, whatever order the client used. It also takes the content as a list
of parts (transformers, other programs; ``image``/``image_url`` parts become
``<__media__>``) and the older ``"<__media__>\n"`` joins. The rendered text is
``build_prompt(...).text(image_marker=marker)`` exactly
(tests/unit/test_chat_template.py, tests/integration/test_llama_server.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import RequestError

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_INSTRUCTION",
    "EOS_ID",
    "EOS_TEXT",
    "IMAGE_TOKEN",
    "MEDIA_MARKER",
    "SYSTEM",
    "Exchange",
    "PartKind",
    "Prompt",
    "PromptPart",
    "build_prompt",
]

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
DEFAULT_INSTRUCTION = "Please generate html code for the given image"

IMAGE_TOKEN = "<image>"  # LLaVA's placeholder in the training text
MEDIA_MARKER = "<__media__>"  # llama.cpp mtmd's default marker
EOS_TEXT = "</s>"
EOS_ID = 2

# Separators of conv_vicuna_v1: sep=" " after a user turn, sep2="</s>" after an assistant turn.
_ROLE_USER = "USER"
_ROLE_ASSISTANT = "ASSISTANT"


class PartKind(enum.Enum):
    TEXT = "text"
    IMAGE = "image"
    EOS = "eos"


@dataclass(frozen=True)
class PromptPart:
    kind: PartKind
    text: str = ""


@dataclass(frozen=True)
class Exchange:
    """One earlier turn of a conversation about the image."""

    question: str
    answer: str


@dataclass(frozen=True)
class Prompt:
    """The prompt as parts: text chunks, exactly one image, end-of-sequence tokens between turns."""

    parts: tuple[PromptPart, ...]

    @property
    def before_image(self) -> str:
        """The text chunk before the image: ``"{SYSTEM} USER: "``."""
        first = self.parts[0]
        assert first.kind is PartKind.TEXT and self.parts[1].kind is PartKind.IMAGE
        return first.text

    @property
    def after_image(self) -> str:
        """Everything after the image, ``</s>`` written as text (for display and hashing)."""
        idx = next(i for i, p in enumerate(self.parts) if p.kind is PartKind.IMAGE)
        return "".join(EOS_TEXT if p.kind is PartKind.EOS else p.text for p in self.parts[idx + 1 :])

    def text(self, image_marker: str = IMAGE_TOKEN, eos: str = EOS_TEXT) -> str:
        """The whole prompt as one string with the image written as ``image_marker``."""
        out = []
        for p in self.parts:
            if p.kind is PartKind.IMAGE:
                out.append(image_marker)
            elif p.kind is PartKind.EOS:
                out.append(eos)
            else:
                out.append(p.text)
        return "".join(out)

    def text_chunks(self) -> list[str]:
        """The text parts in order (what the engine tokenizes, one call each)."""
        return [p.text for p in self.parts if p.kind is PartKind.TEXT]


def _check_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"The {what} is empty.")
    return value


def build_prompt(
    instruction: str = DEFAULT_INSTRUCTION,
    history: Sequence[Exchange] = (),
    *,
    system: str = SYSTEM,
) -> Prompt:
    """The training-format prompt for ``instruction`` after the earlier ``history`` turns.

    The image belongs to the first user turn: the first exchange's question when
    there is history, else ``instruction``. Raises :class:`RequestError` for an
    empty instruction or question.
    """
    _check_text(instruction, "instruction")
    questions = [*(_check_text(e.question, "question") for e in history), instruction]
    answers = [e.answer for e in history]

    parts: list[PromptPart] = [
        PromptPart(PartKind.TEXT, f"{system} {_ROLE_USER}: "),
        PromptPart(PartKind.IMAGE),
    ]
    # The text after the image: "\n{q1} ASSISTANT: {a1}", then per later turn
    # EOS + "USER: {q} ASSISTANT: {a}", ending with " ASSISTANT:" for the model.
    text = f"\n{questions[0]} {_ROLE_ASSISTANT}:"
    for i, answer in enumerate(answers):
        parts.append(PromptPart(PartKind.TEXT, f"{text} {answer}"))
        parts.append(PromptPart(PartKind.EOS))
        text = f"{_ROLE_USER}: {questions[i + 1]} {_ROLE_ASSISTANT}:"
    parts.append(PromptPart(PartKind.TEXT, text))
    return Prompt(tuple(parts))


def _template() -> str:
    # Written as fragments joined without newlines, so the result is the same with
    # or without trim_blocks/lstrip_blocks (transformers, minja and llama.cpp's own
    # Jinja engine differ there). Only widely supported Jinja features are used: no
    # slicing, no regular expressions, no macros.
    m = MEDIA_MARKER
    prefix = "<__media_"  # what every llama.cpp media marker starts with, mtmd's default included
    image_types = "['image', 'image_url', 'input_image']"
    fragments = [
        # Double quotes: the system text contains an apostrophe.
        '{%- set ns = namespace(system="' + SYSTEM + '", content=\'\', after_text=false, media=\'\', text=\'\') -%}',
        "{%- for message in messages -%}",
        "{%- if message['role'] == 'system' -%}",
        "{%- if message['content'] is string -%}{%- set ns.system = message['content'] -%}",
        "{%- else -%}{%- set ns.system = '' -%}",
        "{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}",
        "{%- set ns.system = ns.system + part['text'] -%}{%- endif -%}{%- endfor -%}",
        "{%- endif -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{{- ns.system + ' ' -}}",
        "{%- for message in messages -%}",
        # ---- user turn: 1. the content as one string, each image as a media marker
        # (llama.cpp's own flattening: text parts joined by "\n", nothing around a marker)
        "{%- if message['role'] == 'user' -%}",
        "{%- if message['content'] is string -%}{%- set ns.content = message['content'] -%}",
        "{%- else -%}",
        "{%- set ns.content = '' -%}{%- set ns.after_text = false -%}",
        "{%- for part in message['content'] -%}",
        "{%- if part['type'] == 'text' -%}",
        "{%- set ns.content = ns.content + ('\\n' if ns.after_text else '') + part['text'] -%}",
        "{%- set ns.after_text = true -%}",
        "{%- elif part['type'] == 'media_marker' -%}",
        "{%- set ns.content = ns.content + part['text'] -%}{%- set ns.after_text = false -%}",
        "{%- elif part['type'] in " + image_types + " -%}",
        "{%- set ns.content = ns.content + '" + m + "' -%}{%- set ns.after_text = false -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- endif -%}",
        # 2. every marker first, each followed by "\n" (where training had "<image>\n"), then
        # the text. llama-server's marker is "<__media_" + 32 random letters/digits + "__>"
        # (a marker pinned with LLAMA_MEDIA_MARKER must keep that shape); older llama.cpp used
        # "<__media__>" and joined it to the text with "\n", which is dropped first. Splitting at
        # "<__media_", each later piece holds the rest of its marker up to the first "_>".
        "{%- set pieces = ns.content.replace('" + m + "\\n', '" + m + "').replace('\\n" + m + "', '"
        + m + "').split('" + prefix + "') -%}",
        "{%- set ns.media = '' -%}{%- set ns.text = '' -%}",
        "{%- for piece in pieces -%}",
        "{%- set rest = piece.split('_>', 1) -%}",
        "{%- if loop.first -%}{%- set ns.text = piece -%}",
        "{%- elif rest | length == 2 -%}",
        "{%- set ns.media = ns.media + '" + prefix + "' + rest[0] + '_>\\n' -%}",
        "{%- set ns.text = ns.text + rest[1] -%}",
        "{%- else -%}{%- set ns.text = ns.text + '" + prefix + "' + piece -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{{- 'USER: ' + ns.media + ns.text -}}",
        # ---- assistant turn: " ASSISTANT: {answer}</s>"
        "{%- elif message['role'] == 'assistant' -%}",
        "{{- ' ASSISTANT: ' -}}",
        "{%- if message['content'] is string -%}{{- message['content'] -}}",
        "{%- else -%}{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}",
        "{{- part['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}",
        "{{- '" + EOS_TEXT + "' -}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}",
    ]
    return "".join(fragments)


CHAT_TEMPLATE = _template()
"""Jinja chat template rendering OpenAI-style messages into the training text (see the module notes).

Images are written as ``<__media__>``; no BOS is emitted. A ``system`` message
replaces the default system text.
"""
