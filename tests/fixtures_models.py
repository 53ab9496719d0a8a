"""Tiny random CrystalChat-Web2Code models, converted once per test session.

Registered in ``tests/conftest.py``; other test modules (engine, GUI) use
:func:`tiny_pair`, whose interface (:class:`TinyPair`) stays stable:
``.dir`` (OUTDIR with manifest), ``.model`` (F32 text GGUF), ``.mmproj`` (F16),
``.manifest``, ``.checkpoint`` (the source folder), ``.q8`` (Q8_0 text GGUF).

The pair is converted from a checkpoint with a "copy head" (layer 0 attends
``COPY_DISTANCE`` tokens back), so greedy output depends on the prompt: a wrong
template, a stray BOS, a missing logit offset or a misplaced image changes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Layer 0 of the tiny pair's model copies the token this many positions back.
COPY_DISTANCE = 3


@dataclass(frozen=True)
class TinyPair:
    dir: Path
    model: Path
    mmproj: Path
    manifest: Path
    checkpoint: Path
    q8: Path

    def manifest_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest.read_text())
        return data


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> Path:
    """A sensitive random checkpoint (no copy head): ``.bin`` shards + index, CLIP tower inside."""
    from web2code.converters.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-crystal", tokenizer_json=reference_tokenizer)


@pytest.fixture(scope="session")
def tiny_copy_checkpoint(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> Path:
    from web2code.converters.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-copy", seed=1, fmt="safetensors",
                            tokenizer_json=reference_tokenizer, copy_distance=COPY_DISTANCE)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory, tiny_copy_checkpoint: Path) -> TinyPair:
    """``web2code-convert`` output (F32 + Q8_0 text models, F16 mmproj, manifest) of the copy-head model."""
    from web2code.converters.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("pair") / "out"
    result = convert(ConvertOptions(outdir=out, source=str(tiny_copy_checkpoint), quants=["F32", "Q8_0"],
                                    name="tiny"))
    files = {m.quant: out / m.file for m in result.models}
    return TinyPair(dir=out, model=files["F32"], mmproj=out / result.mmproj.file, manifest=result.manifest,
                    checkpoint=tiny_copy_checkpoint, q8=files["Q8_0"])


@pytest.fixture(scope="session")
def long_pair(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> Path:
    """A copy-head pair with the real model's 2,048-token context: pages as long as the 7B model writes.

    Returns the folder (with manifest) to point ``WEB2CODE_MODELS_DIR`` at.
    """
    from web2code.converters.convert import ConvertOptions, convert
    from web2code.converters.synthetic import write_checkpoint

    ckpt = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "long-copy", seed=2, fmt="safetensors",
                            tokenizer_json=reference_tokenizer, copy_distance=COPY_DISTANCE, n_positions=2048)
    out = tmp_path_factory.mktemp("pair") / "long"
    convert(ConvertOptions(outdir=out, source=str(ckpt), quants=["Q8_0"], name="long"))
    return out
