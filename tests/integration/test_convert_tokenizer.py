"""llama.cpp tokenizes exactly like the `tokenizers` library with the published tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_models import TinyPair
from web2code.converters.llamacpp import TextModel

CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant. USER: ",
    "\nPlease generate html code for the given image ASSISTANT:",
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n  <title>Shop &amp; Co</title>\n'
    '  <style>body{margin:0;font-family:"Helvetica Neue",Arial}</style>\n</head>',
    '<div class="nav-bar" id=\'top\'><a href="/a?b=1&c=2#x">Home</a> | <span>Über uns</span></div>',
    "def f(x):\n\treturn {'k': [x ** 2 for x in range(10)]}  # comment\n",
    "function f() { return `${a}-${b}`; } // ES6\n\n\n    indented",
    "naïve café, 東京タワー, 한국어, Ελληνικά, עברית, العربية, emoji 🚀🔥 and 👩‍💻",
    "   leading spaces,  double  spaces,\ttabs\t\tand trailing   ",
    "\n\n\n",
    " ",
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    "<|fim_prefix|>def a():<|fim_suffix|>\n<|fim_middle|>",
    "</s>USER: next turn <s> ASSISTANT: ok</s>",
    "numbers 1234567890 3.14159 -42 1e-5 0x1F",
    "mixed\u00a0nbsp\u2003emspace and zero\u200bwidth",
    "CSS: .btn:hover{color:#ff0000;transition:all .3s ease-in-out}",
]


@pytest.fixture(scope="module")
def llama(tiny_pair: TinyPair):  # type: ignore[no-untyped-def]
    with TextModel(tiny_pair.model, n_ctx=64) as m:
        yield m


@pytest.mark.parametrize("text", CORPUS)
def test_llama_cpp_ids_equal_tokenizers_ids(llama: TextModel, reference_tokenizer: Path, text: str) -> None:
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(reference_tokenizer))
    assert llama.tokenize(text) == hf.encode(text, add_special_tokens=False).ids


def test_text_after_the_image_starts_with_space_and_newline(llama: TextModel) -> None:
    # LLaVA tokenizes the chunk after <image> on its own: the SentencePiece prefix comes first
    assert llama.tokenize("\nPlease generate html code for the given image ASSISTANT:")[:2] == [29871, 13]


def test_control_tokens_are_single_ids(llama: TextModel) -> None:
    assert llama.tokenize("<|im_start|>")[-1] == 32018
    assert llama.tokenize("<|im_end|>")[-1] == 32019
    assert llama.tokenize("</s>") == [2]
