"""One chat template: the GGUF's renders exactly the training prompt, and old files are fixed in place.

Rendered with jinja2's sandbox the way transformers and llama-cpp-python do,
with ``trim_blocks``/``lstrip_blocks`` on and off, for every shape a client or
llama.cpp gives the messages (tests/integration/test_llama_server.py renders it
in llama.cpp's own Jinja engine, inside a real llama-server).
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter, TokenType
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from web2code.app.engine.chat_template import (
    CHAT_TEMPLATE_KEY,
    fix_chat_templates,
    outdated_template_warning,
    rewrite_chat_template,
)
from web2code.app.engine.pair import ModelPair
from web2code.app.engine.prompt import (
    CHAT_TEMPLATE,
    DEFAULT_INSTRUCTION,
    MEDIA_MARKER,
    SYSTEM,
    Exchange,
    build_prompt,
)
from web2code.app.errors import ModelError
from web2code.converters.tokenizer import Vocab

#: What web2code-convert wrote into ``tokenizer.chat_template`` before it wrote the engine's
#: template (converters/tokenizer.py up to this change), kept to make "old" files in tests.
OLD_CONVERTER_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system_message = '" + SYSTEM.replace("'", "\\'") + "' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- system_message + ' ' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- 'USER: ' + message['content'] + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'ASSISTANT: ' + message['content'] + '</s>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

#: A llama-server media marker: "<__media_" + 32 random letters/digits + "__>" (server-common.cpp).
SERVER_MARKER = "<__media_Xq3ZbT0d9LkPq2VwR7sYhN4mC8aEf1Gu__>"
IMAGE_URL = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def _text(t: str) -> dict[str, str]:
    return {"type": "text", "text": t}


def _render(template: str, messages: list[dict[str, Any]], *, trim: bool, add_generation_prompt: bool = True) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=trim, lstrip_blocks=trim)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def gguf_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The template as the converter writes it into a GGUF, read back from the file."""
    path = tmp_path_factory.mktemp("tpl") / "vocab.gguf"
    w = GGUFWriter(str(path), "llama")
    Vocab(["<unk>", "<s>", "</s>", "a"], [0.0] * 4, [int(TokenType.NORMAL)] * 4, 1, 2, 0).write(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    field = GGUFReader(str(path)).get_field(CHAT_TEMPLATE_KEY)
    assert field is not None
    template: str = field.contents()
    return template


def test_the_converter_writes_the_engines_template(gguf_template: str) -> None:
    assert gguf_template == CHAT_TEMPLATE


# What reaches the template for the first user turn, and the marker the training text then holds.
FIRST_TURN = {
    # llama-server (this llama.cpp): media parts become markers, a message with media one string,
    # nothing between a marker and its neighbours
    "server-image-first": (SERVER_MARKER + DEFAULT_INSTRUCTION, SERVER_MARKER),
    "server-image-last": (DEFAULT_INSTRUCTION + SERVER_MARKER, SERVER_MARKER),
    "server-parts-image-last": ([_text(DEFAULT_INSTRUCTION), {"type": "media_marker", "text": SERVER_MARKER}],
                                SERVER_MARKER),
    "server-parts-image-first": ([{"type": "media_marker", "text": SERVER_MARKER}, _text(DEFAULT_INSTRUCTION)],
                                 SERVER_MARKER),
    # llama-mtmd-cli: mtmd's default marker put in front of the prompt
    "mtmd-cli": (MEDIA_MARKER + DEFAULT_INSTRUCTION, MEDIA_MARKER),
    # older llama.cpp: default marker, parts joined with "\n"
    "old-joined-image-first": (f"{MEDIA_MARKER}\n{DEFAULT_INSTRUCTION}", MEDIA_MARKER),
    "old-joined-image-last": (f"{DEFAULT_INSTRUCTION}\n{MEDIA_MARKER}", MEDIA_MARKER),
    "old-marker-part": ([_text(MEDIA_MARKER), _text(DEFAULT_INSTRUCTION)], MEDIA_MARKER),
    # OpenAI list content as a client sends it (transformers renders it like this)
    "openai-image-first": ([IMAGE_URL, _text(DEFAULT_INSTRUCTION)], MEDIA_MARKER),
    "openai-image-last": ([_text(DEFAULT_INSTRUCTION), IMAGE_URL], MEDIA_MARKER),
    "hf-image-part": ([{"type": "image"}, _text(DEFAULT_INSTRUCTION)], MEDIA_MARKER),
}


@pytest.mark.parametrize("trim", [False, True], ids=["plain", "trim_blocks"])
@pytest.mark.parametrize("case", FIRST_TURN)
def test_first_turn_renders_the_training_text(gguf_template: str, case: str, trim: bool) -> None:
    content, marker = FIRST_TURN[case]
    rendered = _render(gguf_template, [{"role": "user", "content": content}], trim=trim)
    assert rendered == build_prompt().text(image_marker=marker)


@pytest.mark.parametrize("trim", [False, True], ids=["plain", "trim_blocks"])
@pytest.mark.parametrize("image_last", [False, True], ids=["image-first", "image-last"])
def test_several_turns_render_the_training_text(gguf_template: str, image_last: bool, trim: bool) -> None:
    history = [Exchange("What is the title?", "Acme <b>Tools</b>"), Exchange("Where is the logo?", "Top left.")]
    first = [_text(history[0].question), IMAGE_URL] if image_last else [IMAGE_URL, _text(history[0].question)]
    messages = [
        {"role": "user", "content": first},
        {"role": "assistant", "content": history[0].answer},
        {"role": "user", "content": history[1].question},  # a string, as RemoteBackend sends follow-ups
        {"role": "assistant", "content": [_text(history[1].answer)]},
        {"role": "user", "content": [_text("What colour is the button?")]},
    ]
    expected = build_prompt("What colour is the button?", history)
    assert _render(gguf_template, messages, trim=trim) == expected.text(image_marker=MEDIA_MARKER)
    # ... and as llama-server hands them over: the image turn one string with its random marker
    messages[0]["content"] = (history[0].question + SERVER_MARKER if image_last
                              else SERVER_MARKER + history[0].question)
    assert _render(gguf_template, messages, trim=trim) == expected.text(image_marker=SERVER_MARKER)


@pytest.mark.parametrize("trim", [False, True], ids=["plain", "trim_blocks"])
@pytest.mark.parametrize("system", ["Be brief.", [_text("Be brief.")]], ids=["string", "parts"])
def test_a_system_message_replaces_the_system_text(gguf_template: str, system: Any, trim: bool) -> None:
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": SERVER_MARKER + "Title?"}]
    expected = build_prompt("Title?", system="Be brief.")
    assert _render(gguf_template, messages, trim=trim) == expected.text(image_marker=SERVER_MARKER)


def test_without_generation_prompt_the_text_ends_after_the_last_answer(gguf_template: str) -> None:
    messages = [{"role": "user", "content": [IMAGE_URL, _text("Title?")]}, {"role": "assistant", "content": "Acme"}]
    rendered = _render(gguf_template, messages, trim=False, add_generation_prompt=False)
    assert rendered == f"{SYSTEM} USER: {MEDIA_MARKER}\nTitle? ASSISTANT: Acme</s>"


_ALNUM = string.ascii_letters + string.digits
_question = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00<>"), min_size=1, max_size=40).filter(
    lambda s: s.strip() != "")


@settings(max_examples=40, deadline=None)
@given(random=st.text(_ALNUM, min_size=32, max_size=32), texts=st.tuples(_question, _question, _question),
       image_last=st.booleans(), trim=st.booleans())
def test_any_server_marker_and_texts_give_the_training_text(
        gguf_template: str, random: str, texts: tuple[str, str, str], image_last: bool, trim: bool) -> None:
    q1, a1, q2 = texts
    marker = f"<__media_{random}__>"
    messages = [{"role": "user", "content": q1 + marker if image_last else marker + q1},
                {"role": "assistant", "content": a1}, {"role": "user", "content": q2}]
    expected = build_prompt(q2, [Exchange(q1, a1)]).text(image_marker=marker)
    assert _render(gguf_template, messages, trim=trim) == expected


def test_the_old_converter_template_did_not_give_the_training_text() -> None:
    # Why files from older converters must be fixed: list content fails, an image-last
    # string keeps the image last, and the "\n" after the image is missing.
    with pytest.raises(TypeError):
        _render(OLD_CONVERTER_TEMPLATE, [{"role": "user", "content": [IMAGE_URL, _text("Hi")]}], trim=False)
    content, marker = FIRST_TURN["server-image-first"]
    rendered = _render(OLD_CONVERTER_TEMPLATE, [{"role": "user", "content": content}], trim=False)
    assert rendered != build_prompt().text(image_marker=marker)


# ------------------------------------------------------------------ detection and the fix in place
def test_only_our_files_with_another_template_are_outdated() -> None:
    assert outdated_template_warning("m.gguf", CHAT_TEMPLATE, ours=True) is None
    assert outdated_template_warning("m.gguf", OLD_CONVERTER_TEMPLATE, ours=False) is None  # third-party file
    for stale in (OLD_CONVERTER_TEMPLATE, None):
        warning = outdated_template_warning("m.gguf", stale, ours=True)
        assert warning is not None and "m.gguf" in warning and "web2code models verify --fix" in warning
        assert "\n" not in warning


def _write_gguf(path: Path, template: str | None, pair_id: str | None = "abc123") -> None:
    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_uint32("llama.context_length", 2048)
    w.add_array("web2code.logit_offset", [0.5, -0.25, 1.0])
    if template is not None:
        w.add_chat_template(template)
    if pair_id:
        w.add_string("web2code.pair_id", pair_id)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    rng = np.random.default_rng(0)
    w.add_tensor("a.weight", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("b.weight", rng.standard_normal((7,)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _snapshot(path: Path) -> tuple[dict[str, Any], dict[str, bytes], int]:
    r = GGUFReader(str(path))
    fields = {k: f.contents() for k, f in r.fields.items() if k not in (CHAT_TEMPLATE_KEY, "GGUF.kv_count")}
    tensors = {t.name: bytes(t.data.tobytes()) for t in r.tensors}
    assert all(t.data_offset % r.alignment == 0 for t in r.tensors)
    return fields, tensors, len(r.fields)


@pytest.mark.parametrize("old", [OLD_CONVERTER_TEMPLATE, None], ids=["old", "missing"])
def test_rewrite_replaces_only_the_template(tmp_path: Path, old: str | None) -> None:
    path = tmp_path / "m.gguf"
    _write_gguf(path, old)
    before = _snapshot(path)
    sha = rewrite_chat_template(path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    field = GGUFReader(str(path)).get_field(CHAT_TEMPLATE_KEY)
    assert field is not None and field.contents() == CHAT_TEMPLATE
    fields, tensors, n_fields = _snapshot(path)
    assert fields == before[0] and tensors == before[1]
    assert n_fields == before[2] + (old is None)
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary left
    # Current already: nothing is written.
    mtime = path.stat().st_mtime_ns
    assert rewrite_chat_template(path) is None and path.stat().st_mtime_ns == mtime


def test_rewrite_of_a_damaged_file_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    _write_gguf(path, OLD_CONVERTER_TEMPLATE)
    data = path.read_bytes()
    path.write_bytes(data[:200])  # truncated inside the key/value section
    with pytest.raises(ModelError, match=r"m\.gguf"):
        rewrite_chat_template(path)
    assert path.read_bytes() == data[:200]
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_fix_rewrites_our_outdated_files_and_keeps_the_manifest_true(tmp_path: Path) -> None:
    ours, current, foreign = tmp_path / "a-F32.gguf", tmp_path / "a-F16.gguf", tmp_path / "b.gguf"
    _write_gguf(ours, OLD_CONVERTER_TEMPLATE)
    _write_gguf(current, CHAT_TEMPLATE)
    _write_gguf(foreign, OLD_CONVERTER_TEMPLATE, pair_id=None)  # a third-party file: its template is its own
    files = (ours, current, foreign)
    before = {p: p.read_bytes() for p in files}
    manifest = tmp_path / "manifest.json"
    entries = [{"quant": p.stem, "file": p.name, "sha256": hashlib.sha256(before[p]).hexdigest(),
                "size": len(before[p])} for p in files]
    manifest.write_text(json.dumps({"pair_id": "abc123", "mmproj": {"file": "mm.gguf", "sha256": "00"},
                                    "models": entries}))
    pair = ModelPair(model=ours, mmproj=tmp_path / "mm.gguf", manifest=manifest)

    assert fix_chat_templates(pair) == [ours]
    assert current.read_bytes() == before[current] and foreign.read_bytes() == before[foreign]
    field = GGUFReader(str(ours)).get_field(CHAT_TEMPLATE_KEY)
    assert field is not None and field.contents() == CHAT_TEMPLATE
    data = json.loads(manifest.read_text())
    for entry in data["models"]:
        path = tmp_path / entry["file"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["size"] == path.stat().st_size
    assert data["mmproj"] == {"file": "mm.gguf", "sha256": "00"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in files), "manifest.json"])
    assert fix_chat_templates(pair) == []  # nothing left to fix
