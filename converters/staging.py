"""The output folder as a transaction: temporaries, a run lock, stale clean-up, all-or-nothing replacement.

Every file a run creates in OUTDIR carries the run's token ``<pid>-<random>``:

* ``.<file>.w2c-<token>.incomplete``: an output being written (renamed into place at the end);
* ``.w2c-<token>.lock``: held with ``flock`` for the whole run, so another run can tell a live
  run (lock held, even in another PID namespace) from a killed one (the kernel dropped the lock);
* ``.w2c-<token>.work/``: a private folder (llama.cpp's quantizer writes there: removing the
  folder is the only way to stop a native writer that cannot be cancelled from creating its file);
* ``.w2c-<token>.journal``, ``.<file>.w2c-<token>.backup``: only while outputs are being replaced.

:func:`remove_stale` deletes what killed runs left (``kill -9``, power loss) and never what a
live run is using. :meth:`Staging.commit` replaces the outputs as one step: old files are moved
aside first, and if any rename fails, or the run is interrupted in between, the old files come
back; the manifest is renamed last, so a folder with a manifest holds a complete pair.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import ConvertError

try:
    import fcntl
except ImportError:  # Windows: no flock; liveness falls back to the pid
    fcntl = None  # type: ignore[assignment]

_TOKEN = r"(?P<token>(?P<pid>\d+)-[0-9a-f]+)"
#: Files of a run, by kind.
_RUN_FILE = re.compile(rf"^\.(?P<final>.+)\.w2c-{_TOKEN}\.(?P<kind>incomplete|backup)$")
_RUN_OWN = re.compile(rf"^\.w2c-{_TOKEN}\.(?P<kind>lock|lock-init|journal|work)$")
_PROBE = re.compile(rf"^\.w2c-probe-{_TOKEN}$")
#: The longest run token (``pid_max`` is at most 2**22 on Linux) with the longest suffix: the room a
#: temporary name needs beyond the final name.
TEMP_OVERHEAD = len(".w2c-4194304-00000000.incomplete") + 1


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # exists but not ours, or a pid we cannot ask about: assume alive
    return True


def _remove(path: Path) -> None:
    """Delete a file, or a folder and what it holds; gone already is fine."""
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(st.st_mode):
        # A native writer may create its file while we delete: try until the folder is gone
        # (once it is, nobody can create anything in it).
        for _ in range(100):
            try:
                shutil.rmtree(path)
                return
            except FileNotFoundError:
                return
            except OSError:
                continue
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Yield True while holding ``path``'s flock (its owner is dead), False if a live run holds it."""
    if fcntl is None:
        yield False
        return
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            raise OSError("not a lock file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        yield False  # gone or unreadable: decide on a later run
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _run_files(outdir: Path) -> dict[str, list[tuple[Path, str, str]]]:
    """Every run's leftovers in ``outdir``: token -> [(path, kind, final name or "")]."""
    runs: dict[str, list[tuple[Path, str, str]]] = {}
    try:
        entries = list(outdir.iterdir())
    except OSError:
        return runs
    for path in entries:
        m = _RUN_FILE.match(path.name) or _RUN_OWN.match(path.name)
        if m:
            kind = m.group("kind")
            final = m.group("final") if "final" in m.groupdict() else ""
            runs.setdefault(m.group("token"), []).append((path, kind, final))
        elif m := _PROBE.match(path.name):
            runs.setdefault(m.group("token"), []).append((path, "probe", ""))
    return runs


def _dead(token: str, locks: list[Path], stack: contextlib.ExitStack) -> bool:
    """Whether run ``token`` is gone; its locks stay held (in ``stack``) while its files are removed."""
    if locks and fcntl is not None:
        return all(stack.enter_context(_try_lock(p)) for p in locks)
    return not _pid_alive(int(token.split("-", 1)[0]))


def remove_stale(outdir: Path, own_token: str = "") -> list[Path]:
    """Delete what runs that no longer live left in ``outdir``; returns what was deleted.

    A run with a lock file is dead when its lock can be taken; a run without one (killed before
    it locked, or written by an older converter) when its pid no longer exists. An interrupted
    replacement is rolled back: the old outputs come back (see :meth:`Staging.commit`).
    """
    removed: list[Path] = []
    for token, files in _run_files(outdir).items():
        if token == own_token:
            continue
        locks = [p for p, kind, _ in files if kind in ("lock", "lock-init")]
        with contextlib.ExitStack() as stack:
            if not _dead(token, locks, stack):
                continue
            _roll_back_dead_run(outdir, files)
            # the locks last: while one exists, the run's token stays recognisable
            for path in [p for p, kind, _ in files if kind not in ("lock", "lock-init")] + locks:
                try:
                    if path.exists() or path.is_symlink():
                        _remove(path)
                        removed.append(path)
                except OSError:
                    pass  # not ours to delete (permissions): never a reason for this run to fail
    return removed


def _roll_back_dead_run(outdir: Path, files: list[tuple[Path, str, str]]) -> None:
    """A run killed while replacing outputs: put the old files back unless its manifest was placed.

    The journal (written before the first rename) names the targets and which of them existed.
    """
    journal = next((p for p, kind, _ in files if kind == "journal"), None)
    if journal is None:
        return
    try:
        if not stat.S_ISREG(journal.lstat().st_mode) or journal.lstat().st_size > 1 << 20:
            return
        data = json.loads(journal.read_text(encoding="utf-8"))
        manifest, targets, existing = str(data["manifest"]), list(data["targets"]), set(data["existing"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # killed while writing it: nothing was renamed yet
    temps = {final for _, kind, final in files if kind == "incomplete"}
    if manifest not in temps:
        return  # the manifest was placed: the replacement is complete; the backups are only deleted
    backups = {final: path for path, kind, final in files if kind == "backup"}
    for final in targets:
        if not isinstance(final, str) or Path(final).name != final:
            continue
        if final in existing:
            if final in backups:
                with contextlib.suppress(OSError):
                    backups[final].replace(outdir / final)
        elif final not in temps:
            # placed by the dead run where there was no file before: not part of any complete pair
            with contextlib.suppress(OSError):
                (outdir / final).unlink()


class Staging:
    """One run's files in OUTDIR: temporaries renamed into place together, or removed."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.pending: dict[Path, Path] = {}  # temp -> final
        self.scratch: list[Path] = []
        self._lock: IO[bytes] | None = None
        self._lock_path = outdir / f".w2c-{self.token}.lock"

    # -- the run lock -----------------------------------------------------------------------------
    def lock(self) -> None:
        """Create and hold this run's lock file (it appears under its final name already locked)."""
        for attempt in range(3):
            init = self.outdir / f".w2c-{self.token}.lock-init"
            fd = os.open(init, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            self._lock = os.fdopen(fd, "wb")
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                init.replace(self._lock_path)
                return
            except FileNotFoundError:
                # another run's clean-up took it for a dead run's in the instant before flock: anew
                self._unlock()
                if attempt == 2:
                    raise
                self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
                self._lock_path = self.outdir / f".w2c-{self.token}.lock"

    def _unlock(self) -> None:
        if self._lock is None:
            return
        for path in (self._lock_path, self.outdir / f".w2c-{self.token}.lock-init"):
            with contextlib.suppress(OSError):
                path.unlink()
        self._lock.close()
        self._lock = None

    # -- names ------------------------------------------------------------------------------------
    def _name(self, final: str, kind: str = "incomplete") -> Path:
        return self.outdir / f".{final}.w2c-{self.token}.{kind}"

    def temp(self, final: str) -> Path:
        path = self._name(final)
        self.pending[path] = self.outdir / final
        return path

    def scratch_file(self, label: str) -> Path:
        path = self._name(label)
        self.scratch.append(path)
        return path

    def work_dir(self) -> Path:
        """A private folder for writers that cannot be stopped (removed with everything in it)."""
        path = self.outdir / f".w2c-{self.token}.work"
        if path not in self.scratch:
            path.mkdir()
            self.scratch.append(path)
        return path

    # -- the end ----------------------------------------------------------------------------------
    def commit(self, *, force: bool) -> None:
        """Rename every temporary into place as one step (the manifest, last of ``pending``, last).

        The old files are moved aside first (the old manifest first, so the old pair leaves
        discovery at once); if a rename fails, or Ctrl-C arrives, the old files are put back.
        A run killed in between is rolled back by the next run's :func:`remove_stale`.
        """
        items = list(self.pending.items())
        existing: list[str] = []
        for _, final in reversed(items):  # manifest first
            try:
                st = final.lstat()
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) or final.is_dir():
                raise ConvertError(f"cannot replace {final}: it is not a file (nothing was replaced)")
            existing.append(final.name)
        if existing and not force:
            raise ConvertError(f"OUTDIR {self.outdir} now holds {', '.join(existing)}, written while converting "
                               "(use --force to replace)")
        journal = self.outdir / f".w2c-{self.token}.journal"
        self.scratch.append(journal)
        journal.write_text(json.dumps({"manifest": items[-1][1].name, "targets": [f.name for _, f in items],
                                       "existing": existing}), encoding="utf-8")
        moved: list[tuple[Path, Path]] = []  # (final, backup)
        placed: list[Path] = []
        try:
            for name in existing:
                final, backup = self.outdir / name, self._name(name, "backup")
                self.scratch.append(backup)
                final.replace(backup)
                moved.append((final, backup))
            for temp, final in items:
                temp.replace(final)
                placed.append(final)
        except BaseException as e:
            backed_up = {f for f, _ in moved}
            for final in placed:
                if final not in backed_up:
                    with contextlib.suppress(OSError):
                        final.unlink()
            for final, backup in moved:
                with contextlib.suppress(OSError):
                    backup.replace(final)
            if isinstance(e, OSError):
                raise ConvertError(f"replacing the outputs in {self.outdir} failed ({e.strerror or e}); "
                                   "the previous files were restored") from None
            raise
        self.pending.clear()
        # committed: the old files go (the journal last, see _roll_back_dead_run)
        for _, backup in moved:
            _remove(backup)
        _remove(journal)

    def cleanup(self) -> None:
        """Remove every temporary of this run (nothing is left after an error or Ctrl-C) and the lock."""
        for path in [*self.pending, *self.scratch]:
            _remove(path)
        self.pending.clear()
        self.scratch.clear()
        self._unlock()
