"""Downloads you can trust: pinned to one commit, checked against the Hub's record, progress from the hooks.

The network boundary is the only stand-in: either huggingface-hub's two entry points recorded
(``HfApi.model_info``, ``snapshot_download``), or a fake Hub on 127.0.0.1 (tests/fake_hub.py)
that the real huggingface-hub downloads from, into a temporary cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling

from tests.fake_hub import FakeHub, git_blob_id
from web2code.converters import hub
from web2code.converters.errors import ConvertError
from web2code.converters.hub import PROGRESS_PREFIX, Expected, FileCheckError, expected_files, verify_files

REPO = "test-org/tiny-model"
LFS = 4096  # files of this size or more are LFS files on the fake Hub


def _files() -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "llava_crystal"}\n',
        "tokenizer.json": b'{"version": "1.0"}\n',
        "model-00001-of-00002.safetensors": os.urandom(3 * LFS),
        "model-00002-of-00002.safetensors": os.urandom(2 * LFS + 7),
        "model.safetensors.index.json": b'{"weight_map": {}}\n',
        "modeling_crystal.py": b"raise SystemExit('never fetched, never run')\n",
        "pytorch_model.bin": os.urandom(LFS),  # the other weight format: not fetched
    }


# -- verify_files ---------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Expected]]:
    """A folder of three files and the Hub's record of them (LFS, git, size only)."""
    monkeypatch.setattr(hub, "_CHUNK", 1 << 16)  # several chunks per file, as with the real shards
    weights = os.urandom(5 * (1 << 16) + 11)
    config = b'{"n_embd": 64}\n'
    notes = b"no hash recorded for me\n"
    d = tmp_path / "snap"
    d.mkdir()
    (d / "w.safetensors").write_bytes(weights)
    (d / "config.json").write_bytes(config)
    (d / "notes.txt").write_bytes(notes)
    expected = {
        "w.safetensors": Expected(size=len(weights), sha256=hashlib.sha256(weights).hexdigest()),
        "config.json": Expected(size=len(config), blob_id=git_blob_id(config)),
        "notes.txt": Expected(size=len(notes)),
    }
    return d, expected


def test_verify_accepts_files_that_match_the_record(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    seen: list[tuple[int, int, str]] = []
    verify_files(d, expected, on_bytes=lambda done, total, file: seen.append((done, total, file)))
    total = sum(e.size or 0 for e in expected.values())
    assert seen[-1] == (total, total, "")
    assert {f for _, _, f in seen[:-1]} == {"w.safetensors", "config.json"}  # the hashed ones
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)


def test_verify_names_a_file_of_the_wrong_size(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    with (d / "notes.txt").open("ab") as f:
        f.write(b"!")
    with pytest.raises(FileCheckError, match=r"notes\.txt has \d+ bytes, the Hub lists \d+") as e:
        verify_files(d, expected)
    assert e.value.path == d / "notes.txt" and "\n" not in str(e.value)


def test_verify_names_an_lfs_file_with_the_wrong_sha256(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    data = bytearray((d / "w.safetensors").read_bytes())
    data[len(data) // 2] ^= 1  # one bit, same size
    (d / "w.safetensors").write_bytes(bytes(data))
    with pytest.raises(FileCheckError, match=r"checkpoint file w\.safetensors is corrupt: its sha256") as e:
        verify_files(d, expected)
    assert e.value.path == d / "w.safetensors"


def test_verify_names_a_git_file_with_the_wrong_blob_id(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    (d / "config.json").write_bytes(b'{"n_embd": 65}\n')  # same size
    with pytest.raises(FileCheckError, match=r"config\.json is corrupt: its git blob id"):
        verify_files(d, expected, what="vision tower")


def test_verify_names_a_missing_file(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    (d / "w.safetensors").unlink()
    with pytest.raises(FileCheckError, match=r"w\.safetensors is missing from the download") as e:
        verify_files(d, expected)
    assert e.value.path is None


def test_verify_checks_sizes_before_hashing_anything(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    (d / "notes.txt").write_bytes(b"short")
    hashed: list[str] = []
    with pytest.raises(FileCheckError, match=r"notes\.txt"):
        verify_files(d, expected, on_bytes=lambda done, total, file: hashed.append(file))
    assert hashed == []


def test_verify_stops_when_asked(folder: tuple[Path, dict[str, Expected]]) -> None:
    d, expected = folder
    with pytest.raises(KeyboardInterrupt):
        verify_files(d, expected, should_stop=lambda: True)


def test_expected_files_selects_what_snapshot_download_would(tmp_path: Path) -> None:
    lfs = BlobLfsInfo(size=10, sha256="AB" * 32, pointer_size=134)
    siblings = [
        RepoSibling(rfilename="config.json", size=30, blob_id="C" * 40),
        RepoSibling(rfilename="model-1.safetensors", size=10, blob_id="1" * 40, lfs=lfs),
        RepoSibling(rfilename="modeling_x.py", size=5, blob_id="2" * 40),
        RepoSibling(rfilename="sub/model-2.safetensors", size=10, blob_id="3" * 40, lfs=lfs),
    ]
    got = expected_files(siblings, ["config.json", "*.safetensors"])
    assert got == {
        "config.json": Expected(size=30, blob_id="c" * 40),
        "model-1.safetensors": Expected(size=10, sha256="ab" * 32),
        "sub/model-2.safetensors": Expected(size=10, sha256="ab" * 32),
    }


# -- the revision reaches huggingface-hub (its entry points recorded) ----------------------------
class _Recorded:
    """``HfApi.model_info`` and ``snapshot_download`` as recorders: the network boundary."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, snapshot: Path, files: dict[str, bytes], sha: str) -> None:
        import huggingface_hub

        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sha = sha
        recorder = self

        def model_info(api: object, repo_id: str, **kw: Any) -> Any:
            recorder.calls.append(("model_info", {"repo_id": repo_id, **kw}))
            siblings = [{"rfilename": n, "size": len(d), "blobId": git_blob_id(d)} for n, d in files.items()]
            return huggingface_hub.hf_api.ModelInfo(id=repo_id, sha=sha, siblings=siblings)

        def snapshot_download(repo_id: str, **kw: Any) -> str:
            recorder.calls.append(("snapshot_download", {"repo_id": repo_id, **kw}))
            snapshot.mkdir(parents=True, exist_ok=True)
            for n, d in files.items():
                (snapshot / n).write_bytes(d)
            return str(snapshot)

        monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)

    def kwargs(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.calls if n == name]


@pytest.mark.parametrize("requested", [None, "main", "v1.0", "0123456789abcdef0123456789abcdef01234567"])
def test_revision_reaches_model_info_and_snapshot_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           requested: str | None) -> None:
    sha = requested if requested and len(requested) == 40 else "f" * 40
    rec = _Recorded(monkeypatch, tmp_path / "snap", {"config.json": b"{}"}, sha)
    fetched = hub.fetch(REPO, revision=requested)
    [info] = rec.kwargs("model_info")
    [snap] = rec.kwargs("snapshot_download")
    assert info["revision"] == requested and info["files_metadata"] is True
    # the download is pinned to the commit the record came from, whatever was asked for
    assert snap["revision"] == sha and snap["repo_id"] == REPO
    assert "*.py" not in snap["allow_patterns"] and "config.json" in snap["allow_patterns"]
    assert fetched == hub.Fetched(tmp_path / "snap", REPO, sha)


def test_cli_revision_reaches_snapshot_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from web2code.converters.cli import main

    sha = "0123456789abcdef0123456789abcdef01234567"
    # config.json without the model's keys: the conversion stops right after the download, one error line
    rec = _Recorded(monkeypatch, tmp_path / "snap", {"config.json": b"{}"}, sha)
    rc = main([REPO, "-o", str(tmp_path / "out"), "--revision", sha])
    assert [kw["revision"] for kw in rec.kwargs("snapshot_download")] == [sha]
    assert rc == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_malformed_revision(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from web2code.converters.cli import main

    with pytest.raises(SystemExit) as e:
        main([REPO, "-o", str(tmp_path / "out"), "--revision", "main branch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "not a revision" in err[0]


def test_revision_with_a_local_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="--revision applies to a Hugging Face repo id"):
        hub.fetch(str(tmp_path), revision="main")


def test_a_commit_the_hub_does_not_confirm_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rec = _Recorded(monkeypatch, tmp_path / "snap", {"config.json": b"{}"}, "e" * 40)
    with pytest.raises(ConvertError, match="cannot pin"):
        hub.fetch(REPO, revision="d" * 40)
    assert rec.kwargs("snapshot_download") == []


# -- the real huggingface-hub against a fake Hub on 127.0.0.1 -------------------------------------
@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def hub_cache(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    cache = tmp_path / "hf-cache"
    fake_hub.patch(monkeypatch, cache)
    monkeypatch.setattr(hub, "_EVERY", 0.0)  # every progress event, not four a second
    return cache


def _downloads(fake: FakeHub) -> list[str]:
    return [p for m, p in fake.requests if m == "GET" and "/resolve/" in p]


def test_download_is_pinned_checked_and_reported(fake_hub: FakeHub, hub_cache: Path) -> None:
    files = _files()
    sha = fake_hub.add(REPO, files, lfs_over=LFS)
    events: list[dict[str, Any]] = []
    logged: list[str] = []
    fetched = hub.fetch(REPO, progress=events.append, log=logged.append)

    assert fetched.revision == sha and fetched.folder.name == sha
    fetched_names = sorted(p.name for p in fetched.folder.iterdir())
    assert fetched_names == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                             "model.safetensors.index.json", "tokenizer.json"]
    for name in fetched_names:
        assert (fetched.folder / name).read_bytes() == files[name]
    # every file came from the commit the record came from, not from "main"
    assert _downloads(fake_hub) and all(f"/resolve/{sha}/" in p for p in _downloads(fake_hub))

    kinds = [e["event"] for e in events]
    assert kinds[0] == "revision" and kinds[-1] == "verify" and "download" in kinds
    assert events[0] == {"event": "revision", "what": "checkpoint", "repo": REPO, "revision": sha, "requested": None,
                         "files": 5, "bytes": sum(len(files[n]) for n in fetched_names)}
    total = events[0]["bytes"]
    downloads = [e for e in events if e["event"] == "download"]
    assert all(e["total"] == total and e["files_total"] == 5 for e in downloads)
    assert [e["done"] for e in downloads] == sorted(e["done"] for e in downloads)
    # intermediate values from the hooks, then the end
    assert any(0 < e["done"] < total for e in downloads)
    assert downloads[-1]["done"] == total and downloads[-1]["files_done"] == 5
    checks = [e for e in events if e["event"] == "verify"]
    assert checks[-1]["done"] == checks[-1]["total"] == total
    assert all(json.loads(json.dumps(e)) == e for e in events)  # plain JSON
    assert any("match the Hub's record" in line for line in logged)


def test_a_push_during_the_download_does_not_mix_commits(fake_hub: FakeHub, hub_cache: Path) -> None:
    files = _files()
    sha = fake_hub.add(REPO, files, lfs_over=LFS)
    newer = {**files, "config.json": b'{"model_type": "llava_crystal", "pushed": "later"}\n'}
    fake_hub.after_info = lambda: fake_hub.add(REPO, newer, lfs_over=LFS)  # main moves right after the record
    fetched = hub.fetch(REPO)
    assert fake_hub.main[REPO] != sha  # the push happened
    assert fetched.revision == sha and (fetched.folder / "config.json").read_bytes() == files["config.json"]


def test_pinned_revision_reaches_the_hub(fake_hub: FakeHub, hub_cache: Path) -> None:
    sha = fake_hub.add(REPO, _files(), lfs_over=LFS)
    hub.fetch(REPO, revision=sha)
    assert f"/api/models/{REPO}/revision/{sha}" in [p for _, p in fake_hub.requests]
    with pytest.raises(ConvertError, match=f"revision {'a' * 40} of checkpoint {REPO} not found"):
        hub.fetch(REPO, revision="a" * 40)


def test_a_corrupt_download_is_named_removed_and_fetched_again(fake_hub: FakeHub, hub_cache: Path) -> None:
    files = _files()
    sha = fake_hub.add(REPO, files, lfs_over=LFS)
    bad = "model-00002-of-00002.safetensors"
    tampered = bytearray(files[bad])
    tampered[100] ^= 0xFF
    fake_hub.head(REPO).served[bad] = bytes(tampered)  # same size: only the hash can tell
    with pytest.raises(ConvertError) as e:
        hub.fetch(REPO)
    message = str(e.value)
    assert f"checkpoint file {bad} is corrupt: its sha256" in message and "run again" in message
    assert "\n" not in message
    # the bad file is not left for anyone to use: neither its snapshot link nor its blob
    snapshot = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / sha
    assert not (snapshot / bad).exists() and not (snapshot / bad).is_symlink()
    blobs = hub_cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    assert hashlib.sha256(tampered).hexdigest() not in {p.name for p in blobs.iterdir()}

    del fake_hub.head(REPO).served[bad]
    before = len(_downloads(fake_hub))
    fetched = hub.fetch(REPO, revision=sha)
    again = _downloads(fake_hub)[before:]
    assert again == [f"/{REPO}/resolve/{sha}/{bad}"]  # only the removed file is fetched again
    assert (fetched.folder / bad).read_bytes() == files[bad]


def test_a_download_of_the_wrong_size_is_refused(fake_hub: FakeHub, hub_cache: Path) -> None:
    files = _files()
    fake_hub.add(REPO, files, lfs_over=LFS)
    fake_hub.head(REPO).served["config.json"] = b'{"model_type": "something else entirely"}\n'
    with pytest.raises(ConvertError, match=r"checkpoint file config\.json has \d+ bytes, the Hub lists \d+"):
        hub.fetch(REPO)


def test_offline_a_complete_download_serves_and_is_still_checked(fake_hub: FakeHub, hub_cache: Path) -> None:
    sha = fake_hub.add(REPO, _files(), lfs_over=LFS)
    first = hub.fetch(REPO, revision=sha)
    fake_hub.close()  # the network is gone
    logged: list[str] = []
    again = hub.fetch(REPO, revision=sha, log=logged.append)
    assert again == first and any(line.startswith("offline:") for line in logged)

    # a blob damaged on disk since (same size): named, removed, not used
    blob = (first.folder / "model-00001-of-00002.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(ConvertError, match=r"model-00001-of-00002\.safetensors is corrupt") as e:
        hub.fetch(REPO, revision=sha)
    assert "cannot download" not in str(e.value)
    assert not blob.exists()


def test_cancel_stops_the_download_threads_and_a_rerun_resumes(fake_hub: FakeHub, hub_cache: Path) -> None:
    files = _files()
    sha = fake_hub.add(REPO, files, lfs_over=LFS)
    with pytest.raises(KeyboardInterrupt):
        hub.fetch(REPO, progress=lambda e: None, should_stop=lambda: True)
    snapshot = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / sha
    assert not (snapshot / "model-00001-of-00002.safetensors").exists()
    fetched = hub.fetch(REPO, progress=lambda e: None)
    assert (fetched.folder / "model-00001-of-00002.safetensors").read_bytes() == files[
        "model-00001-of-00002.safetensors"]


def test_download_progress_counts_files_already_in_the_cache(fake_hub: FakeHub, hub_cache: Path) -> None:
    files = _files()
    sha = fake_hub.add(REPO, files, lfs_over=LFS)
    first = hub.fetch(REPO)
    (first.folder / "model-00002-of-00002.safetensors").resolve().unlink()
    (first.folder / "model-00002-of-00002.safetensors").unlink()
    events: list[dict[str, Any]] = []
    hub.fetch(REPO, revision=sha, progress=events.append)
    downloads = [e for e in events if e["event"] == "download"]
    total = downloads[0]["total"]
    cached = total - len(files["model-00002-of-00002.safetensors"])
    assert min(e["done"] for e in downloads) >= cached  # the cached files count from the start
    assert downloads[-1]["done"] == total


# -- the command line's structured progress lines -------------------------------------------------
def test_cli_prints_progress_lines_from_the_hooks(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The real command, in its own process, downloading from the fake Hub with ``--progress json``."""
    sha = fake_hub.add(REPO, {"config.json": b"{}\n", "model.safetensors": os.urandom(3 * LFS)}, lfs_over=LFS)
    env = {**os.environ, **fake_hub.env(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "web2code.converters", REPO, "-o", str(tmp_path / "out"), "--progress", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    lines = proc.stderr.splitlines()
    events = [json.loads(line[len(PROGRESS_PREFIX):]) for line in lines if line.startswith(PROGRESS_PREFIX)]
    assert events[0]["event"] == "revision" and events[0]["revision"] == sha
    assert any(e["event"] == "download" and e["done"] == e["total"] > 0 for e in events)
    assert events[-1]["event"] == "verify" and events[-1]["done"] == events[-1]["total"]
    # no huggingface-hub text bars: every other line is a plain log or the one error line
    assert not any("%|" in line for line in lines)
    assert proc.returncode == 2 and lines[-1].startswith("error: ")  # "{}" is no model config
