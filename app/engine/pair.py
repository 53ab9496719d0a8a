"""Model pairs: finding them, and checking them before llama.cpp sees a byte.

A pair is a text GGUF (``general.architecture = llama``) and its mmproj
(``clip``). llama.cpp aborts the process on many malformed inputs, and a text
model paired with the wrong projector is the most common failure users of
local vision models report, so every file is checked here with gguf-py first:
readable GGUF, the right architectures, projector output width equal to the
text model's embedding width, and equal ``web2code.pair_id`` stamps (a pair
without ids, e.g. a third-party conversion, loads with a warning).

Nothing a file or a manifest holds makes this module raise anything but
:class:`~web2code.app.errors.ModelError`: a damaged file is a user's problem,
not a traceback. A manifest lists plain file names inside its own folder; an
entry with a path (``../x``, ``/etc/passwd``) makes the manifest broken.
"""

from __future__ import annotations

import contextlib
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ModelError
from .chat_template import CHAT_TEMPLATE_KEY, outdated_template_warning
from .keys import LOGIT_OFFSET, MANIFEST_NAME, PAIR_ID

__all__ = [
    "MANIFEST_NAME",
    "ModelPair",
    "PairInfo",
    "broken_manifests",
    "choose",
    "discover",
    "inspect_pair",
    "manifest_pairs",
]

#: A manifest is a few hundred bytes; anything this large is not one.
MAX_MANIFEST_BYTES = 1 << 20


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
        total = 0
        for p in (self.model, self.mmproj):
            with contextlib.suppress(OSError, ValueError):
                total += p.stat().st_size
        return total


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


# -- reading GGUF files -----------------------------------------------------------------------------
def _damaged(path: Path, role: str, detail: str = "") -> ModelError:
    return ModelError(f"The {role} file {path.name} is damaged or truncated.", detail=detail)


def _reader(path: Path, role: str) -> Any:
    import gguf

    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelError(f"The {role} file does not exist: {path}") from None
    except (OSError, ValueError) as exc:  # name too long, a loop of links, an embedded NUL...
        raise ModelError(f"Cannot read the {role} file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        # a folder, or a FIFO/device that would block or never end
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
        raise _damaged(path, role, f"{type(exc).__name__}: {exc}") from exc


class _Fields:
    """Typed access to one file's metadata; a value of the wrong type is damage, never an exception."""

    def __init__(self, reader: Any, path: Path, role: str) -> None:
        self.reader = reader
        self.path = path
        self.role = role

    def _field(self, key: str) -> Any:
        return self.reader.fields.get(key)

    def _types(self, key: str) -> list[Any] | None:
        f = self._field(key)
        return None if f is None else list(f.types)

    def _contents(self, key: str) -> Any:
        f = self._field(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception as exc:  # invalid UTF-8, parts that do not match the types
            raise _damaged(self.path, self.role, f"{key}: {type(exc).__name__}: {exc}") from exc

    def _scalar(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        from gguf import GGUFValueType

        types = self._types(key)
        if types is None:
            return None
        if len(types) != 1 or types[0] == GGUFValueType.ARRAY:
            raise _damaged(self.path, self.role, f"{key} is not a single {what}")
        value = self._contents(key)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise _damaged(self.path, self.role, f"{key} is not a {what}: {value!r:.60}")
        return value

    def string(self, key: str) -> str | None:
        value: str | None = self._scalar(key, (str,), "string")
        return value

    def integer(self, key: str) -> int | None:
        value: int | None = self._scalar(key, (int,), "integer")
        return value

    def boolean(self, key: str) -> bool | None:
        value: bool | None = self._scalar(key, (bool,), "boolean")
        return value

    def array_length(self, key: str, sub_type: Any) -> int | None:
        """Elements of an array field of ``sub_type``; None if absent, damage if of another type."""
        from gguf import GGUFValueType

        f = self._field(key)
        if f is None:
            return None
        types = list(f.types)
        if not types or types[0] != GGUFValueType.ARRAY or types[-1] != sub_type:
            raise _damaged(self.path, self.role, f"{key} is not an array of {sub_type.name}")
        return len(f.data)

    def float32_array(self, key: str) -> npt.NDArray[np.float32] | None:
        from gguf import GGUFValueType

        n = self.array_length(key, GGUFValueType.FLOAT32)
        if n is None:
            return None
        f = self._field(key)
        try:
            arr = np.array([f.parts[i][0] for i in f.data], dtype=np.float32)
        except Exception as exc:
            raise _damaged(self.path, self.role, f"{key}: {type(exc).__name__}: {exc}") from exc
        if arr.shape != (n,) or not np.isfinite(arr).all():
            raise _damaged(self.path, self.role, f"{key} holds values that are not finite numbers")
        return arr

    def tensor_shape(self, name: str) -> tuple[int, ...] | None:
        try:
            for t in self.reader.tensors:
                if t.name == name:
                    return tuple(int(x) for x in t.shape)
        except Exception as exc:
            raise _damaged(self.path, self.role, f"tensor {name}: {type(exc).__name__}: {exc}") from exc
        return None


def inspect_pair(pair: ModelPair, *, require_pair_id: bool = False) -> PairInfo:
    """Check both files of ``pair``; raises :class:`ModelError` (and only that) with a one-line reason."""
    try:
        return _inspect(pair, require_pair_id)
    except ModelError:
        raise
    except (MemoryError, RecursionError) as exc:  # a length field damaged into something enormous
        raise ModelError(f"{pair.model.name} or {pair.mmproj.name} is damaged (it claims sizes that do not fit "
                         "in memory).", detail=f"{type(exc).__name__}: {exc}") from exc


def _inspect(pair: ModelPair, require_pair_id: bool) -> PairInfo:
    from gguf import GGUFValueType

    text = _Fields(_reader(pair.model, "model"), pair.model, "model")
    arch = text.string("general.architecture")
    if arch == "clip":
        raise ModelError(f"{pair.model.name} is a vision projector (mmproj), not a text model: "
                         "the two files are swapped.")
    if arch != "llama":
        raise ModelError(f"{pair.model.name} is a {arch!r} model; Web2Code needs a 'llama' text model "
                         "converted with web2code-convert.")
    n_embd = text.integer("llama.embedding_length")
    n_ctx = text.integer("llama.context_length")
    n_vocab = text.array_length("tokenizer.ggml.tokens", GGUFValueType.STRING) or 0
    if n_embd is None or n_embd <= 0:
        raise ModelError(f"{pair.model.name} has no embedding width (llama.embedding_length).")
    if n_vocab == 0:
        raise ModelError(f"{pair.model.name} has no tokenizer vocabulary.")
    if n_ctx is not None and n_ctx < 0:
        raise _damaged(pair.model, "model", f"llama.context_length {n_ctx}")

    proj = _Fields(_reader(pair.mmproj, "mmproj"), pair.mmproj, "mmproj")
    parch = proj.string("general.architecture")
    if parch == "llama":
        raise ModelError(f"{pair.mmproj.name} is a text model, not a vision projector (mmproj).")
    if parch != "clip":
        raise ModelError(f"{pair.mmproj.name} is not a vision projector (general.architecture={parch!r}).")
    if proj.boolean("clip.has_vision_encoder") is False:
        raise ModelError(f"{pair.mmproj.name} has no vision encoder.")
    ptype = proj.string("clip.projector_type")
    if ptype not in (None, "mlp"):
        raise ModelError(f"{pair.mmproj.name} has projector type {ptype!r}; this model uses 'mlp' (LLaVA-1.5).")
    # The last projector layer's output width must equal the text model's embedding width.
    shape = proj.tensor_shape("mm.2.weight") or proj.tensor_shape("mm.0.weight")
    if not shape:
        raise ModelError(f"{pair.mmproj.name} has no projector weights (mm.0 / mm.2).")
    projector_dim = shape[-1]  # gguf shapes are reversed: [in, out]
    if projector_dim != n_embd:
        raise ModelError(
            f"Mismatched pair: {pair.mmproj.name} projects images to width {projector_dim}, "
            f"but {pair.model.name} has width {n_embd}. Use the mmproj that came with this model.")

    warnings: list[str] = []
    id_text = text.string(PAIR_ID) or ""
    id_proj = proj.string(PAIR_ID) or ""
    if id_text and id_proj and id_text != id_proj:
        raise ModelError(
            f"Mismatched pair: {pair.model.name} and {pair.mmproj.name} come from different conversions "
            f"(pair ids {id_text[:12]} and {id_proj[:12]}). Use the files from one conversion.")
    if not (id_text and id_proj):
        if require_pair_id:
            raise ModelError("This pair carries no web2code.pair_id; convert it with web2code-convert.")
        warnings.append("The model files carry no pair id (not converted by web2code-convert): "
                        "make sure the mmproj belongs to this model.")
    stale = outdated_template_warning(pair.model.name, text.string(CHAT_TEMPLATE_KEY), ours=bool(id_text))
    if stale:
        warnings.append(stale)
    offset = text.float32_array(LOGIT_OFFSET)
    if offset is None:
        warnings.append("The model has no web2code.logit_offset: its outputs will differ slightly "
                        "from the original model.")
    elif offset.shape[0] != n_vocab:
        raise ModelError(f"{pair.model.name}: logit offset has {offset.shape[0]} values for "
                         f"{n_vocab} tokens; the file is damaged.")
    image_size = proj.integer("clip.vision.image_size") or 0
    if image_size < 0:
        raise _damaged(pair.mmproj, "mmproj", f"clip.vision.image_size {image_size}")
    return PairInfo(pair=pair, n_embd=n_embd, n_vocab=n_vocab, n_ctx_train=n_ctx or 0,
                    projector_dim=projector_dim, image_size=image_size, pair_id=id_text or id_proj,
                    logit_offset=offset, warnings=tuple(warnings))


# -- manifests --------------------------------------------------------------------------------------
def _plain_name(value: Any) -> str | None:
    """``value`` if it is a plain file name (no folder part, not ``..``), else None."""
    if not isinstance(value, str) or not value or value in (".", ".."):
        return None
    if any(c in value for c in "/\\\0") or Path(value).is_absolute() or Path(value).name != value:
        return None
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key, "")
    return value if isinstance(value, str) else None


def _is_regular_file(path: Path) -> bool:
    """Like ``Path.is_file`` but False (not an exception) for names the OS rejects."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def manifest_pairs(manifest: Path) -> list[ModelPair]:
    """The pairs a manifest lists; [] if it is unreadable, malformed, or names a file outside its folder."""
    if not _is_regular_file(manifest):  # a FIFO would block discovery
        return []
    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return []
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        return []
    if not isinstance(data, dict):
        return []
    mm = data.get("mmproj")
    models = data.get("models")
    name = _optional_str(data, "name")
    pair_id = _optional_str(data, "pair_id")
    if not isinstance(mm, dict) or not isinstance(models, list) or not models or name is None or pair_id is None:
        return []
    mm_file = _plain_name(mm.get("file"))
    if mm_file is None:
        return []
    root = manifest.parent
    out = []
    for m in models:
        if not isinstance(m, dict):
            return []
        file = _plain_name(m.get("file"))
        quant = _optional_str(m, "quant")
        if file is None or quant is None:
            return []
        out.append(ModelPair(model=root / file, mmproj=root / mm_file, name=name, quant=quant, pair_id=pair_id,
                             manifest=manifest))
    return out


def _manifests(models_dir: Path) -> list[Path]:
    try:
        if not models_dir.is_dir():
            return []
        return sorted({*models_dir.glob(MANIFEST_NAME), *models_dir.glob(f"*/{MANIFEST_NAME}")})
    except (OSError, ValueError):
        return []


def _complete(p: ModelPair) -> bool:
    return _is_regular_file(p.model) and _is_regular_file(p.mmproj)


def discover(models_dir: Path) -> list[ModelPair]:
    """Every pair listed by a ``manifest.json`` in ``models_dir`` or one folder below it.

    Unreadable manifests are skipped (the model manager lists them as broken via
    :func:`broken_manifests`); files are not opened here, so this is fast.
    """
    pairs: list[ModelPair] = []
    for m in _manifests(models_dir):
        pairs.extend(p for p in manifest_pairs(m) if _complete(p))
    return pairs


def broken_manifests(models_dir: Path) -> list[Path]:
    """Manifests that cannot be read, name files outside their folder, or point at missing files."""
    bad = []
    for m in _manifests(models_dir):
        pairs = manifest_pairs(m)
        if not pairs or not all(_complete(p) for p in pairs):
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
