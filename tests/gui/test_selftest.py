"""``web2code --self-test``: the installation check the desktop bundle runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures_models import TinyPair


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, "-m", "web2code.app", *args], capture_output=True, text=True,
                          timeout=300, env={**base, **(env or {})}, check=False)


def test_self_test_passes_headless_with_a_pair(tiny_pair: TinyPair) -> None:
    r = _run("--self-test", "--model", str(tiny_pair.q8), "--mmproj", str(tiny_pair.mmproj))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for step in ("window", "engine", "preview", "closed", "ok"):
        assert any(line.startswith(f"self-test: {step}") for line in lines), (step, r.stdout)


def test_self_test_with_a_broken_model_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{broken")
    r = _run("--self-test", "--models-dir", str(tmp_path))
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr


def test_self_test_is_listed_in_help() -> None:
    r = _run("--help")
    assert r.returncode == 0 and "--self-test" in r.stdout
