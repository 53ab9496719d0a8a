"""A native llama.cpp pointer that knows when it is closed.

Every handle of the adapter (model, context, vision) holds its pointer behind
a lock. A call takes the lock and fails with :class:`EngineClosed` once the
handle is closed, so no Python call can reach a freed pointer. ``close()`` is
idempotent and may come from any thread: it asks the running call to stop
(contexts pass that on to llama.cpp's abort callback), waits a bounded time
for it, and frees the pointer. If the call is still running when the wait
ends, the pointer is freed by that call as it returns: late, never under it.

A handle may own dependents (a model owns its contexts and vision encoder):
they close first, and a parent whose dependent could not be freed yet waits
for it in the same way.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import EngineClosed

#: How long close() waits for a running call before leaving the free to that call.
CLOSE_WAIT_S = 10.0


class Handle:
    """One native pointer, its free function, a lock and a closed flag."""

    kind = "llama.cpp object"

    def __init__(self) -> None:
        self._ptr: Any = None
        self._free: Callable[[Any], None] | None = None
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._free_on_release = False
        self._dependents: weakref.WeakSet[Handle] = weakref.WeakSet()
        self._parent: Handle | None = None

    def _adopt(self, ptr: Any, free: Callable[[Any], None], parent: Handle | None = None) -> None:
        """Take ownership of a freshly created pointer."""
        self._ptr, self._free = ptr, free
        if parent is not None:
            self._parent = parent
            parent._dependents.add(self)

    @property
    def closed(self) -> bool:
        return self._ptr is None or self._closing.is_set()

    @property
    def stopping(self) -> bool:
        """True once close() was asked for: long calls should return early."""
        return self._closing.is_set()

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        """Hold the pointer for one call; raises :class:`EngineClosed` after close."""
        with self._lock:
            if self._ptr is None or self._closing.is_set():
                raise EngineClosed(f"The {self.kind} is closed.")
            try:
                yield self._ptr
            finally:
                if self._free_on_release and not self._live_dependents():
                    self._release()

    def close(self, wait_s: float = CLOSE_WAIT_S) -> bool:
        """Free the pointer (idempotent). Returns False when a running call frees it later."""
        self._closing.set()
        done = True
        for dep in list(self._dependents):
            done = dep.close(wait_s) and done
        if not self._lock.acquire(timeout=wait_s):
            self._free_on_release = True  # the running call frees it as it returns
            return False
        try:
            if not done:
                self._free_on_release = True
                return False
            self._release()
            return True
        finally:
            self._lock.release()

    def _release(self) -> None:
        """Free now (the lock is held). A parent waiting for this handle is freed next."""
        ptr, free = self._ptr, self._free
        self._ptr, self._free_on_release = None, False
        if ptr is not None and free is not None:
            free(ptr)
        parent = self._parent
        if parent is not None and parent._free_on_release and not parent._live_dependents():
            with parent._lock:
                if parent._free_on_release and parent._ptr is not None:
                    parent._release()

    def _live_dependents(self) -> bool:
        return any(d._ptr is not None for d in self._dependents)
