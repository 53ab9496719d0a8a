"""The Backend interface, and the in-process LocalBackend.

Every backend (in-process, worker process, remote server) takes the same
requests and yields the same events (events.py). A request's iterator never
raises for anything a user can cause: it ends with a ``Failed`` event instead.
``cancel()`` may be called from any thread and takes effect within one token.
"""

from __future__ import annotations

import abc
import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from PIL import Image

from ..errors import Cancelled, EngineClosed, ModelError, Web2CodeError
from .events import Event, Failed, Finished, GenerationParams, Progress, Stats
from .modelimage import ModelImage
from .pair import ModelPair
from .prompt import Exchange
from .session import EngineOptions, Session

#: A ModelImage is already the model's square (the worker pipe carries that, see modelimage.py).
ImageInput: TypeAlias = Image.Image | Path | str | bytes | ModelImage


@dataclass(frozen=True)
class Request:
    """One request: HTML generation, or a question about the page."""

    image: ImageInput
    params: GenerationParams
    kind: str = "generate"  # "generate" | "ask"
    history: tuple[Exchange, ...] = ()


class Backend(abc.ABC):
    """What the GUI, the CLI and the tests talk to."""

    name = "backend"

    @abc.abstractmethod
    def stream(self, request: Request) -> Iterator[Event]:
        """Events of one request; ends with ``Finished`` (per variant) or one ``Failed``."""

    def generate(self, image: ImageInput, params: GenerationParams | None = None) -> Iterator[Event]:
        return self.stream(Request(image, params or GenerationParams()))

    def ask(self, image: ImageInput, question: str, params: GenerationParams | None = None,
            history: Sequence[Exchange] = ()) -> Iterator[Event]:
        p = (params or GenerationParams()).replace(instruction=question)
        return self.stream(Request(image, p, "ask", tuple(history)))

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the running request (from any thread)."""

    def close(self) -> None:  # noqa: B027  (optional for backends without resources)
        """Release models, processes and connections."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def failed(exc: BaseException) -> Failed:
    return Failed.from_exception(exc)


class _Loading:
    """One load of a pair on a helper thread. It outlives a cancelled request (the next one takes
    the session); when nobody will take it (the backend closed), the session is closed."""

    def __init__(self, pair: ModelPair, options: EngineOptions) -> None:
        self.items: queue.Queue[Progress | BaseException | Session] = queue.Queue()
        self._lock = threading.Lock()
        self._abandoned = False
        self._stop = threading.Event()  # set when nobody will take the session: the load stops early
        self.thread = threading.Thread(target=self._work, args=(pair, options), name="web2code-load", daemon=True)
        self.thread.start()

    def _work(self, pair: ModelPair, options: EngineOptions) -> None:
        try:
            session = Session(pair, options, on_progress=self.items.put, cancel=self._stop)
        except BaseException as exc:  # handed to the consuming thread
            self.items.put(exc)
            return
        with self._lock:
            if not self._abandoned:
                self.items.put(session)
                return
        session.close()

    def abandon(self) -> None:
        """Nobody will take the session: close it now if it is there, or when the load ends."""
        self._stop.set()
        with self._lock:
            self._abandoned = True
            left: list[Progress | BaseException | Session] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    left.append(self.items.get_nowait())
        for item in left:
            if isinstance(item, Session):
                item.close()


class LocalBackend(Backend):
    """The engine in this process (the CLI and tests). A llama.cpp abort ends the process:
    the GUI uses :class:`~.worker.WorkerBackend` instead.

    ``close()`` may come from any thread, also during a load or a request: the
    request ends as cancelled and the model is freed once llama.cpp has stopped.
    After ``close()`` a request ends with a ``Failed`` event (``EngineClosed``).
    """

    name = "local"

    def __init__(self, pair: ModelPair, options: EngineOptions | None = None) -> None:
        self.pair = pair
        self.options = options or EngineOptions()
        self.session: Session | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._closed = False
        self._loading: _Loading | None = None

    def _load(self) -> Iterator[Event]:
        """Wait for the load on its helper thread, streaming llama.cpp's load progress. Stop ends the
        request at once; the load goes on, and the next request takes the session."""
        if self._loading is None:
            self._loading = _Loading(self.pair, self.options)
        loading = self._loading
        yield Progress("load", 0.0, f"Loading {self.pair.label}")
        last = -1.0
        while True:
            if self._cancel.is_set() or self._closed:
                raise Cancelled("Loading the model was stopped.")
            try:
                item = loading.items.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, Progress):
                if item.fraction is not None and item.fraction - last >= 0.02:
                    last = item.fraction
                    yield item
                continue
            self._loading = None
            if isinstance(item, BaseException):
                raise item
            self.session = item
            yield Progress("load", 1.0, f"Loaded {self.pair.label}")
            return

    def stream(self, request: Request) -> Iterator[Event]:
        if self._closed:
            yield failed(EngineClosed("The engine is closed."))
            return
        if not self._lock.acquire(blocking=False):
            yield Failed("Another request is still running.", error_type="GenerationError")
            return
        self._cancel.clear()
        try:
            if self.session is None:
                yield from self._load()
            if self._cancel.is_set():
                raise Cancelled()
            session = self.session
            if session is None or self._closed:
                raise EngineClosed("The engine was closed.")
            yield from session.run(request.image, request.params, kind=request.kind, history=request.history)
        except Cancelled:
            yield Finished(Stats(finish_reason="cancelled"))
        except Web2CodeError as exc:
            yield failed(exc)
        except MemoryError:
            yield failed(ModelError("Out of memory: try a smaller quantization or fewer GPU layers."))
        finally:
            self._lock.release()

    def cancel(self) -> None:
        self._cancel.set()
        s = self.session
        if s is not None:
            s.cancel()

    def close(self) -> None:
        """Free the model (idempotent; any thread). A running request ends as cancelled first."""
        self._closed = True
        self._cancel.set()
        loading, self._loading = self._loading, None
        if loading is not None:
            loading.abandon()
        s, self.session = self.session, None
        if s is not None:
            s.close()
