"""Model pairs: finding them, and checking them before llama.cpp sees a byte.

A pair is a text GGUF (``general.architecture = llama``) and its mmproj
(``clip``). llama.cpp aborts the process on many malformed inputs, and a text
model paired with the wrong projector is the most common failure users of
local vision models report, so every file is checked here with gguf-py first:
readable GGUF, the right architectures, projector output width equal to the
text model's embedding width, and equal ``web2code.pair_id`` stamps (a pair
without ids, e.g. a third-party conversion, loads with a warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ModelError

LOGIT_OFFSET_KEY = "web2code.logit_offset"
PAIR_ID_KEY = "web2code.pair_id"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ModelPair:
    """Where a pair's files are; ``quant`` and ``name`` come from the manifest or the file name."""

    model: Path
    mmproj: Path
    name: str = ""
    quant: str = ""
    pair_id: str = ""
    manifest: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.name or self.model.stem} {self.quant}".strip()

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.model, self.mmproj) if p.exists())


@dataclass(frozen=True)
class PairInfo:
    """What the checks learned about a pair."""

    pair: ModelPair
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    projector_dim: int
    image_size: int
    pair_id: str
    logit_offset: npt.NDArray[np.float32] | None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _reader(path: Path, role: str) -> Any:
    import gguf

    if not path.exists():
        raise ModelError(f"The {role} file does not exist: {path}")
    if not path.is_file():
        raise ModelError(f"The {role} path is not a file: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"Cannot read the {role} file {path.name}: {exc.strerror or exc}") from exc
    if magic != b"GGUF":
        raise ModelError(f"The {role} file {path.name} is not a GGUF file.")
    try:
        return gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # gguf-py raises ValueError, struct errors, IndexError... on damage
        raise ModelError(f"The {role} file {path.name} is damaged or truncated.",
                         detail=f"{type(exc).__name__}: {exc}") from exc


def _value(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.contents()


def _float_array(reader: Any, key: str) -> npt.NDArray[np.float32] | None:
    f = reader.fields.get(key)
    if f is None:
        return None
    arr = np.array([f.parts[i][0] for i in f.data], dtype=np.float32)
    return arr


def _tensor_shape(reader: Any, name: str) -> tuple[int, ...] | None:
    for t in reader.tensors:
        if t.name == name:
            return tuple(int(x) for x in t.shape)
    return None


def inspect_pair(pair: ModelPair, *, require_pair_id: bool = False) -> PairInfo:
    """Check both files of ``pair``; raises :class:`ModelError` with a one-line reason."""
    text = _reader(pair.model, "model")
    arch = _value(text, "general.architecture")
    if arch == "clip":
        raise ModelError(f"{pair.model.name} is a vision projector (mmproj), not a text model: "
                         "the two files are swapped.")
    if arch != "llama":
        raise ModelError(f"{pair.model.name} is a {arch!r} model; Web2Code needs a 'llama' text model "
                         "converted with web2code-convert.")
    n_embd = _value(text, "llama.embedding_length")
    n_ctx = _value(text, "llama.context_length")
    tok = _value(text, "tokenizer.ggml.tokens") if "tokenizer.ggml.tokens" in text.fields else None
    n_vocab = len(text.fields["tokenizer.ggml.tokens"].data) if tok is not None else 0
    if not isinstance(n_embd, int) or n_embd <= 0:
        raise ModelError(f"{pair.model.name} has no embedding width (llama.embedding_length).")
    if n_vocab == 0:
        raise ModelError(f"{pair.model.name} has no tokenizer vocabulary.")

    proj = _reader(pair.mmproj, "mmproj")
    parch = _value(proj, "general.architecture")
    if parch == "llama":
        raise ModelError(f"{pair.mmproj.name} is a text model, not a vision projector (mmproj).")
    if parch != "clip":
        raise ModelError(f"{pair.mmproj.name} is not a vision projector (general.architecture={parch!r}).")
    if _value(proj, "clip.has_vision_encoder") is False:
        raise ModelError(f"{pair.mmproj.name} has no vision encoder.")
    ptype = _value(proj, "clip.projector_type")
    if ptype not in (None, "mlp"):
        raise ModelError(f"{pair.mmproj.name} has projector type {ptype!r}; this model uses 'mlp' (LLaVA-1.5).")
    # The last projector layer's output width must equal the text model's embedding width.
    shape = _tensor_shape(proj, "mm.2.weight") or _tensor_shape(proj, "mm.0.weight")
    if shape is None:
        raise ModelError(f"{pair.mmproj.name} has no projector weights (mm.0 / mm.2).")
    projector_dim = shape[-1]  # gguf shapes are reversed: [in, out]
    if projector_dim != n_embd:
        raise ModelError(
            f"Mismatched pair: {pair.mmproj.name} projects images to width {projector_dim}, "
            f"but {pair.model.name} has width {n_embd}. Use the mmproj that came with this model.")

    warnings: list[str] = []
    id_text = _value(text, PAIR_ID_KEY) or ""
    id_proj = _value(proj, PAIR_ID_KEY) or ""
    if id_text and id_proj and id_text != id_proj:
        raise ModelError(
            f"Mismatched pair: {pair.model.name} and {pair.mmproj.name} come from different conversions "
            f"(pair ids {id_text[:12]} and {id_proj[:12]}). Use the files from one conversion.")
    if not (id_text and id_proj):
        if require_pair_id:
            raise ModelError("This pair carries no web2code.pair_id; convert it with web2code-convert.")
        warnings.append("The model files carry no pair id (not converted by web2code-convert): "
                        "make sure the mmproj belongs to this model.")
    offset = _float_array(text, LOGIT_OFFSET_KEY)
    if offset is None:
        warnings.append("The model has no web2code.logit_offset: its outputs will differ slightly "
                        "from the original model.")
    elif offset.shape[0] != n_vocab:
        raise ModelError(f"{pair.model.name}: logit offset has {offset.shape[0]} values for "
                         f"{n_vocab} tokens; the file is damaged.")
    image_size = _value(proj, "clip.vision.image_size") or 0
    return PairInfo(pair=pair, n_embd=n_embd, n_vocab=n_vocab, n_ctx_train=int(n_ctx or 0),
                    projector_dim=projector_dim, image_size=int(image_size), pair_id=id_text or id_proj,
                    logit_offset=offset, warnings=tuple(warnings))


def _manifest_pairs(manifest: Path) -> list[ModelPair]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        root = manifest.parent
        mmproj = root / data["mmproj"]["file"]
        out = []
        for m in data["models"]:
            out.append(ModelPair(model=root / m["file"], mmproj=mmproj, name=str(data.get("name", "")),
                                 quant=str(m.get("quant", "")), pair_id=str(data.get("pair_id", "")),
                                 manifest=manifest))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return []


def discover(models_dir: Path) -> list[ModelPair]:
    """Every pair listed by a ``manifest.json`` in ``models_dir`` or one folder below it.

    Unreadable manifests are skipped (the model manager lists them as broken via
    :func:`broken_manifests`); files are not opened here, so this is fast.
    """
    if not models_dir.is_dir():
        return []
    manifests = sorted({*models_dir.glob(MANIFEST_NAME), *models_dir.glob(f"*/{MANIFEST_NAME}")})
    pairs: list[ModelPair] = []
    for m in manifests:
        pairs.extend(p for p in _manifest_pairs(m) if p.model.exists() and p.mmproj.exists())
    return pairs


def broken_manifests(models_dir: Path) -> list[Path]:
    """Manifests that cannot be read or point at missing files."""
    if not models_dir.is_dir():
        return []
    bad = []
    for m in sorted({*models_dir.glob(MANIFEST_NAME), *models_dir.glob(f"*/{MANIFEST_NAME}")}):
        pairs = _manifest_pairs(m)
        if not pairs or not all(p.model.exists() and p.mmproj.exists() for p in pairs):
            bad.append(m)
    return bad


_QUANT_ORDER = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32")


def choose(pairs: list[ModelPair], preferred_quant: str = "Q4_K_M") -> ModelPair | None:
    """The pair to use by default: the preferred quant, else the smallest common one."""
    if not pairs:
        return None
    for p in pairs:
        if p.quant == preferred_quant:
            return p
    rank = {q: i for i, q in enumerate(_QUANT_ORDER)}
    return sorted(pairs, key=lambda p: rank.get(p.quant, len(rank)))[0]
