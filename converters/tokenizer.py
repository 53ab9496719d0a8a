"""The Crystal tokenizer as a llama.cpp SentencePiece (``llama``) vocabulary, and the chat template.

The checkpoint ships a Hugging Face ``tokenizer.json``: a byte-fallback BPE over
LLaMA's SentencePiece pieces (``▁`` for spaces, a ``▁`` prepended to every text
segment) plus 22 control tokens. llama.cpp's SPM tokenizer merges the adjacent
pair whose *result* has the highest score, so giving each token the score
``-(rank of the first merge that produces it)`` makes it apply the merges in the
BPE order (CONVERSION.md §3.8). gguf-py's generic HF vocabulary gives every
token -1000 instead, and then llama.cpp merges in the wrong order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFWriter, TokenType

# tokenizer.chat_template is the engine's template, the one copy, tested to render the training prompt.
from ..app.engine.prompt import CHAT_TEMPLATE, SYSTEM
from .checkpoint import read_json, regular_file
from .errors import ConvertError

TOKENIZER_NAME = "tokenizer.json"

#: LLaVA ``conv_vicuna_v1`` (the training template, ``--version v1``): the engine's system text.
SYSTEM_PROMPT = SYSTEM


@dataclass(frozen=True)
class Vocab:
    """Everything ``tokenizer.ggml.*`` needs."""

    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos_id: int
    eos_id: int
    unk_id: int

    def write(self, w: GGUFWriter) -> None:
        w.add_tokenizer_model("llama")
        w.add_token_list(self.tokens)
        w.add_token_scores(self.scores)
        w.add_token_types(self.types)
        w.add_bos_token_id(self.bos_id)
        w.add_eos_token_id(self.eos_id)
        w.add_unk_token_id(self.unk_id)
        # LLaVA trained without BOS (the prompt starts with the system text); keep it off.
        w.add_add_bos_token(False)
        w.add_add_eos_token(False)
        w.add_add_space_prefix(True)
        w.add_chat_template(CHAT_TEMPLATE)


def _check_supported(tok: dict[str, Any], path: Path) -> dict[str, Any]:
    model = tok.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise ConvertError(f"{path}: unsupported tokenizer (supported: a byte-fallback BPE over "
                           "SentencePiece pieces, as in LLaMA/Crystal)")
    norm = tok.get("normalizer") or {}
    steps = norm.get("normalizers", [norm]) if isinstance(norm, dict) and norm.get("type") == "Sequence" else [norm]
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ConvertError(f"{path}: the normalizer is malformed (expected JSON objects)")
    kinds = [s.get("type") for s in steps]
    if "Prepend" not in kinds or "Replace" not in kinds or tok.get("pre_tokenizer") is not None:
        raise ConvertError(f"{path}: unsupported tokenizer normalization {kinds} (expected "
                           "SentencePiece-style 'prepend \u2581, spaces to \u2581' with no pre-tokenizer)")
    return model


def _merge_pair(merge: Any, rank: int, path: Path) -> tuple[str, str]:
    """``"a b"`` or ``["a", "b"]`` (the two forms tokenizers writes); anything else is a damaged file."""
    if isinstance(merge, str) and merge.count(" ") == 1:
        a, _, b = merge.partition(" ")
    elif isinstance(merge, list) and len(merge) == 2 and all(isinstance(x, str) for x in merge):
        a, b = merge
    else:
        raise ConvertError(f"{path}: merge {rank} is malformed ({str(merge)[:40]!r}; expected 'a b' or [\"a\", \"b\"])")
    if not a or not b:
        raise ConvertError(f"{path}: merge {rank} has an empty side ({str(merge)[:40]!r})")
    return a, b


def _checked_tokens(model: dict[str, Any], tok: dict[str, Any], path: Path, vocab_size: int,
                    ) -> tuple[dict[str, int], dict[int, dict[str, Any]], list[Any]]:
    """The vocabulary, added tokens and merges, each checked: ids are distinct integers below ``vocab_size``."""
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ConvertError(f"{path}: the vocabulary (model.vocab) is missing or not a JSON object")
    bad = [f"{piece!r}: {i!r}"[:40] for piece, i in vocab.items()
           if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size]
    if bad:
        raise ConvertError(f"{path}: vocabulary ids must be integers from 0 to {vocab_size - 1} (the model's "
                           f"vocab_size); found {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    if len(set(vocab.values())) != len(vocab):
        raise ConvertError(f"{path}: the vocabulary gives {len(vocab) - len(set(vocab.values()))} ids to more "
                           "than one piece")
    entries = tok.get("added_tokens") or []
    if not isinstance(entries, list):
        raise ConvertError(f"{path}: added_tokens is not a list")
    added: dict[int, dict[str, Any]] = {}
    for t in entries:
        i = t.get("id") if isinstance(t, dict) else None
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size \
                or not isinstance(t.get("content"), str):
            raise ConvertError(f"{path}: added token {str(t)[:60]!r} needs an integer id from 0 to "
                               f"{vocab_size - 1} and a string content")
        added[i] = t
    merges = model.get("merges") or []
    if not isinstance(merges, list):
        raise ConvertError(f"{path}: the merges (model.merges) are not a list")
    return vocab, added, merges


def load_vocab(path: Path, vocab_size: int) -> Vocab:
    """Read ``tokenizer.json`` and pad the vocabulary to the model's ``vocab_size``."""
    tok = read_json(path, "tokenizer")
    model = _check_supported(tok, path)
    vocab, added, merges = _checked_tokens(model, tok, path, vocab_size)

    tokens: list[str | None] = [None] * vocab_size
    for piece, i in vocab.items():
        tokens[i] = piece
    for i, t in added.items():
        tokens[i] = str(t["content"])

    # Score = -(rank of the first merge whose result is the token); llama.cpp's SPM merges
    # the best-scoring pair first, which then is the BPE order.
    first_rank: dict[str, int] = {}
    for rank, merge in enumerate(merges):
        a, b = _merge_pair(merge, rank, path)
        first_rank.setdefault(a + b, rank)

    unk = str(model.get("unk_token") or "<unk>")
    scores: list[float] = []
    types: list[int] = []
    out_tokens: list[str] = []
    for i, maybe_piece in enumerate(tokens):
        if maybe_piece is None:
            # Rows beyond the tokenizer exist only because the embedding was padded.
            out_tokens.append(f"[PAD{i}]")
            scores.append(0.0)
            types.append(TokenType.UNUSED)
            continue
        piece = maybe_piece
        out_tokens.append(piece)
        if i in added and piece == unk:
            types.append(TokenType.UNKNOWN)
            scores.append(0.0)
        elif i in added:
            types.append(TokenType.CONTROL if added[i].get("special", True) else TokenType.USER_DEFINED)
            scores.append(0.0)
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            types.append(TokenType.BYTE)
            scores.append(0.0)
        else:
            types.append(TokenType.NORMAL)
            # Pieces no merge produces (single characters) are never a merge result in SPM either.
            scores.append(-float(first_rank.get(piece, len(merges))))
    try:
        bos = out_tokens.index("<s>")
        eos = out_tokens.index("</s>")
        unk_id = out_tokens.index(unk)
    except ValueError:
        raise ConvertError(f"{path}: the tokenizer lacks <s>, </s> or {unk}") from None
    return Vocab(out_tokens, scores, [int(t) for t in types], bos, eos, unk_id)


def find_tokenizer(folder: Path) -> Path:
    path = folder / TOKENIZER_NAME
    if path.exists():
        regular_file(path, "tokenizer")  # a FIFO or folder: say so (reading a FIFO would block)
    if not path.is_file():
        raise ConvertError(f"no {TOKENIZER_NAME} in {folder} (the checkpoint's tokenizer is needed)")
    return path
