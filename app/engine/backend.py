"""The Backend interface, and the in-process LocalBackend.

Every backend (in-process, worker process, remote server) takes the same
requests and yields the same events (events.py). A request's iterator never
raises for anything a user can cause: it ends with a ``Failed`` event instead.
``cancel()`` may be called from any thread and takes effect within one token.
"""

from __future__ import annotations

import abc
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from PIL import Image

from ..errors import Cancelled, ModelError, Web2CodeError
from .events import Event, Failed, Finished, GenerationParams, Progress, Stats
from .pair import ModelPair
from .prompt import Exchange
from .session import EngineOptions, Session

ImageInput: TypeAlias = Image.Image | Path | str | bytes


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


class LocalBackend(Backend):
    """The engine in this process (the CLI and tests). A llama.cpp abort ends the process:
    the GUI uses :class:`~.worker.WorkerBackend` instead."""

    name = "local"

    def __init__(self, pair: ModelPair, options: EngineOptions | None = None) -> None:
        self.pair = pair
        self.options = options or EngineOptions()
        self.session: Session | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def _load(self) -> Iterator[Event]:
        """Load the pair on a helper thread, streaming llama.cpp's load progress."""
        q: queue.Queue[Progress | BaseException | Session] = queue.Queue()

        def work() -> None:
            try:
                q.put(Session(self.pair, self.options, on_progress=q.put))
            except BaseException as exc:  # handed to the consuming thread
                q.put(exc)

        yield Progress("load", 0.0, f"Loading {self.pair.label}")
        threading.Thread(target=work, name="web2code-load", daemon=True).start()
        last = -1.0
        while True:
            item = q.get()
            if isinstance(item, Progress):
                if item.fraction is not None and item.fraction - last >= 0.02:
                    last = item.fraction
                    yield item
                continue
            if isinstance(item, BaseException):
                raise item
            self.session = item
            yield Progress("load", 1.0, f"Loaded {self.pair.label}")
            return

    def stream(self, request: Request) -> Iterator[Event]:
        if not self._lock.acquire(blocking=False):
            yield Failed("Another request is still running.", error_type="GenerationError")
            return
        self._cancel.clear()
        try:
            if self.session is None:
                yield from self._load()
            if self._cancel.is_set():
                raise Cancelled()
            assert self.session is not None
            yield from self.session.run(request.image, request.params, kind=request.kind,
                                        history=request.history)
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
        if self.session is not None:
            self.session.cancel()

    def close(self) -> None:
        s, self.session = self.session, None
        if s is not None:
            s.close()
