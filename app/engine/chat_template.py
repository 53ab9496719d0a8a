"""The chat template inside a model GGUF: spotting an outdated one, and replacing it in place.

Files converted before the converter wrote the engine's :data:`~.prompt.CHAT_TEMPLATE`
carry an older ``tokenizer.chat_template``: llama-server renders a wrong prompt
from it (or fails on an image request). Replacing the template needs no second
conversion: :func:`rewrite_chat_template` rewrites the GGUF's key/value section
and copies the tensor infos and tensor data byte for byte, through a temporary
file renamed over the original; :func:`fix_chat_templates` does that for every
model file of a pair and keeps the manifest's checksums true
(``web2code models verify --fix``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from .keys import PAIR_ID
from .prompt import CHAT_TEMPLATE

if TYPE_CHECKING:  # pair.py imports this module for outdated_template_warning: no import back at run time
    from .pair import ModelPair

__all__ = ["CHAT_TEMPLATE_KEY", "fix_chat_templates", "outdated_template_warning", "rewrite_chat_template"]

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
_GGUF_STRING = 8  # GGUFValueType.STRING
_COPY_CHUNK = 1 << 22


def outdated_template_warning(model_name: str, template: object, *, ours: bool) -> str | None:
    """The warning for a file from our converter whose chat template is not the current one.

    ``ours``: the file carries a ``web2code.pair_id``; a third-party file's template is its own business.
    """
    if not ours or template == CHAT_TEMPLATE:
        return None
    return (f"{model_name} carries an outdated chat template: llama-server and other llama.cpp programs "
            "will not build the prompt the model was trained on. Fix it in place (no new conversion): "
            "web2code models verify --fix <model folder>")


def _kv_string(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack(f"<Q{len(k)}sIQ", len(k), k, _GGUF_STRING, len(v)) + v


def _end(field: Any) -> int:
    return int(field.offset) + sum(int(p.nbytes) for p in field.parts)


def _read(path: Path) -> Any:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # gguf-py raises ValueError, struct errors, IndexError... on damage
        raise ModelError(f"{path.name} is not a readable GGUF file.", detail=f"{type(exc).__name__}: {exc}") from exc
    if reader.endianess != gguf.GGUFEndian.LITTLE:
        raise ModelError(f"{path.name} is a big-endian GGUF; Web2Code writes and fixes little-endian files only.")
    return reader


def rewrite_chat_template(path: Path, template: str = CHAT_TEMPLATE) -> str | None:
    """Set the GGUF's ``tokenizer.chat_template`` to ``template``; the new file's SHA-256, or None if unchanged.

    Everything else stays byte for byte: the other keys in their order, the tensor
    infos and the tensor data (only the padding before the data moves). The new
    file is written next to ``path`` and renamed over it; an interruption leaves the
    original untouched.
    """
    return _rewrite(path, template, only_ours=False)


def _rewrite(path: Path, template: str, *, only_ours: bool) -> str | None:
    reader = _read(path)  # parsed once: a 32k-token vocabulary takes gguf-py seconds
    field = reader.fields.get(CHAT_TEMPLATE_KEY)
    if (field is not None and field.contents() == template) or (only_ours and PAIR_ID not in reader.fields):
        return None
    data = reader.data  # the whole file, memory-mapped
    kv_fields = [f for name, f in reader.fields.items() if not name.startswith("GGUF.")]
    kv_end = max(_end(f) for f in kv_fields) if kv_fields else _end(reader.fields["GGUF.kv_count"])
    header_end = max([kv_end, *(_end(t.field) for t in reader.tensors)])
    new_kv = _kv_string(CHAT_TEMPLATE_KEY, template)
    if field is not None:
        head = bytes(data[: field.offset]) + new_kv + bytes(data[_end(field) : header_end])
    else:  # append the key to the key/value section and count it
        count = reader.fields["GGUF.kv_count"]
        n_kv = int(count.parts[0][0]) + 1
        head = (bytes(data[: count.offset]) + struct.pack("<Q", n_kv) + bytes(data[_end(count) : kv_end])
                + new_kv + bytes(data[kv_end:header_end]))
    head += b"\0" * (-len(head) % int(reader.alignment))
    data_offset = int(reader.data_offset)
    size = int(data.shape[0])
    del field, kv_fields, data, reader  # drop the memory map before the file is replaced

    need = len(head) + size - data_offset
    if shutil.disk_usage(path.parent).free < need + (64 << 20):
        raise ModelError(f"Not enough free space next to {path.name} to rewrite it "
                         f"({need / 2**30:.1f} GiB needed).")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.incomplete")
    sha = hashlib.sha256(head)
    try:
        with path.open("rb") as src, tmp.open("wb") as dst:
            dst.write(head)
            src.seek(data_offset)
            while chunk := src.read(_COPY_CHUNK):
                sha.update(chunk)
                dst.write(chunk)
            if dst.tell() != need:
                raise ModelError(f"{path.name} changed while it was being rewritten; it was left as it was.")
            dst.flush()
            os.fsync(dst.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise ModelError(f"Cannot rewrite {path.name}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return sha.hexdigest()


def _model_files(pair: ModelPair) -> list[tuple[Path, str]]:
    """Every model GGUF of the pair's manifest with its name there (the model alone without a manifest)."""
    if pair.manifest is None:
        return [(pair.model, "")]
    try:
        manifest = json.loads(pair.manifest.read_text(encoding="utf-8"))
        return [(pair.manifest.parent / str(m["file"]), str(m["file"])) for m in manifest["models"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"Cannot read {pair.manifest}: {exc}") from exc


def _update_manifest(manifest: Path, file: str, sha256: str, size: int) -> None:
    data = json.loads(manifest.read_text(encoding="utf-8"))
    for entry in data["models"]:
        if entry.get("file") == file:
            entry["sha256"] = sha256
            if "size" in entry:
                entry["size"] = size
    tmp = manifest.with_name(f".{manifest.name}.{secrets.token_hex(4)}.incomplete")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(manifest)
    finally:
        tmp.unlink(missing_ok=True)


def fix_chat_templates(pair: ModelPair) -> list[Path]:
    """Give every model file of the pair that our converter wrote the current chat template.

    Returns the files rewritten. Each rewrite is followed at once by the manifest's
    new checksum (and size, where the manifest records one) for that file.
    Files without a ``web2code.pair_id`` (third-party conversions) are left alone.
    """
    fixed = []
    for path, entry in _model_files(pair):
        if not path.is_file():
            continue
        sha = _rewrite(path, CHAT_TEMPLATE, only_ours=True)
        if sha is None:
            continue
        if pair.manifest is not None:
            try:
                _update_manifest(pair.manifest, entry, sha, path.stat().st_size)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ModelError(f"{path.name} was fixed, but updating {pair.manifest.name} failed: {exc}") from exc
        fixed.append(path)
    return fixed
