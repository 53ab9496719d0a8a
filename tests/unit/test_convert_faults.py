"""Interruptions of a running ``web2code-convert``: Ctrl-C, SIGTERM and ``kill -9`` in the write window.

The real command runs in a subprocess. The write window is made observable
without sleeps: the test waits until the run's temporary file (or the
quantizer's output in the run's private folder) exists, stops the process
with SIGSTOP, checks that it is still inside the window (temporaries there, no
output in place), then delivers the signal and lets it continue.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from web2code.converters.staging import Staging, remove_stale

DEADLINE_S = 120


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory, reference_tokenizer: Path) -> Path:
    from web2code.converters.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("faults") / "ck", dtype=torch.bfloat16,
                            tokenizer_json=reference_tokenizer)


def _start(ckpt: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "web2code.converters", str(ckpt), "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen[str], found: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not found():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {DEADLINE_S} s")
        time.sleep(0.001)


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.is_dir() else []


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []


def _text_temp(out: Path) -> bool:
    return out.is_dir() and any(p.name.endswith(".incomplete") for p in out.iterdir())


def _quantizer_output(out: Path) -> bool:
    """llama.cpp's quantizer has created its output file (in the run's private folder), and runs."""
    with contextlib.suppress(OSError):
        return any(p.name == "Q8_0.gguf" or (p.name.startswith(".ck-Q8_0.gguf.") and p.name.endswith(".incomplete"))
                   for p in out.rglob("*"))
    return False


@contextlib.contextmanager
def _stopped(proc: subprocess.Popen[str]) -> Iterator[None]:
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "window"), [
    (signal.SIGINT, "text"), (signal.SIGTERM, "text"), (signal.SIGINT, "quantize"),
])
def test_interrupt_in_the_write_window_exits_130_and_leaves_nothing(
    small_ckpt: Path, tmp_path: Path, sig: signal.Signals, window: str
) -> None:
    out = tmp_path / "out"
    proc = _start(small_ckpt, out, "--quant", "F32", "--quant", "Q8_0")
    probe = _text_temp if window == "text" else _quantizer_output
    _wait_for(proc, lambda: probe(out), f"{window} temporary")
    with _stopped(proc):
        assert probe(out) and _outputs(out) == [], "not inside the write window"
        os.kill(proc.pid, sig)
    rc, err = _finish(proc)
    lines = [line for line in err.splitlines() if line.strip()]
    # before the fix, Ctrl-C inside llama.cpp's quantizer was swallowed by its log callback (rc 0)
    assert rc == 130, err
    assert lines[-1] == "interrupted: no output was written", err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not out.exists(), _hidden(out)  # the folder it created is gone with its temporaries


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch loading")
def test_interrupt_while_starting_up_exits_130(small_ckpt: Path, tmp_path: Path) -> None:
    """Ctrl-C while torch is still being imported (before, Python died of SIGINT with a traceback)."""
    out = tmp_path / "out"
    proc = _start(small_ckpt, out)
    maps = Path(f"/proc/{proc.pid}/maps")

    def torch_loading() -> bool:
        with contextlib.suppress(OSError):
            return "libtorch_cpu" in maps.read_text()
        return False

    _wait_for(proc, torch_loading, "torch import")
    with _stopped(proc):
        assert not out.exists()
        os.kill(proc.pid, signal.SIGINT)
    rc, err = _finish(proc)
    assert rc == 130, err
    assert [line for line in err.splitlines() if line.strip()] == ["interrupted: no output was written"], err
    assert not out.exists()


@pytest.mark.slow
def test_interrupt_while_replacing_keeps_the_old_pair(small_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _finish(_start(small_ckpt, out, "--quant", "F16"))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _start(small_ckpt, out, "--quant", "F16", "--force")
    _wait_for(proc, lambda: _text_temp(out), "temporary")
    with _stopped(proc):
        os.kill(proc.pid, signal.SIGINT)
    assert _finish(proc)[0] == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_kill_9_leftovers_are_removed_by_the_next_run(small_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start(small_ckpt, out, "--quant", "F32", "--quant", "Q8_0")
    _wait_for(proc, lambda: _quantizer_output(out), "quantizer output")
    with _stopped(proc):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=DEADLINE_S)
    left = _hidden(out)
    assert any(n.endswith(".incomplete") for n in left) and any(n.endswith(".lock") for n in left), left
    assert any(n.endswith(".work") for n in left), left
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert size > 10 * 2**20  # what used to wait for a later run, and count against its free space

    rc, err = _finish(_start(small_ckpt, out, "--quant", "F32", "--quant", "Q8_0"))
    assert rc == 0, err
    assert "removed" in err and "interrupted run" in err
    assert _hidden(out) == []
    assert _outputs(out) == ["ck-F32.gguf", "ck-Q8_0.gguf", "manifest.json", "mmproj-ck-f16.gguf"]


@pytest.mark.slow
def test_a_live_concurrent_run_keeps_its_temporaries(small_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    a = _start(small_ckpt, out, "--quant", "F32", "--name", "a", "--force")
    _wait_for(a, lambda: _text_temp(out), "temporary")
    with _stopped(a):  # alive, stopped inside its write window while b runs in the same folder
        mine = _hidden(out)
        assert any(n.endswith(".incomplete") for n in mine), mine
        rc, err = _finish(_start(small_ckpt, out, "--quant", "F16", "--name", "b"))
        assert rc == 0, err
        assert set(mine) <= set(_hidden(out)), "b removed a live run's files"
    rc, err = _finish(a)
    assert rc == 0, err
    assert _hidden(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "a" and (out / "a-F32.gguf").is_file() and (out / "b-F16.gguf").is_file()


def test_leftovers_of_a_killed_run_do_not_count_against_free_space(
    small_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the free-space check came before the clean-up: a nearly full disk stayed full."""
    from web2code.converters import convert as convert_module
    from web2code.converters.convert import ConvertOptions, convert

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = [out / f".ck-F16.gguf.w2c-{dead}-0000aaaa.incomplete",  # an older converter: no lock
             out / ".ck-F16.gguf.w2c-999999999-0000bbbb.incomplete",  # a lock nobody holds: dead
             out / ".w2c-999999999-0000bbbb.lock"]
    for p in stale:
        p.write_bytes(b"\0" * 4096)

    def free(path: Path) -> int:  # the disk is full until the stale files are gone
        return 0 if any(p.exists() for p in stale) else 2**40

    monkeypatch.setattr(convert_module, "free_bytes", free)
    convert(ConvertOptions(outdir=out, source=str(small_ckpt), quants=["F16"]))
    assert _hidden(out) == []


# -- the staging rules, directly ----------------------------------------------------------------------
def test_remove_stale_keeps_a_locked_run_whatever_its_pid(tmp_path: Path) -> None:
    """A run in another PID namespace has a pid that means nothing here: its lock decides."""
    token = "999999999-abcdef01"  # no such pid on this machine
    temp = tmp_path / f".x.gguf.w2c-{token}.incomplete"
    temp.write_bytes(b"data")
    lock = tmp_path / f".w2c-{token}.lock"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
                               "print('locked', flush=True); sys.stdin.read()", str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert remove_stale(tmp_path) == []
        assert temp.exists() and lock.exists()
    finally:
        holder.communicate("", timeout=DEADLINE_S)  # the holder exits: the kernel drops its lock
    assert sorted(remove_stale(tmp_path)) == sorted([temp, lock])
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_without_a_lock_uses_the_pid(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_temp = tmp_path / f".m.gguf.w2c-{dead.stdout.strip()}-0000aaaa.incomplete"  # an older converter's
    live_temp = tmp_path / f".m.gguf.w2c-{os.getppid()}-0000bbbb.incomplete"
    user_file = tmp_path / ".m.gguf.w2c-notes.txt"
    for p in (dead_temp, live_temp, user_file):
        p.write_bytes(b"x")
    assert remove_stale(tmp_path) == [dead_temp]
    assert live_temp.exists() and user_file.exists()


def _old_pair(folder: Path) -> dict[str, bytes]:
    files = {"m-F16.gguf": b"old model", "mmproj-m-f16.gguf": b"old mmproj", "manifest.json": b"old manifest"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _new_pair(staging: Staging) -> None:
    for name in ("m-F16.gguf", "m-F32.gguf", "mmproj-m-f16.gguf", "manifest.json"):  # manifest last
        staging.temp(name).write_bytes(b"new " + name.encode())


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("fail_at", [1, 3, 5])
def test_commit_failing_midway_restores_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """A rename that fails (EIO, a vanished disk) cannot be made for real here: inject it."""
    from web2code.converters.errors import ConvertError

    old = _old_pair(tmp_path)
    staging = Staging(tmp_path)
    staging.lock()
    _new_pair(staging)
    real_replace = Path.replace
    calls = []

    def flaky(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == fail_at:
            raise OSError(5, "Input/output error")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", flaky)
    with pytest.raises(ConvertError, match="previous files were restored"):
        staging.commit(force=True)
    monkeypatch.undo()
    staging.cleanup()
    assert _contents(tmp_path) == old


def test_commit_replaces_the_pair_and_removes_the_old_files(tmp_path: Path) -> None:
    _old_pair(tmp_path)
    staging = Staging(tmp_path)
    staging.lock()
    _new_pair(staging)
    staging.commit(force=True)
    staging.cleanup()
    assert _contents(tmp_path) == {n: b"new " + n.encode()
                                   for n in ("m-F16.gguf", "m-F32.gguf", "mmproj-m-f16.gguf", "manifest.json")}


_KILLED_COMMIT = """
import os, signal, sys
from pathlib import Path
from web2code.converters.staging import Staging
folder, kill_at = Path(sys.argv[1]), int(sys.argv[2])
staging = Staging(folder)
staging.lock()
for name in ("m-F16.gguf", "m-F32.gguf", "mmproj-m-f16.gguf", "manifest.json"):
    staging.temp(name).write_bytes(b"new " + name.encode())
real_replace, real_unlink, calls = Path.replace, Path.unlink, []
def count():
    calls.append(1)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
def replace(self, target):
    count()
    return real_replace(self, target)
def unlink(self, missing_ok=False):
    count()
    return real_unlink(self, missing_ok)
Path.replace, Path.unlink = replace, unlink
staging.commit(force=True)
"""


@pytest.mark.parametrize("kill_at", [2, 4, 6, 7, 8, 9])
def test_a_run_killed_while_replacing_is_rolled_back_or_completed_by_the_next(tmp_path: Path, kill_at: int) -> None:
    """kill -9 between two steps of the commit (renames 1-3 move the old files aside, 4-7 place the
    new ones, the manifest last; then the old files are deleted): the next run's clean-up gives the
    old pair back, or keeps the new one once its manifest was placed; never a mix, never leftovers."""
    old = _old_pair(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _KILLED_COMMIT, str(tmp_path), str(kill_at)], check=False,
                          timeout=DEADLINE_S)
    assert proc.returncode == -signal.SIGKILL
    assert _hidden(tmp_path)  # the dead run's journal, temporaries, backups, lock
    remove_stale(tmp_path)
    new = {n: b"new " + n.encode() for n in ("m-F16.gguf", "m-F32.gguf", "mmproj-m-f16.gguf", "manifest.json")}
    assert _contents(tmp_path) == (new if kill_at > 7 else old)


def test_flock_is_what_tells_a_live_run(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    staging.lock()
    staging.temp("x.gguf").write_bytes(b"x")
    lock = tmp_path / f".w2c-{staging.token}.lock"
    with lock.open("rb") as f, pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert remove_stale(tmp_path) == []  # our own run, seen from outside
    staging.cleanup()
    assert list(tmp_path.iterdir()) == []
