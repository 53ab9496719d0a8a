"""Running backend requests off the GUI thread, and choosing the backend from the settings."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from .. import config
from ..engine import pair as pairs
from ..engine.backend import Backend, Request
from ..engine.events import Event, Failed, Finished, Stats
from ..errors import BackendError, Web2CodeError
from .throttle import Throttle


class _Runner(QObject):
    """Lives on the engine thread and runs the jobs handed to it, one after another."""

    submit = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.submit.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, job: StreamJob) -> None:
        job.execute()


class EngineThread(QThread):
    """One long-lived thread for every request of the application.

    Long-lived on purpose: the worker backend starts its engine process from the
    thread that first calls ``stream``, and on Linux that child is killed when
    the *thread* that started it ends (PR_SET_PDEATHSIG follows the parent
    thread). A thread per request would throw away the loaded model and the
    encoded-image cache after every request.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("web2code-engine")
        self.runner = _Runner()
        self.runner.moveToThread(self)
        self.start()

    def stop(self) -> None:
        self.quit()
        self.wait(10000)


FRAME_MS = 16  # events reach the GUI at most once per frame (~60 Hz)


class StreamJob(QObject):
    """One request: ``backend.stream(request)`` iterated on the engine thread, events relayed in batches.

    The engine thread queues every event; the GUI thread takes them in batches,
    at most once per frame (:data:`FRAME_MS`), through :attr:`delivered`. So a
    page of thousands of tokens costs the GUI a few hundred signals, not one per
    token, at any decoding speed. :attr:`finished` follows the last delivery.

    The GUI thread only ever calls :meth:`cancel` (``Backend.cancel`` is thread-safe).
    """

    delivered = Signal(list)  # the events since the last delivery, in order
    finished = Signal()
    _wake = Signal()  # engine thread -> GUI thread: events are waiting (at most one in flight)

    def __init__(self, backend: Backend, request: Request, thread: EngineThread,
                 parent: QObject | None = None, *, prepare: Callable[[Request], Request] | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.request = request
        self.prepare = prepare  # turns the request into what is sent, on the engine thread (a batch's photos)
        self.cancelled = False
        self._thread = thread
        self._done = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._woken = False
        self._ended = False
        self._finished_sent = False
        self._throttle = Throttle(self._deliver, FRAME_MS, self)
        self._wake.connect(self._on_wake, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        self._started = True
        self._thread.runner.submit.emit(self)

    def execute(self) -> None:
        """Runs on the engine thread."""
        try:
            if self.cancelled:  # stopped before it began: it ends as a stopped request, not in silence
                self._push(Finished(Stats(finish_reason="cancelled")), end=False)
            else:
                relayed = False
                if self.prepare is not None:
                    self.request = self.prepare(self.request)
                for ev in self.backend.stream(self.request):
                    self._push(ev, end=False)
                    if self.cancelled and not relayed:
                        # A backend resets its cancel state when it begins a request, so a Stop pressed
                        # between our check above and that moment was lost: say it again now it runs.
                        relayed = True
                        with contextlib.suppress(Exception):
                            self.backend.cancel()
        except Exception as exc:  # a bug below the backend: still a message, not a dead thread
            self._push(Failed.from_exception(exc), end=False)
        finally:
            self._push(None, end=True)
            self._done.set()

    def _push(self, ev: Event | None, end: bool) -> None:
        with self._lock:
            if ev is not None:
                self._pending.append(ev)
            self._ended = self._ended or end
            if self._woken:
                return
            self._woken = True
        self._wake.emit()

    @Slot()
    def _on_wake(self) -> None:
        with self._lock:
            ended = self._ended
        if ended:  # the last batch goes at once: nothing more will come
            self._throttle.cancel()
            self._deliver()
        else:
            self._throttle()

    def _deliver(self) -> None:
        """GUI thread: hand over what arrived, then ``finished`` once the stream has ended."""
        with self._lock:
            batch, self._pending = self._pending, []
            self._woken = False
            end = self._ended and not self._finished_sent
            self._finished_sent = self._finished_sent or end
        if batch:
            self.delivered.emit(batch)
        if end:
            self.finished.emit()

    def cancel(self) -> None:
        self.cancelled = True
        with contextlib.suppress(Exception):
            self.backend.cancel()

    def wait(self, timeout_ms: int) -> bool:
        return not self._started or self._done.wait(timeout_ms / 1000)

    def isFinished(self) -> bool:
        return not self._started or self._done.is_set()


class NoModel(Web2CodeError):
    """No model pair is installed and no server is configured."""


class BackendProvider:
    """Creates the backend lazily from the settings and keeps it (the engine keeps its caches)."""

    def __init__(self, settings: config.Settings,
                 factory: Callable[[config.Settings], Backend] | None = None) -> None:
        self.settings = settings
        self._backend: Backend | None = None
        self._factory = factory
        self.pair: pairs.ModelPair | None = None
        self._thread: EngineThread | None = None
        self._retired: list[Backend] = []  # replaced by reset(), closed once their jobs are done

    @property
    def thread(self) -> EngineThread:
        """The engine thread every request runs on (started on first use)."""
        if self._thread is None:
            self._thread = EngineThread()
        return self._thread

    def job(self, request: Request, parent: QObject | None = None, *,
            prepare: Callable[[Request], Request] | None = None) -> StreamJob:
        return StreamJob(self.get(), request, self.thread, parent, prepare=prepare)

    def models_dir(self) -> Path:
        return config.models_dir(self.settings.models_dir or None)

    def installed(self) -> list[pairs.ModelPair]:
        return pairs.discover(self.models_dir())

    def has_model(self) -> bool:
        return bool(self.settings.remote_url.strip()) or bool(self.installed())

    def describe(self) -> str:
        if self.settings.remote_url.strip():
            return f"server {self.settings.remote_url.strip()}"
        chosen = pairs.choose(self.installed(), self.settings.default_quant)
        return chosen.label if chosen is not None else "no model"

    def get(self) -> Backend:
        """The backend to use; raises :class:`NoModel` or a :class:`BackendError` with a user message."""
        if self._backend is not None:
            return self._backend
        if self._factory is not None:
            self._backend = self._factory(self.settings)
            return self._backend
        url = self.settings.remote_url.strip()
        if url:
            from ..engine.remote import DEFAULT_TIMEOUT, RemoteBackend

            key = self.settings.remote_api_key.strip() or os.environ.get("WEB2CODE_API_KEY") or None
            timeout = float(self.settings.remote_timeout_s) if self.settings.remote_timeout_s > 0 else DEFAULT_TIMEOUT
            self._backend = RemoteBackend(url, api_key=key, logit_offset=self._local_logit_offset(),
                                          read_timeout=timeout)
            self.pair = None
            return self._backend
        chosen = pairs.choose(self.installed(), self.settings.default_quant)
        if chosen is None:
            raise NoModel(f"No model is installed in {self.models_dir()}. Get the model or add model files "
                          "(Models…), or set a server in Settings.")
        from ..engine.session import EngineOptions
        from ..engine.worker import WorkerBackend

        gl = self.settings.gpu_layers.strip().lower()
        try:
            n_gpu = None if gl in ("", "auto") else max(0, int(gl))
        except ValueError as exc:
            raise BackendError(f"GPU layers must be 'auto' or a number, not {gl!r} (Settings).") from exc
        opts = EngineOptions(n_gpu_layers=n_gpu, vision_gpu=self.settings.vision_on_gpu,
                             n_threads=max(0, self.settings.threads),
                             flash_attention=self.settings.flash_attention)
        self.pair = chosen
        self._backend = WorkerBackend(chosen, opts)
        return self._backend

    def _local_logit_offset(self) -> Any:
        """The model's logit offset from an installed copy of the pair, for a remote server; None without one."""
        chosen = pairs.choose(self.installed(), self.settings.default_quant)
        if chosen is None:
            return None
        try:
            return pairs.inspect_pair(chosen).logit_offset
        except (Web2CodeError, OSError, ValueError):  # a damaged local copy must not stop the server
            return None

    @property
    def current(self) -> Backend | None:
        return self._backend

    def reset(self, settings: config.Settings | None = None) -> None:
        """Forget the backend (settings or models changed); the next :meth:`get` makes a new one.

        A request already running (or already handed to the engine thread) finishes on the old
        backend: it is closed on the engine thread after them, never under them, and before
        any request of the new one starts (so two engine processes never hold a model at once).
        """
        if settings is not None:
            self.settings = settings
        b, self._backend = self._backend, None
        if b is None:
            return
        if self._thread is None:  # nothing ever ran on it
            _close_quietly(b)
            return
        self._retired.append(b)
        self._thread.runner.submit.emit(_Retire(b, self._retired))

    def close(self) -> None:
        """Close the backend now (ends its engine process; a running request ends as cancelled)."""
        b, self._backend = self._backend, None
        if b is not None:
            _close_quietly(b)
        while True:  # list.pop is atomic: each retired backend is closed here or by its _Retire, once
            try:
                old = self._retired.pop()
            except IndexError:
                break
            _close_quietly(old)

    def shutdown(self) -> None:
        """Close the backend and end the engine thread (the application is closing)."""
        self.close()
        t, self._thread = self._thread, None
        if t is not None:
            t.stop()


def _close_quietly(backend: Backend) -> None:
    with contextlib.suppress(Exception):
        backend.close()


class _Retire:
    """Queued on the engine thread like a job: closes a backend once the jobs before it are done."""

    def __init__(self, backend: Backend, retired: list[Backend]) -> None:
        self.backend = backend
        self._retired = retired

    def execute(self) -> None:
        try:
            self._retired.remove(self.backend)
        except ValueError:
            return  # BackendProvider.close got there first
        _close_quietly(self.backend)


def event_name(ev: Event) -> str:
    return type(ev).__name__
