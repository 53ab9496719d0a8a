"""Process-wide llama.cpp set-up: backend initialisation and log capture.

llama.cpp and mtmd print their logs to stderr by default, which floods a
terminal and a test log. We route both to a small ring buffer instead: the
last lines become the detail of an error message when a load fails, and
``WEB2CODE_LLAMA_LOG=1`` passes them through for debugging.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from typing import Any

_lock = threading.Lock()
_initialised = False
_callback: Any = None  # keep the ctypes callback alive for the life of the process
_recent: collections.deque[str] = collections.deque(maxlen=400)
_count = 0  # lines logged since start (a mark for log_since)


def _on_log(level: int, text: bytes | None, user_data: ctypes.c_void_p | None) -> None:
    if not text:
        return
    global _count
    line = text.decode("utf-8", errors="replace")
    _recent.append(line.rstrip("\n"))
    _count += 1
    if os.environ.get("WEB2CODE_LLAMA_LOG"):
        sys.stderr.write(line)


def init() -> None:
    """Initialise llama.cpp's backends once and capture its logs."""
    global _initialised, _callback
    with _lock:
        if _initialised:
            return
        import llama_cpp
        from llama_cpp import mtmd_cpp

        _callback = llama_cpp.llama_log_callback(_on_log)
        llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_log_set(_callback, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_helper_log_set(_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _initialised = True


def recent_log(n: int = 12) -> list[str]:
    """The last n non-empty lines llama.cpp logged (for error details)."""
    lines = [ln for ln in _recent if ln.strip()]
    return lines[-n:]


def log_mark() -> int:
    """A position in the log, for :func:`log_since`."""
    return _count


def log_since(mark: int) -> list[str]:
    """Lines logged after ``mark`` (as many as the ring buffer still holds)."""
    n = min(_count - mark, len(_recent))
    return list(_recent)[len(_recent) - n:] if n > 0 else []
