"""The prompt is the training template, to the character and to the token id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from web2code.app.engine.prompt import (
    CHAT_TEMPLATE,
    DEFAULT_INSTRUCTION,
    EOS_ID,
    MEDIA_MARKER,
    SYSTEM,
    Exchange,
    PartKind,
    Prompt,
    build_prompt,
)
from web2code.app.errors import RequestError

# The model's published tokenizer.json, kept in the repository's test data.
TOKENIZER_JSON = Path(__file__).resolve().parents[1] / "data" / "tokenizer.json"

TRAINING_TEXT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: <image>\n"
    "Please generate html code for the given image ASSISTANT:"
)


def test_single_turn_prompt_is_the_training_text_exactly() -> None:
    assert build_prompt().text() == TRAINING_TEXT
    assert DEFAULT_INSTRUCTION == "Please generate html code for the given image"


def test_parts_are_text_image_text_with_the_image_first_in_the_user_turn() -> None:
    p = build_prompt("What is the title of this page?")
    assert [part.kind for part in p.parts] == [PartKind.TEXT, PartKind.IMAGE, PartKind.TEXT]
    assert p.before_image == SYSTEM + " USER: "
    assert p.after_image == "\nWhat is the title of this page? ASSISTANT:"


def test_follow_up_questions_continue_the_vicuna_conversation() -> None:
    p = build_prompt("And the footer?", [Exchange("What is the title?", "Acme Inc.")])
    assert p.text() == (
        f"{SYSTEM} USER: <image>\nWhat is the title? ASSISTANT: Acme Inc.</s>USER: And the footer? ASSISTANT:"
    )
    # </s> is the EOS token between turns, a part of its own, never text to tokenize
    assert [part.kind for part in p.parts] == [
        PartKind.TEXT, PartKind.IMAGE, PartKind.TEXT, PartKind.EOS, PartKind.TEXT,
    ]
    assert all("</s>" not in chunk for chunk in p.text_chunks())


def test_three_turns() -> None:
    p = build_prompt("q3", [Exchange("q1", "a1"), Exchange("q2", "a2")])
    assert p.text(image_marker="[IMG]", eos="|") == (
        f"{SYSTEM} USER: [IMG]\nq1 ASSISTANT: a1|USER: q2 ASSISTANT: a2|USER: q3 ASSISTANT:"
    )


@pytest.mark.parametrize("instruction", ["", "   ", "\n"])
def test_empty_instruction_is_a_request_error(instruction: str) -> None:
    with pytest.raises(RequestError, match="instruction is empty"):
        build_prompt(instruction)


def test_empty_earlier_question_is_a_request_error() -> None:
    with pytest.raises(RequestError, match="question is empty"):
        build_prompt("next", [Exchange(" ", "answer")])


# ------------------------------------------------------------------ token ids


def expected_prompt_token_ids(tokenizer_json_path: Path, instruction: str) -> list[int]:
    """LLaVA's ``tokenizer_image_token``, built independently with the ``tokenizers`` library.

    Split the training text at ``<image>``, tokenize every chunk on its own
    (the tokenizer prepends ``▁`` to each), no BOS, -1 where the image sits.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json_path))
    text = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. USER: <image>\n"
        f"{instruction} ASSISTANT:"
    )
    ids: list[int] = []
    for k, chunk in enumerate(text.split("<image>")):
        if k:
            ids.append(-1)
        ids.extend(tok.encode(chunk, add_special_tokens=False).ids)
    return ids


def engine_style_ids(prompt: Prompt, tokenizer_json_path: Path) -> list[int]:
    """What the engine does with the parts: one tokenizer call per text part, EOS as id 2."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json_path))
    ids: list[int] = []
    for part in prompt.parts:
        if part.kind is PartKind.IMAGE:
            ids.append(-1)
        elif part.kind is PartKind.EOS:
            ids.append(EOS_ID)
        else:
            ids.extend(tok.encode(part.text, add_special_tokens=False).ids)
    return ids


needs_tokenizer = pytest.mark.skipif(not TOKENIZER_JSON.exists(), reason="reference tokenizer.json absent")


@needs_tokenizer
def test_reference_ids_have_no_bos_and_the_text_after_the_image_starts_with_space_newline() -> None:
    pytest.importorskip("tokenizers")
    ids = expected_prompt_token_ids(TOKENIZER_JSON, DEFAULT_INSTRUCTION)
    assert ids[0] != 1  # no BOS
    assert ids[:2] == [319, 13563]  # "▁A", "▁chat"
    assert ids.count(-1) == 1
    k = ids.index(-1)
    assert ids[k - 1] == 29871  # the space after "USER:" is a lone "▁"
    assert ids[k + 1 : k + 3] == [29871, 13]  # "▁", "\n": the chunk's own prefix, then the newline
    assert ids[k + 3] == 12148  # "Please" (no "▁": it follows the newline)
    assert ids[-1] == 29901  # ":" of "ASSISTANT:"
    assert 2 not in ids  # no EOS in a one-turn prompt


@needs_tokenizer
@pytest.mark.parametrize("instruction", [DEFAULT_INSTRUCTION, "What is the title of this page?"])
def test_engine_chunking_of_the_parts_gives_the_reference_ids(instruction: str) -> None:
    pytest.importorskip("tokenizers")
    got = engine_style_ids(build_prompt(instruction), TOKENIZER_JSON)
    assert got == expected_prompt_token_ids(TOKENIZER_JSON, instruction)


@needs_tokenizer
def test_follow_up_turn_ids_match_llava_tokenizing_the_whole_conversation() -> None:
    """In training the conversation text (with ``</s>`` parsed as the special token) was one chunk."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZER_JSON))
    p = build_prompt("Where is the logo?", [Exchange("What is the title?", "Acme")])
    before, after = p.text().split("<image>")
    expected = [
        *tok.encode(before, add_special_tokens=False).ids,
        -1,
        *tok.encode(after, add_special_tokens=False).ids,
    ]
    assert EOS_ID in expected  # the tokenizer parsed "</s>" as the special token
    assert engine_style_ids(p, TOKENIZER_JSON) == expected


# --------------------------------------------------------------- chat template


def _render(messages: list[dict[str, Any]], *, trim: bool, add_generation_prompt: bool = True) -> str:
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    assert jinja2  # the sandbox transformers and llama-cpp-python use
    env = ImmutableSandboxedEnvironment(trim_blocks=trim, lstrip_blocks=trim)
    return env.from_string(CHAT_TEMPLATE).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token="<s>", eos_token="</s>"
    )


IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize("trim", [True, False])
@pytest.mark.parametrize(
    "content",
    [
        [IMAGE_PART, {"type": "text", "text": DEFAULT_INSTRUCTION}],  # what a client sends
        [{"type": "text", "text": DEFAULT_INSTRUCTION}, IMAGE_PART],  # image last: still rendered first
        # llama-server replaced the image by a text part holding the media marker ...
        [{"type": "text", "text": MEDIA_MARKER}, {"type": "text", "text": DEFAULT_INSTRUCTION}],
        # ... and, for templates that want strings, joined the text parts with "\n"
        f"{MEDIA_MARKER}\n{DEFAULT_INSTRUCTION}",
        f"{DEFAULT_INSTRUCTION}\n{MEDIA_MARKER}",
        [{"type": "image"}, {"type": "text", "text": DEFAULT_INSTRUCTION}],
    ],
    ids=["image-text", "text-image", "marker-parts", "marker-string", "marker-last-string", "image-type"],
)
def test_chat_template_renders_the_training_text_with_the_media_marker(content: Any, trim: bool) -> None:
    text = _render([{"role": "user", "content": content}], trim=trim)
    assert text == build_prompt().text(image_marker=MEDIA_MARKER)
    assert not text.startswith("<s>")  # no BOS


@pytest.mark.parametrize("trim", [True, False])
def test_chat_template_renders_follow_up_turns(trim: bool) -> None:
    messages = [
        {"role": "user", "content": [IMAGE_PART, {"type": "text", "text": "What is the title?"}]},
        {"role": "assistant", "content": "Acme"},
        {"role": "user", "content": [{"type": "text", "text": "Where is the logo?"}]},
    ]
    expected = build_prompt("Where is the logo?", [Exchange("What is the title?", "Acme")])
    assert _render(messages, trim=trim) == expected.text(image_marker=MEDIA_MARKER)


def test_chat_template_system_message_replaces_the_default_system_text() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [IMAGE_PART, {"type": "text", "text": "Title?"}]},
    ]
    assert _render(messages, trim=True) == f"Be brief. USER: {MEDIA_MARKER}\nTitle? ASSISTANT:"


def test_chat_template_without_generation_prompt_ends_after_the_last_message() -> None:
    messages = [
        {"role": "user", "content": [IMAGE_PART, {"type": "text", "text": "Title?"}]},
        {"role": "assistant", "content": "Acme"},
    ]
    assert _render(messages, trim=True, add_generation_prompt=False) == (
        f"{SYSTEM} USER: {MEDIA_MARKER}\nTitle? ASSISTANT: Acme</s>"
    )
