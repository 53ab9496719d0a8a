"""A Hugging Face Hub stand-in on 127.0.0.1, for download tests without the network.

It answers what huggingface-hub's ``model_info(files_metadata=True)``, ``list_repo_tree`` and
``hf_hub_download`` / ``snapshot_download`` ask (plain HTTP downloads, no Xet), with the Hub's
headers (``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size``, ``X-Error-Code``)
and ranged GETs for resumed downloads. A repo is a series of commits, each a set of files;
``main`` is the latest. Files of ``lfs_over`` bytes or more are LFS files (sha256 records),
the others git files (blob ids).

Point huggingface-hub at it with ``HF_ENDPOINT`` (a child process) or :meth:`FakeHub.patch`
(this process: the library reads ``HF_ENDPOINT`` into its constants at import).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    sha: str
    files: dict[str, bytes]
    lfs_over: int
    #: served instead of the real bytes (the records stay those of ``files``): a corrupted download
    served: dict[str, bytes] = field(default_factory=dict)

    def is_lfs(self, name: str) -> bool:
        return len(self.files[name]) >= self.lfs_over

    def etag(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha256(data).hexdigest() if self.is_lfs(name) else git_blob_id(data)

    def sibling(self, name: str) -> dict[str, Any]:
        data = self.files[name]
        out: dict[str, Any] = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
        if self.is_lfs(name):
            out["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
        return out

    def tree_entry(self, name: str) -> dict[str, Any]:
        data = self.files[name]
        out: dict[str, Any] = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
        if self.is_lfs(name):
            out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return out


class FakeHub:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, Repo]] = {}  # repo id -> commit hash -> files
        self.main: dict[str, str] = {}  # repo id -> the commit main points at
        self.requests: list[tuple[str, str]] = []
        #: called after each model-info answer (e.g. to push a commit while a client is downloading)
        self.after_info: Callable[[], object] | None = None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, files: dict[str, bytes], *, lfs_over: int = 4096) -> str:
        """Push ``files`` as a new commit of ``repo_id`` and point main at it; returns the commit hash."""
        listing = "".join(f"{n}\0{git_blob_id(d)}\n" for n, d in sorted(files.items()))
        parent = self.main.get(repo_id, "")
        sha = hashlib.sha1(f"{repo_id}\n{parent}\n{listing}".encode()).hexdigest()
        self.commits.setdefault(repo_id, {})[sha] = Repo(sha=sha, files=dict(files), lfs_over=lfs_over)
        self.main[repo_id] = sha
        return sha

    def head(self, repo_id: str) -> Repo:
        """The commit main points at."""
        return self.commits[repo_id][self.main[repo_id]]

    def add_folder(self, repo_id: str, folder: Path, **kw: Any) -> str:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add(repo_id, files, **kw)

    def patch(self, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
        """Point this process's huggingface-hub at the fake Hub and at ``cache`` (what HF_ENDPOINT and
        HF_HUB_CACHE do before the library is imported)."""
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)

    def env(self, home: Path) -> dict[str, str]:
        """Environment for a child process (its own huggingface-hub) to use the fake Hub."""
        return {"HF_ENDPOINT": self.url, "HF_HOME": str(home), "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
                "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}

    # -- the HTTP side ----------------------------------------------------------------------------
    def _repo(self, repo_id: str, revision: str) -> tuple[Repo | None, str | None]:
        commits = self.commits.get(repo_id)
        if commits is None:
            return None, "RepoNotFound"
        repo = commits.get(self.main[repo_id] if revision == "main" else revision)
        return (repo, None) if repo is not None else (None, "RevisionNotFound")

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            repo, error = self._repo(m.group(1), m.group(2) or "main")
            if repo is None:
                return self._error(h, error or "", body)
            info = {"id": m.group(1), "modelId": m.group(1), "sha": repo.sha, "private": False, "tags": [],
                    "siblings": [repo.sibling(n) for n in sorted(repo.files)]}
            self._json(h, info, body)
            if self.after_info is not None:
                self.after_info()
            return None
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            repo, error = self._repo(m.group(1), m.group(2))
            if repo is None:
                return self._error(h, error or "", body)
            return self._json(h, [repo.tree_entry(n) for n in sorted(repo.files)], body)
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo, error = self._repo(m.group(1), m.group(2))
            if repo is None:
                return self._error(h, error or "", body)
            name = m.group(3)
            if name not in repo.files:
                return self._error(h, "EntryNotFound", body, commit=repo.sha)
            return self._file(h, repo, name, body)
        return self._error(h, "RepoNotFound", body)

    def _json(self, h: BaseHTTPRequestHandler, data: Any, body: bool) -> None:
        raw = json.dumps(data).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        if body:
            h.wfile.write(raw)

    def _error(self, h: BaseHTTPRequestHandler, code: str, body: bool, commit: str | None = None) -> None:
        raw = json.dumps({"error": code}).encode()
        h.send_response(404)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", code)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        if body:
            h.wfile.write(raw)

    def _file(self, h: BaseHTTPRequestHandler, repo: Repo, name: str, body: bool) -> None:
        data = repo.served.get(name, repo.files[name])
        start = 0
        if body and (rng := re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))):
            start = int(rng.group(1))
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", repo.sha)
        h.send_header("ETag", f'"{repo.etag(name)}"')
        if repo.is_lfs(name):
            h.send_header("X-Linked-Etag", f'"{repo.etag(name)}"')
            h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        if body:
            h.wfile.write(data[start:])
