"""SOURCE and --vision-tower: a local folder, or a Hugging Face repo id fetched into the HF cache.

Downloads go through huggingface-hub (shared cache, resumable) and fetch only what the converter
reads: configs, the tokenizer, and one weight format (safetensors when the repo has it, else
``.bin``). A repo's code files are never fetched and never run.

Trust: a download is pinned to one commit. ``revision`` is a commit hash, or a branch or tag
that is resolved to its commit once, before anything is fetched; the files and the Hub's record
of them both come from that commit. Every fetched file is then checked against that record
(the size of every file; the sha256 of LFS files; the git blob id of the small files kept in
git itself) before the converter reads it. A file that does not match is removed from the
download cache (the next run fetches it again) and named in a one-line error. Offline, a
complete earlier download still serves, checked against the hashes its cache blobs are named by.

Progress comes from huggingface-hub's own progress hooks (the ``tqdm_class`` that
``snapshot_download`` drives), not from its printed bars: a ``progress`` callback receives plain
dicts (``revision``, ``download``, ``verify`` events; see :data:`PROGRESS_PREFIX`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConvertError

__all__ = [
    "PROGRESS_PREFIX",
    "Expected",
    "Fetched",
    "FileCheckError",
    "ProgressSink",
    "expected_files",
    "fetch",
    "is_repo_id",
    "resolve",
    "verify_files",
]

#: ``web2code-convert --progress json`` writes each progress event to stderr as this prefix and
#: one JSON object on one line. Events (all carry ``event``, ``what``, ``repo``, ``revision``):
#: ``revision`` (the commit the files come from; ``requested``: what was asked for, null for the
#: default branch; ``files``, ``bytes``: what will be fetched), ``download`` (``done``/``total``
#: bytes, ``files_done``/``files_total``), ``verify`` (``done``/``total`` bytes hashed, ``file``).
PROGRESS_PREFIX = "web2code-progress: "

#: Receives progress events; called from huggingface-hub's download threads too.
ProgressSink = Callable[[dict[str, Any]], None]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_META = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "*.index.json", "README.md"]
_ANY_WEIGHTS = ["*.safetensors", "pytorch_model*.bin"]
_CHUNK = 8 << 20
#: Seconds between two progress events of one download or check (the last one always comes).
_EVERY = 0.25


def is_repo_id(source: str) -> bool:
    return bool(_REPO_ID.match(source)) and not source.startswith((".", "/", "~"))


def _weight_patterns(files: list[str]) -> list[str]:
    if any(f.endswith(".safetensors") for f in files):
        return ["*.safetensors"]
    return ["pytorch_model*.bin"]


def _short(revision: str | None) -> str:
    return revision[:12] if revision and _COMMIT.match(revision) else revision or "main"


def _network_error(repo_id: str, what: str, e: Exception, revision: str | None = None) -> ConvertError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(e, GatedRepoError):
        return ConvertError(f"{what} {repo_id} is gated: accept its licence on huggingface.co and log in "
                            "(hf auth login), or pass a local folder")
    if isinstance(e, RevisionNotFoundError):
        return ConvertError(f"revision {revision or 'main'} of {what} {repo_id} not found on the Hugging Face Hub")
    if isinstance(e, RepositoryNotFoundError):
        return ConvertError(f"{what} {repo_id} not found on the Hugging Face Hub (and no such local folder)")
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ConvertError(
        f"cannot download {what} {repo_id} (network unavailable? {reason}); download it elsewhere "
        f"(e.g. hf download {repo_id} --local-dir DIR) and pass the local folder DIR instead"
    )


# -- what the Hub records, and checking files against it -----------------------------------------
@dataclass(frozen=True)
class Expected:
    """The Hub's record of one file at one commit (None: not known)."""

    size: int | None
    sha256: str | None = None  # LFS files: the sha256 of the content
    blob_id: str | None = None  # files kept in git itself: the git blob id (sha1 of "blob <size>\0" + content)


@dataclass(frozen=True)
class Fetched:
    """Where SOURCE's files are: a local folder (repo_id None), or a checked snapshot of one commit."""

    folder: Path
    repo_id: str | None = None
    revision: str | None = None


class FileCheckError(ConvertError):
    """A fetched file is missing or differs from the Hub's record; ``path`` is the bad file (None: missing)."""

    def __init__(self, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.path = path


def expected_files(siblings: Iterable[Any], patterns: list[str]) -> dict[str, Expected]:
    """The Hub's records (``model_info(..., files_metadata=True).siblings``) of the files ``patterns`` select.

    The selection is huggingface-hub's own (``filter_repo_objects``), so it is exactly the set
    ``snapshot_download(allow_patterns=patterns)`` fetches.
    """
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]  # lazily exported

    by_name = {s.rfilename: s for s in siblings}
    out: dict[str, Expected] = {}
    for name in filter_repo_objects(list(by_name), allow_patterns=patterns):
        s = by_name[name]
        lfs = s.lfs
        if lfs is not None:
            out[name] = Expected(size=int(lfs.size), sha256=str(lfs.sha256).lower())
        else:
            out[name] = Expected(size=None if s.size is None else int(s.size),
                                 blob_id=str(s.blob_id).lower() if s.blob_id else None)
    return out


class _Throttle:
    """Calls ``emit`` at most every ``_EVERY`` seconds (and always when ``force``); thread-safe."""

    def __init__(self, emit: ProgressSink) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._last = float("-inf")

    def __call__(self, event: Callable[[], dict[str, Any]], force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if force or now - self._last >= _EVERY:
                self._last = now
                self._emit(event())


def _digest(path: Path, size: int, algorithm: str, on_bytes: Callable[[int], None],
            should_stop: Callable[[], bool]) -> str:
    """The file's sha256, or its git blob id (``algorithm`` "git"), reading it once in chunks."""
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with path.open("rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            on_bytes(n)
            if should_stop():
                raise KeyboardInterrupt
    return h.hexdigest()


def verify_files(folder: Path, expected: Mapping[str, Expected], *, what: str = "checkpoint",
                 on_bytes: Callable[[int, int, str], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
    """Check every file in ``expected`` under ``folder``: present, the recorded size, the recorded hash.

    Raises :class:`FileCheckError` (one line naming the file) at the first difference; the cheap
    checks (presence, size) of all files come before any hashing. Each hashed file is read once,
    in chunks; ``on_bytes(done, total, file)`` follows the reading (``file`` "" at the end).
    """
    sizes: dict[str, int] = {}
    for name in sorted(expected):
        exp = expected[name]
        path = folder / name
        try:
            sizes[name] = path.stat().st_size  # follows the cache's link to its blob
        except FileNotFoundError:
            raise FileCheckError(f"{what} file {name} is missing from the download", None) from None
        except OSError as e:
            raise ConvertError(f"cannot read {what} file {name}: {e.strerror or e}") from None
        if exp.size is not None and sizes[name] != exp.size:
            raise FileCheckError(f"{what} file {name} has {sizes[name]} bytes, the Hub lists {exp.size}", path)
    total = sum(sizes.values())
    done = 0
    for name, size in sizes.items():
        exp = expected[name]
        wanted, algorithm = (exp.sha256, "sha256") if exp.sha256 else (exp.blob_id, "git")
        if wanted:
            start = done

            def step(n: int, _name: str = name) -> None:
                nonlocal done
                done += n
                if on_bytes is not None:
                    on_bytes(done, total, _name)

            try:
                got = _digest(folder / name, size, algorithm, step, should_stop)
            except OSError as e:
                raise ConvertError(f"cannot read {what} file {name}: {e.strerror or e}") from None
            if got != wanted:
                kind = "sha256" if algorithm == "sha256" else "git blob id"
                raise FileCheckError(f"{what} file {name} is corrupt: its {kind} is {got[:16]}…, "
                                     f"the Hub lists {wanted[:16]}…", folder / name)
            done = start + size
        else:
            done += size
    if on_bytes is not None:
        on_bytes(done, total, "")


def _cached_expectations(folder: Path, patterns: list[str]) -> dict[str, Expected]:
    """Offline: what the cache itself records. A snapshot file links to a blob named by the ETag the
    Hub sent with it, which is the file's sha256 (LFS) or its git blob id."""
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]  # lazily exported

    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    out: dict[str, Expected] = {}
    for name in filter_repo_objects(list(files), allow_patterns=patterns):
        path = files[name]
        blob = path.readlink().name.lower() if path.is_symlink() else ""
        if _SHA256.match(blob):
            out[name] = Expected(size=None, sha256=blob)
        elif _COMMIT.match(blob):
            out[name] = Expected(size=None, blob_id=blob)
        else:
            out[name] = Expected(size=None)  # a copy, not a link (no symlinks on this system): presence only
    return out


def _evict(path: Path) -> None:
    """Remove a file that failed its check from the download cache: its snapshot link and the blob."""
    with contextlib.suppress(OSError):
        if path.is_symlink():
            blob = path.resolve()
            path.unlink()
            if "blobs" in blob.parts:
                blob.unlink()
        else:
            path.unlink()


# -- progress from huggingface-hub's hooks -------------------------------------------------------
class _NullFile:
    """Where the hook bars "print": nowhere (huggingface-hub's text bars are not wanted here)."""

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


class _DownloadProgress:
    """Turns the progress bars ``snapshot_download`` drives into ``download`` events.

    ``snapshot_download(tqdm_class=...)`` creates one bar counting finished files and byte
    bars (bytes written to disk, including those a resumed file already had; network bytes).
    Files already complete in the cache never reach a bar, so their size is counted from the
    start (``cached``). Done bytes: ``cached`` + the largest byte bar.
    """

    def __init__(self, event: dict[str, Any], emit: ProgressSink, *, total: int, files_total: int, cached: int,
                 should_stop: Callable[[], bool]) -> None:
        self.event = event
        self.total = total
        self.files_total = files_total
        self.cached = cached
        self.should_stop = should_stop
        self.bars: list[Any] = []
        self._throttle = _Throttle(emit)

    def snapshot(self, done_all: bool = False) -> dict[str, Any]:
        byte_bars = [b for b in self.bars if getattr(b, "unit", "") == "B"]
        file_bars = [b for b in self.bars if getattr(b, "unit", "") != "B"]
        done = self.total if done_all else min(self.total, self.cached + int(max((b.n for b in byte_bars), default=0)))
        files = self.files_total if done_all else min(self.files_total, int(max((b.n for b in file_bars), default=0)))
        return {**self.event, "event": "download", "done": done, "total": self.total,
                "files_done": files, "files_total": self.files_total}

    def changed(self) -> None:
        self._throttle(self.snapshot)

    def finished(self) -> None:
        self._throttle(lambda: self.snapshot(done_all=True), force=True)

    def bar_class(self) -> type[Any]:
        from tqdm.auto import tqdm

        report = self

        class _HookBar(tqdm):  # type: ignore[misc]  # tqdm has no type information
            """A tqdm that shows nothing and reports to ``report``; also where a cancel is noticed."""

            monitor_interval = 0  # no tqdm monitor thread

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.pop("name", None)
                # counting is the point, whatever the terminal or HF_HUB_DISABLE_PROGRESS_BARS say
                kwargs["disable"] = False
                kwargs["file"] = _NullFile()
                super().__init__(*args, **kwargs)
                report.bars.append(self)

            def update(self, n: float | None = 1) -> bool | None:
                # Called for every chunk, in the download threads: the place a cancel stops them
                # (the main thread's KeyboardInterrupt alone would wait for each file to finish).
                if report.should_stop():
                    raise KeyboardInterrupt
                shown: bool | None = super().update(n)
                report.changed()
                return shown

            def display(self, msg: str | None = None, pos: int | None = None) -> bool:
                return True

        # A threading lock: tqdm's default one is a multiprocessing lock (a resource-tracker process).
        _HookBar.set_lock(threading.RLock())
        return _HookBar


def _cached_bytes(repo_id: str, revision: str, expected: Mapping[str, Expected]) -> int:
    from huggingface_hub import try_to_load_from_cache

    total = 0
    for name, exp in expected.items():
        with contextlib.suppress(Exception):
            if isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str):
                total += exp.size or 0
    return total


@contextlib.contextmanager
def _quiet_hub_log() -> Iterator[None]:
    # its retry warnings would bury the one-line error when the network is down
    hf_log = logging.getLogger("huggingface_hub")
    level = hf_log.level
    hf_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_log.setLevel(level)


# -- resolving SOURCE -----------------------------------------------------------------------------
def _check(fetched: Fetched, expected: Mapping[str, Expected], what: str, *, progress: ProgressSink | None,
           log: Callable[[str], None], should_stop: Callable[[], bool]) -> None:
    """``verify_files`` for a download: events, a log line, and a bad file removed from the cache."""
    total = sum(e.size or 0 for e in expected.values())
    hashed = [e for e in expected.values() if e.sha256 or e.blob_id]
    log(f"checking {len(expected)} files of {what} {fetched.repo_id} ({total / 1e9:.2f} GB) against the "
        f"Hub's record of revision {_short(fetched.revision)}")
    event = {"event": "verify", "what": what, "repo": fetched.repo_id, "revision": fetched.revision}
    throttle = _Throttle(progress) if progress is not None else None

    def on_bytes(done: int, total: int, file: str) -> None:
        if throttle is not None:
            throttle(lambda: {**event, "done": done, "total": total, "file": file}, force=not file)

    t0 = time.monotonic()
    try:
        verify_files(fetched.folder, expected, what=what, on_bytes=on_bytes, should_stop=should_stop)
    except FileCheckError as e:
        if e.path is None:
            raise
        _evict(e.path)
        raise ConvertError(f"{e} (revision {_short(fetched.revision)}; removed from the download cache: "
                           "run again to download it again)") from None
    log(f"{what} files match the Hub's record ({len(hashed)} hashed in {time.monotonic() - t0:.1f} s)")


def fetch(source: str, *, what: str = "checkpoint", revision: str | None = None,
          progress: ProgressSink | None = None, log: Callable[[str], None] | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> Fetched:
    """SOURCE's files: a local folder as it is, or a repo id downloaded at one commit and checked.

    ``revision``: a commit hash (pinned), a branch or a tag (resolved once), or None (main).
    ``progress`` None: huggingface-hub prints its own bars; else it receives the events.
    ``should_stop`` True stops the download and the check (KeyboardInterrupt).
    """
    say = log or (lambda message: None)
    path = Path(source).expanduser()
    try:
        exists = path.exists()
        is_dir = path.is_dir()
    except (OSError, ValueError) as e:  # a name too long for the file system, an embedded NUL
        raise ConvertError(f"{what} {source!r} cannot be used: {getattr(e, 'strerror', None) or e}") from None
    if exists:
        if not is_dir:
            raise ConvertError(f"{what} {source} is not a folder")
        if revision is not None:
            raise ConvertError(f"--revision applies to a Hugging Face repo id, not to the local folder {source}")
        return Fetched(path)
    if not is_repo_id(source):
        raise ConvertError(f"{what} folder not found: {source}")
    from huggingface_hub import HfApi, snapshot_download

    error: ConvertError
    try:
        with _quiet_hub_log():
            info = HfApi().model_info(source, revision=revision, files_metadata=True)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # huggingface-hub and its HTTP client raise many types for "offline"
        error = _network_error(source, what, e, revision)
    else:
        sha = (info.sha or "").lower()
        if not _COMMIT.match(sha) or (revision is not None and _COMMIT.match(revision.lower())
                                      and sha != revision.lower()):
            raise ConvertError(f"the Hub answered revision {info.sha!r} for {what} {source} at {revision or 'main'}; "
                               "cannot pin the download")
        siblings = info.siblings or []
        patterns = _META + _weight_patterns([s.rfilename for s in siblings])
        expected = expected_files(siblings, patterns)
        size = sum(e.size or 0 for e in expected.values())
        say(f"{what} {source}: revision {sha} ({revision or 'main'}), {len(expected)} files, {size / 1e9:.2f} GB")
        base = {"what": what, "repo": source, "revision": sha}
        bars: _DownloadProgress | None = None
        if progress is not None:
            progress({**base, "event": "revision", "requested": revision, "files": len(expected), "bytes": size})
            bars = _DownloadProgress(base, progress, total=size, files_total=len(expected),
                                     cached=_cached_bytes(source, sha, expected), should_stop=should_stop)
        try:
            # the commit hash, not ``revision``: the files and ``expected`` come from the same commit
            folder = Path(snapshot_download(source, revision=sha, allow_patterns=patterns,
                                            tqdm_class=bars.bar_class() if bars is not None else None))
        except KeyboardInterrupt:
            raise
        except Exception as e:
            if should_stop():  # a cancel that surfaced as another error (e.g. through hf-xet)
                raise KeyboardInterrupt from None
            error = _network_error(source, what, e, revision)
        else:
            if bars is not None:
                bars.finished()
            fetched = Fetched(folder, source, sha)
            _check(fetched, expected, what, progress=progress, log=say, should_stop=should_stop)
            return fetched
    # Offline, a complete earlier download in the cache still serves (of the pinned commit, if one is):
    # one weight format, as it was fetched.
    for weights in _ANY_WEIGHTS:
        try:
            folder = Path(snapshot_download(source, revision=revision, allow_patterns=[*_META, weights],
                                            local_files_only=True))
        except Exception:
            continue
        expected = _cached_expectations(folder, [*_META, *_ANY_WEIGHTS])  # every file the converter may read
        if not any(fnmatch.fnmatch(name, weights) for name in expected):
            continue  # complete only because this repo has no such weights
        say(f"offline: using the copy of {what} {source} in the download cache ({folder})")
        fetched = Fetched(folder, source, folder.name if _COMMIT.match(folder.name) else None)
        _check(fetched, expected, what, progress=progress, log=say, should_stop=should_stop)
        return fetched
    raise error


def resolve(source: str, *, what: str = "checkpoint", revision: str | None = None,
            progress: ProgressSink | None = None, log: Callable[[str], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> Path:
    """A local folder holding ``source``: the folder itself, or a checked snapshot in the HF cache."""
    return fetch(source, what=what, revision=revision, progress=progress, log=log, should_stop=should_stop).folder
