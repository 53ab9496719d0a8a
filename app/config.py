"""Where Web2Code keeps its files, and the user's persisted settings.

Folders come from platformdirs (``~/.local/share/Web2Code`` on Linux,
``~/Library/Application Support/Web2Code`` on macOS, ``%LOCALAPPDATA%`` on
Windows). ``WEB2CODE_HOME`` moves everything (the tests point it at a temporary
folder); ``WEB2CODE_MODELS_DIR`` or the ``--models-dir`` flag moves only the
models. Settings are one small JSON file written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "Web2Code"


def data_dir() -> Path:
    """The user data folder (models, history database)."""
    home = os.environ.get("WEB2CODE_HOME")
    if home:
        return Path(home)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    home = os.environ.get("WEB2CODE_HOME")
    if home:
        return Path(home) / "config"
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder scanned for model pairs (``manifest.json`` files)."""
    if override:
        return Path(override)
    env = os.environ.get("WEB2CODE_MODELS_DIR")
    if env:
        return Path(env)
    return data_dir() / "models"


def cache_dir() -> Path:
    """Recomputable data (OCR results per image): safe to delete at any time."""
    home = os.environ.get("WEB2CODE_HOME")
    if home:
        return Path(home) / "cache"
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def history_path() -> Path:
    return data_dir() / "history.sqlite3"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write to a temporary name in the same folder, fsync, rename into place.

    An interrupted write leaves the old file (or none), never half a file. The file gets the
    mode a plain ``open()`` would give it (the umask's), or the mode of the file it replaces;
    ``private``: readable by the user only (settings that hold an API key).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".incomplete", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # mkstemp makes the file 0600: give it what a plain open() would (the umask's mode),
            # or keep the mode of the file it replaces
            if private:
                mode = 0o600
            else:
                try:
                    mode = stat.S_IMODE(path.stat().st_mode)
                except OSError:
                    mode = 0o666 & ~_umask()
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Settings:
    """Everything the user can change in the Settings dialog."""

    gpu_layers: str = "auto"  # "auto", "0" or a number of layers
    vision_on_gpu: bool = True
    threads: int = 0  # 0 = physical cores
    flash_attention: bool = False
    default_quant: str = "Q4_K_M"
    models_dir: str = ""  # empty = the default folder
    remote_url: str = ""  # non-empty: generate through this OpenAI-compatible server
    # Sent as "Authorization: Bearer ..." to remote_url ($WEB2CODE_API_KEY when empty). The settings
    # file is written through mkstemp, so only the user can read it (0600 on POSIX).
    remote_api_key: str = ""
    remote_timeout_s: int = 120  # the longest the server may stay silent (RemoteBackend.read_timeout)
    allow_remote_resources: bool = False  # preview may load images/CSS from the network
    theme: str = "system"  # "system" (follow the desktop's light/dark scheme), "light" or "dark"
    preview_color_scheme: str = "auto"  # what the page's prefers-color-scheme sees: "auto", "light" or "dark"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def path(cls) -> Path:
        return config_dir() / "settings.json"

    @classmethod
    def load(cls) -> Settings:
        """Read the settings; a missing or damaged file gives the defaults."""
        try:
            raw = json.loads(cls.path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        defaults = cls()
        values = {}
        for k, v in raw.items():
            if k in known and type(v) is type(getattr(defaults, k)):
                values[k] = v
        return cls(**values)

    def save(self) -> None:
        atomic_write_bytes(self.path(), json.dumps(dataclasses.asdict(self), indent=2).encode(), private=True)
