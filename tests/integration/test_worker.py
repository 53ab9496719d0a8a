"""The worker process never hangs its caller: stopped, killed, silent or garbage-writing children.

Every test drives a real child process (the tiny pair through the real llama.cpp)
and fails in bounded time even if the backend under test would block forever:
the request runs on a helper thread and the test SIGKILLs the child when its
own deadline passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import TinyPair
from tests.integration.test_backends import _alive
from tests.offload import OFFLOAD
from web2code.app.engine import worker as worker_mod
from web2code.app.engine.backend import Request
from web2code.app.engine.events import Event, Failed, Finished, GenerationParams, Progress, Token
from web2code.app.engine.pair import ModelPair, discover
from web2code.app.engine.session import EngineOptions
from web2code.app.engine.worker import (
    END_OF_REQUEST,
    HEARTBEAT,
    HEARTBEAT_S,
    READY,
    WorkerBackend,
    request_to_dict,
    worker_command,
)

LONG = GenerationParams(temperature=0.0, max_tokens=2000)
SHORT = GenerationParams(temperature=0.0, max_tokens=4)


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (336, 336, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def pair(tiny_pair: TinyPair) -> ModelPair:
    return next(p for p in discover(tiny_pair.dir) if p.quant == "F32")


@pytest.fixture
def worker(pair: ModelPair) -> Iterator[WorkerBackend]:
    w = WorkerBackend(pair, EngineOptions(**OFFLOAD, n_threads=1))
    yield w
    pid = w.pid
    if pid is not None:  # never leave a stopped child behind, whatever the test did
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
    w.close()


def _sigstop(pid: int) -> None:
    """SIGSTOP, and wait until it has taken effect (asynchronous, in some sandboxes noticeably)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "T":
        assert time.monotonic() < deadline, "the worker did not stop"
        time.sleep(0.005)


class Run:
    """One request consumed on a helper thread; ``on_event`` runs for each event on that thread."""

    def __init__(self, w: WorkerBackend, params: GenerationParams,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.w = w
        self.events: list[Event] = []
        self.ended_at = 0.0
        self._on_event = on_event
        self._thread = threading.Thread(target=self._run, args=(params,), daemon=True)
        self._thread.start()

    def _run(self, params: GenerationParams) -> None:
        for ev in self.w.generate(_image(), params):
            self.events.append(ev)
            if self._on_event is not None:
                self._on_event(ev)
        self.ended_at = time.monotonic()

    def wait_until(self, cond: Callable[[], bool], limit: float = 90.0) -> None:
        """Wait for ``cond`` while the request runs; fail (showing the events) if it ends first."""
        deadline = time.monotonic() + limit
        while not cond():
            assert self._thread.is_alive(), f"the request ended early: {self.events[-3:]}"
            assert time.monotonic() < deadline, f"timed out; events so far: {self.events[-3:]}"
            time.sleep(0.01)

    def join(self, limit: float) -> bool:
        """Whether the request ended within ``limit`` s; if not, the child is killed so the test can go on."""
        self._thread.join(limit)
        if not self._thread.is_alive():
            return True
        pid = self.w.pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self._thread.join(30)
        return False


def _next_request_works(w: WorkerBackend, old_pid: int) -> None:
    run = Run(w, SHORT)
    assert run.join(60), "the next request hung"
    assert isinstance(run.events[-1], Finished), run.events[-1]
    assert sum(isinstance(e, Token) for e in run.events) == 4
    assert w.pid is not None and w.pid != old_pid
    assert not _alive(old_pid)


def _stopped_run(worker: WorkerBackend, at: Callable[[Event], bool]) -> tuple[Run, int]:
    """A long request whose worker is SIGSTOPped at the first event ``at`` accepts; the run and that pid."""
    stopped = threading.Event()

    def stop_it(ev: Event) -> None:
        if at(ev) and not stopped.is_set():
            assert worker.pid is not None
            _sigstop(worker.pid)
            stopped.set()

    run = Run(worker, LONG, stop_it)
    run.wait_until(stopped.is_set)
    assert worker.pid is not None
    return run, worker.pid


def _third_token(ev: Event) -> bool:
    return isinstance(ev, Token) and ev.index == 2


def test_cancel_ends_a_request_on_a_stopped_worker_within_seconds(worker: WorkerBackend) -> None:
    run, pid = _stopped_run(worker, _third_token)
    time.sleep(0.5)
    t0 = time.monotonic()
    worker.cancel()
    assert time.monotonic() - t0 < 0.1  # cancel() itself never waits on the child
    assert run.join(20), "cancel() did not end the request of a stopped worker"
    took = run.ended_at - t0
    print(f"cancel of a SIGSTOPped worker (mid-generation) ended the request in {took:.2f} s")
    assert took < 6
    last = run.events[-1]
    assert isinstance(last, Failed) and "stopped responding" in last.message, last
    assert "next request" in last.message
    _next_request_works(worker, pid)


def test_cancel_ends_a_request_whose_worker_stopped_while_loading(worker: WorkerBackend) -> None:
    run, pid = _stopped_run(worker, lambda ev: isinstance(ev, Progress) and ev.phase == "load")
    t0 = time.monotonic()
    worker.cancel()
    assert run.join(20), "cancel() did not end the request of a worker stopped while loading"
    took = run.ended_at - t0
    print(f"cancel of a SIGSTOPped worker (loading) ended the request in {took:.2f} s")
    assert took < 6
    assert isinstance(run.events[-1], Failed) and "stopped responding" in run.events[-1].message
    assert not any(isinstance(e, Token) for e in run.events)
    _next_request_works(worker, pid)


def test_a_stopped_worker_is_ended_after_the_silence_limit_without_a_cancel(worker: WorkerBackend) -> None:
    worker.silence_limit_s = 2.0  # the default (10 s) works the same way, only slower
    run, pid = _stopped_run(worker, _third_token)
    t0 = time.monotonic()
    assert run.join(20), "a silent worker held the request"
    assert run.ended_at - t0 < 6
    assert isinstance(run.events[-1], Failed) and "stopped responding" in run.events[-1].message
    _next_request_works(worker, pid)


def test_the_child_beats_while_a_request_runs_and_is_quiet_when_idle(pair: ModelPair) -> None:
    """The raw protocol: heartbeats between the events of a running request, none after its end."""
    proc = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for cmd in ({"op": "load", "pair": {"model": str(pair.model), "mmproj": str(pair.mmproj)},
                     # On the CPU even with the offload switch: the protocol's timing is the subject, and
                     # 2,000 steps of four variants take many minutes on a software GPU.
                     "options": {"n_gpu_layers": 0, "n_threads": 1, "speculative": False}},
                    # Four variants, one token a step: a few seconds of work, with the load.
                    {"op": "run", "request": request_to_dict(Request(_image(), LONG.replace(n_variants=4)))}):
            proc.stdin.write((json.dumps(cmd) + "\n").encode())
        proc.stdin.flush()
        assert proc.stdout.readline() == READY
        stamps: list[tuple[float, bytes]] = []
        while True:
            line = proc.stdout.readline()
            assert line, "the worker died"
            stamps.append((time.monotonic(), line))
            if line == END_OF_REQUEST:
                break
        beats = [t for t, line in stamps if line == HEARTBEAT]
        took = stamps[-1][0] - stamps[0][0]
        assert took > 4 * HEARTBEAT_S, "too quick to tell"
        assert len(beats) >= took / HEARTBEAT_S / 2, (len(beats), took)  # half of them, on a busy machine
        # Idle: nothing at all (an unread pipe must never fill up with heartbeats).
        os.set_blocking(proc.stdout.fileno(), False)
        time.sleep(3 * HEARTBEAT_S)
        assert proc.stdout.read() is None
    finally:
        proc.kill()
        proc.wait()


def test_cancel_of_a_worker_that_is_still_starting_ends_at_once(worker: WorkerBackend) -> None:
    run = Run(worker, LONG)
    run.wait_until(lambda: worker.pid is not None, 30)
    pid = worker.pid
    assert pid is not None
    t0 = time.monotonic()
    worker.cancel()
    assert run.join(20)
    assert run.ended_at - t0 < 3
    last = run.events[-1]
    assert isinstance(last, Finished) and last.stats.finish_reason == "cancelled", last
    assert sum(isinstance(e, Token) for e in run.events) < 50
    run2 = Run(worker, SHORT)
    assert run2.join(60) and isinstance(run2.events[-1], Finished)
    assert run2.events[-1].stats.finish_reason != "cancelled"  # the earlier cancel does not leak into it


def test_stop_during_load_is_a_cancel_and_keeps_the_worker(worker: WorkerBackend) -> None:
    def cancel_at_load(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.phase == "load":
            worker.cancel()

    run = Run(worker, LONG, cancel_at_load)
    assert run.join(30)
    last = run.events[-1]
    assert isinstance(last, Finished) and last.stats.finish_reason == "cancelled", last
    pid = worker.pid
    run2 = Run(worker, SHORT)
    assert run2.join(60) and isinstance(run2.events[-1], Finished)
    assert worker.pid == pid  # the same child: what it loaded is kept


def test_killed_while_loading_is_a_clear_failure_and_the_next_request_works(worker: WorkerBackend) -> None:
    killed: list[int] = []

    def kill_at_load(ev: Event) -> None:
        if isinstance(ev, Progress) and ev.phase == "load" and not killed:
            assert worker.pid is not None
            killed.append(worker.pid)
            os.kill(worker.pid, signal.SIGKILL)

    run = Run(worker, LONG, kill_at_load)
    assert run.join(20)
    last = run.events[-1]
    assert isinstance(last, Failed) and "SIGKILL" in last.message and "next request" in last.message
    _next_request_works(worker, killed[0])


def test_close_ends_a_stopped_worker_and_its_request_quickly(worker: WorkerBackend) -> None:
    run, pid = _stopped_run(worker, _third_token)
    t0 = time.monotonic()
    worker.close()
    closed = time.monotonic() - t0
    assert run.join(10)
    print(f"close() of a SIGSTOPped worker: {closed:.2f} s; request ended after {run.ended_at - t0:.2f} s")
    assert closed < 2.5 and run.ended_at - t0 < 3
    assert not _alive(pid)
    last = run.events[-1]
    assert isinstance(last, Finished) and last.stats.finish_reason == "cancelled", last


def test_a_child_that_writes_garbage_is_a_clear_failure(pair: ModelPair, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A real process in the worker's place that answers with something that is not an event.
    script = tmp_path / "garbage_worker.py"
    script.write_text(textwrap.dedent("""
        import sys
        print('{"ready":true}', flush=True)
        for line in sys.stdin:
            if '"run"' in line:
                print('{"type":"token","text":5,"token_id":"x","index":0}', flush=True)
                print('not json at all', flush=True)
    """))
    monkeypatch.setattr(worker_mod, "worker_command", lambda: [sys.executable, str(script)])
    with WorkerBackend(pair) as w:
        run = Run(w, SHORT)
        assert run.join(20)
        assert len(run.events) == 1
        last = run.events[-1]
        assert isinstance(last, Failed) and "malformed event" in last.message and "next request" in last.message
        pid = w.pid
        assert pid is None  # ended; the next request starts a new child


@pytest.mark.parametrize("stop_it", [False, True], ids=["healthy", "stopped"])
def test_a_request_left_half_read_does_not_hang_or_leak_into_the_next(worker: WorkerBackend,
                                                                      stop_it: bool) -> None:
    gen = worker.generate(_image(), LONG)
    pid = None
    for ev in gen:
        if isinstance(ev, Token) and ev.index == 2:
            pid = worker.pid
            assert pid is not None
            if stop_it:
                _sigstop(pid)
            break
    t0 = time.monotonic()
    done = threading.Thread(target=gen.close, daemon=True)  # what a consumer that stops reading does
    done.start()
    done.join(15)
    if done.is_alive() and pid is not None:
        os.kill(pid, signal.SIGKILL)
    assert not done.is_alive(), "leaving a request half-read hung"
    assert time.monotonic() - t0 < 6
    run = Run(worker, SHORT)
    assert run.join(60)
    assert [type(e).__name__ for e in run.events if isinstance(e, (Token, Finished))][-1] == "Finished"
    assert sum(isinstance(e, Token) for e in run.events) == 4  # none of the earlier request's tokens
    assert (worker.pid != pid) == stop_it  # a healthy child is kept, a stopped one replaced
