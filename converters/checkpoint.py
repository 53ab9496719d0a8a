"""Reading a Hugging Face checkpoint folder one tensor at a time.

A checkpoint is ``config.json`` plus weights in one of the two layouts
Hugging Face writes: ``pytorch_model.bin`` / ``pytorch_model-0000k-of-0000n.bin``
with ``pytorch_model.bin.index.json``, or the same with safetensors. Opening a
checkpoint reads only metadata (names, shapes, dtypes) and checks that every
shard is there and readable; :meth:`Checkpoint.get` then returns one tensor as
an owned copy.

Why the shard handles are dropped every few hundred MiB: both readers map the
shard file, and every page read through a mapping counts in the process's
resident set until the mapping goes away. Re-opening is cheap (only the
pickle/header is parsed again), so a 14 GB checkpoint converts with a resident
set bounded by the largest tensor, not by the shard size.

Security: ``.bin`` shards are unpickled only with ``weights_only=True``
(tensors and plain containers, no code); nothing from the checkpoint is ever
executed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from safetensors import safe_open

from .errors import ConvertError

CONFIG_NAME = "config.json"
_LAYOUTS = (
    # (index file, single-file name, format)
    ("model.safetensors.index.json", "model.safetensors", "safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin", "bin"),
)
#: Drop a shard's mapping after this many bytes were read through it.
RELEASE_AFTER_BYTES = 256 * 1024 * 1024
#: config.json, the weight index and tokenizer.json are at most a few MiB; a larger "JSON" is not one.
MAX_JSON_BYTES = 256 * 1024 * 1024
#: No trained weight comes near this (it is the largest F16 value, so such a weight could not even be
#: written to an F16 file); a larger one is damaged data, typically a flipped exponent bit.
MAX_ABS_WEIGHT = 65504.0


class TensorSource(Protocol):
    """Anything that hands out tensors by name (a checkpoint, or a dict in tests)."""

    def get(self, name: str) -> torch.Tensor: ...


class DictSource:
    """A :class:`TensorSource` over tensors already in memory."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def get(self, name: str) -> torch.Tensor:
        return self._tensors[name]


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it looks like, known without reading it."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    shard: Path


def short_list(names: list[str], limit: int = 8) -> str:
    """``a, b, c and 12 more``: error messages name tensors but stay one line."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def regular_file(path: Path, what: str) -> os.stat_result:
    """``stat`` of ``path``, refusing what is not a regular file (a FIFO would block the reader forever)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConvertError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ConvertError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise ConvertError(f"{what} {path} is {kind}")
    return st


def read_json(path: Path, what: str) -> dict[str, Any]:
    st = regular_file(path, what)
    if st.st_size > MAX_JSON_BYTES:
        raise ConvertError(f"{what} {path} is {st.st_size / 2**20:.0f} MiB, too large to be a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConvertError(f"{what} not found: {path}") from None
    except OSError as e:
        raise ConvertError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise ConvertError(f"cannot read {what} {path}: {_first_line(e)}") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{what} {path} is not a JSON object")
    return data


def plain_name(value: object) -> str | None:
    """``value`` if it is a file name inside a folder (no folder part, not ``..``), else None."""
    if not isinstance(value, str) or value in ("", ".", "..") or any(c in value for c in "/\\\0"):
        return None
    return value if Path(value).name == value and not Path(value).is_absolute() else None


def non_float(ckpt: Checkpoint, names: list[str]) -> list[str]:
    """``name (dtype)`` of each tensor among ``names`` that is not floating point (weights must be)."""
    return [f"{n} ({str(ckpt.tensors[n].dtype).removeprefix('torch.')})" for n in names
            if not ckpt.tensors[n].dtype.is_floating_point]


def check_values(name: str, t: torch.Tensor, where: str) -> None:
    """Refuse floating-point data holding NaN/inf, or a value no real weight has.

    (Integer tensors are buffers such as causal masks; a weight of integer type is refused by
    name before anything is written, see :func:`non_float`.)
    """
    if not t.is_floating_point() or t.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(t))  # NaN propagates; one fast pass
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        raise ConvertError(f"tensor {name} ({where}) holds {n_nan} NaN and {n_inf} infinite values: "
                           "the checkpoint is damaged")
    peak = max(-lo, hi)
    if peak > MAX_ABS_WEIGHT:
        raise ConvertError(f"tensor {name} ({where}) holds a value of {hi if hi >= -lo else lo:.4g}, far beyond "
                           "any trained weight: the checkpoint is damaged (corrupted bytes?)")


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    """Map a ``.bin`` shard with the safe unpickler; reject anything but tensors."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        match = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({match.group(1)})" if match else ""
        raise ConvertError(
            f"{path.name} holds objects other than tensors{what}; refusing to unpickle them"
        ) from None
    except Exception as e:  # a damaged pickle makes the safe unpickler raise anything (IndexError...)
        raise ConvertError(f"{path.name} is truncated or corrupt: {_first_line(e)}") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path.name} holds a {type(obj).__name__}, not a dictionary of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor) or not isinstance(k, str)]
    if bad:
        raise ConvertError(f"{path.name} holds objects other than tensors: {short_list(bad)}")
    return obj


#: A storage record in a torch zip checkpoint (``<archive>/data/<key>``).
_RECORD_RE = re.compile(r"^[^/]+/data/[^/]+$")


def _record_checksums(path: Path) -> dict[int, set[int]] | None:
    """CRC-32 of every storage record of a torch zip shard, by record size (None: not a zip we can read).

    ``torch.load`` never checks these checksums (mmap or not), so flipped bytes in a
    ``.bin`` shard load silently; comparing each storage we read with them finds every one.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            table: dict[int, set[int]] = {}
            for info in zf.infolist():
                if _RECORD_RE.match(info.filename):
                    table.setdefault(info.file_size, set()).add(info.CRC)
            return table
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return None


class _SafetensorsShard:
    def __init__(self, path: Path) -> None:
        try:
            # safetensors' methods carry no type hints
            self._f: Any = cast(Any, safe_open(str(path), framework="pt"))
            self.names = list(self._f.keys())
            self.infos: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
            for name in self.names:
                sl = self._f.get_slice(name)
                shape = tuple(int(d) for d in sl.get_shape())
                self.infos[name] = (shape, _SAFETENSORS_DTYPES[sl.get_dtype()])
        except KeyError as e:
            raise ConvertError(f"{path.name} has a tensor of unsupported dtype {e}") from None
        except Exception as e:  # safetensors raises its own error type for every header problem
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConvertError(f"{path.name} is truncated or corrupt: {first}") from None

    def get(self, name: str) -> torch.Tensor:
        t: torch.Tensor = self._f.get_tensor(name)
        return t


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


class _BinShard:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._sd = _load_bin(path)
        self.names = list(self._sd)
        self.infos = {k: (tuple(v.shape), v.dtype) for k, v in self._sd.items()}
        self._checksums: dict[int, set[int]] | None = None
        self._verified: set[int] = set()

    def get(self, name: str) -> torch.Tensor:
        t = self._sd[name]
        self._verify(name, t)
        return t

    def _verify(self, name: str, t: torch.Tensor) -> None:
        """The tensor's storage bytes against the shard's CRC-32 of that record."""
        storage = t.untyped_storage()
        size = storage.nbytes()
        if size == 0 or storage.data_ptr() in self._verified:
            return
        if self._checksums is None:
            self._checksums = _record_checksums(self.path) or {}
        expected = self._checksums.get(size)
        if not self._checksums or (expected is not None and 0 in expected):
            # not a zip checkpoint (legacy format), or saved with torch's CRC-32 turned off (it writes 0)
            return
        data = torch.empty(0, dtype=torch.uint8).set_(storage).numpy().data  # the mapped bytes, no copy
        if expected is None or zlib.crc32(data) not in expected:
            raise ConvertError(f"tensor {name} in {self.path.name} does not match the shard's checksum: "
                               "the file is corrupt (download it again)")
        self._verified.add(storage.data_ptr())


class Checkpoint:
    """A checkpoint folder: its config and lazily read tensors."""

    def __init__(self, folder: Path, *, what: str = "checkpoint") -> None:
        self.folder = folder
        self.what = what
        if not folder.is_dir():
            raise ConvertError(f"{what} folder not found: {folder}")
        self.config = read_json(folder / CONFIG_NAME, f"{CONFIG_NAME} of the {what}")
        self.format, shards = self._find_shards()
        self.tensors: dict[str, TensorInfo] = {}
        for shard in shards:
            handle = self._open(shard)
            for name in handle.names:
                if name in self.tensors:
                    raise ConvertError(f"tensor {name} appears in two shards of {folder}")
                shape, dtype = handle.infos[name]
                self.tensors[name] = TensorInfo(shape, dtype, shard)
            del handle
        self._check_index()
        self._open_path: Path | None = None
        self._open_handle: _BinShard | _SafetensorsShard | None = None
        self._read_since_open = 0

    # -- layout -----------------------------------------------------------------------------------
    def _find_shards(self) -> tuple[str, list[Path]]:
        self._index: dict[str, str] = {}
        for index_name, single_name, fmt in _LAYOUTS:
            index_path = self.folder / index_name
            if index_path.exists():
                index = read_json(index_path, "weight index")
                weight_map = index.get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise ConvertError(f"{index_path} has no weight_map")
                outside = [repr(v) for k, v in weight_map.items() if not isinstance(k, str) or plain_name(v) is None]
                if outside:
                    raise ConvertError(f"{index_path} names shards that are not file names in its folder: "
                                       f"{short_list(sorted(set(outside)), 4)}")
                self._index = dict(weight_map)
                shards = sorted({self.folder / v for v in self._index.values()})
                missing = [p.name for p in shards if not p.exists()]
                if missing:
                    raise ConvertError(
                        f"shard {short_list(missing)} named in {index_name} is missing from {self.folder}"
                    )
                for shard in shards:
                    regular_file(shard, "shard")
                return fmt, shards
            single = self.folder / single_name
            if single.exists():
                regular_file(single, "shard")
                return fmt, [single]
        # A lone shard without its index is a layout we do not guess at.
        names = " or ".join(f"{single} (or {index})" for index, single, _ in _LAYOUTS)
        raise ConvertError(f"no weights in {self.folder}: expected {names}")

    def _check_index(self) -> None:
        misplaced = [
            name for name, shard in self._index.items()
            if name not in self.tensors or self.tensors[name].shard.name != shard
        ]
        if misplaced:
            raise ConvertError(
                f"tensors the weight index lists are not in their shards: {short_list(sorted(misplaced))}"
            )

    def _open(self, shard: Path) -> _BinShard | _SafetensorsShard:
        return _SafetensorsShard(shard) if self.format == "safetensors" else _BinShard(shard)

    # -- reading ----------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def get(self, name: str) -> torch.Tensor:
        """The tensor ``name`` as a contiguous copy that owns its memory."""
        info = self.tensors[name]
        if self._open_path != info.shard or self._read_since_open > RELEASE_AFTER_BYTES:
            self.release()
            self._open_handle = self._open(info.shard)
            self._open_path = info.shard
        assert self._open_handle is not None
        try:
            t = self._open_handle.get(name).clone(memory_format=torch.contiguous_format)
        except ConvertError:
            raise
        except Exception as e:  # torch/safetensors on a record that does not match its header
            raise ConvertError(f"cannot read tensor {name} from {info.shard.name}: the file is corrupt "
                               f"({_first_line(e)})") from None
        self._read_since_open += t.numel() * t.element_size()
        check_values(name, t, info.shard.name)
        return t

    def release(self) -> None:
        """Unmap the open shard (its pages leave the resident set)."""
        self._open_handle = None
        self._open_path = None
        self._read_since_open = 0

    def names(self) -> Iterator[str]:
        return iter(self.tensors)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
