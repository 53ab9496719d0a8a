"""Typed, bounded reads of ``config.json`` values: a wrong value is a one-line error, never a traceback.

A config can hold anything JSON can: strings and nulls where numbers belong,
booleans (which Python counts as integers), ``NaN``/``Infinity`` (Python's JSON
reader accepts them), zero or negative sizes that divide by zero or cannot be
written as GGUF's unsigned fields. Every value the converter uses is read
through these functions, with the range a real model can have.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import ConvertError

_MISSING: Any = object()


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(value: Any) -> bool:
    """A JSON number that is finite as a float (JSON integers can be arbitrarily long)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _lookup(cfg: dict[str, Any], key: str, default: Any, where: str) -> Any:
    """``cfg[key]``, or ``_MISSING`` when the default applies (absent, or null with a default given)."""
    value = cfg.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise ConvertError(f"{where} lacks {key!r}")
        return _MISSING
    return value


def config_int(cfg: dict[str, Any], key: str, lo: int, hi: int, *, default: Any = _MISSING,
               where: str = "config.json") -> int:
    """``cfg[key]`` as an integer in ``[lo, hi]``; ``default`` when absent (or null, if a default is given)."""
    value = _lookup(cfg, key, default, where)
    if value is _MISSING:
        return int(default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConvertError(f"{where}: {key} must be an integer from {lo} to {hi} (it is {_shown(value)})")
    return value


def config_float(cfg: dict[str, Any], key: str, *, default: Any = _MISSING, positive: bool = True,
                 where: str = "config.json") -> float:
    """``cfg[key]`` as a finite number (``> 0`` unless ``positive`` is False)."""
    value = _lookup(cfg, key, default, where)
    if value is _MISSING:
        return float(default)
    if not _finite(value) or (positive and value <= 0):
        kind = "a finite number greater than 0" if positive else "a finite number"
        raise ConvertError(f"{where}: {key} must be {kind} (it is {_shown(value)})")
    return float(value)


def config_bool(cfg: dict[str, Any], key: str, default: bool, *, where: str = "config.json") -> bool:
    """``cfg[key]`` as true/false (absent or null: ``default``)."""
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConvertError(f"{where}: {key} must be true or false (it is {_shown(value)})")
    return value


def config_floats(cfg: dict[str, Any], key: str, n: int, default: tuple[float, ...], *, positive: bool,
                  where: str) -> tuple[float, ...]:
    """A list of ``n`` finite numbers (absent or null: ``default``)."""
    value = cfg.get(key)
    if value is None:
        return default
    ok = isinstance(value, list) and len(value) == n and all(
        _finite(x) and (not positive or x > 0) for x in value)
    if not ok:
        kind = "positive numbers" if positive else "finite numbers"
        raise ConvertError(f"{where}: {key} must be a list of {n} {kind} (it is {_shown(value)})")
    return tuple(float(x) for x in value)
