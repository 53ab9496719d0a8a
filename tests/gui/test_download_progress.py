""""Get the model": progress from the converter's structured lines, a pinned revision, cancel and resume.

A small script plays the converter (real process, real pipes) so each state can be checked
in turn; the last test runs the real converter against a fake Hub on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.fake_hub import FakeHub
from web2code.app.engine import pair as pairs
from web2code.app.ui.models_dialog import NEEDED_BYTES, REPO_ID, REVISIONS_FILE, GetModelDialog
from web2code.converters.hub import PROGRESS_PREFIX

SHA = "0123456789abcdef0123456789abcdef01234567"

#: Plays ``web2code-convert --progress json``: argv PREFIX REPO SHA; a line on stdin lets it go on.
CONVERTER = r'''
import json, sys
prefix, repo, sha = sys.argv[1:4]
def emit(**event):
    sys.stderr.write(prefix + json.dumps(event) + "\n")
    sys.stderr.flush()
base = {"what": "checkpoint", "repo": repo, "revision": sha}
print("checkpoint " + repo + ": revision " + sha + " (main)", file=sys.stderr, flush=True)
emit(event="revision", requested=None, files=4, bytes=4_000_000_000, **base)
emit(event="download", done=1_000_000_000, total=4_000_000_000, files_done=1, files_total=4, **base)
sys.stdin.readline()
emit(event="verify", done=3_000_000_000, total=4_000_000_000, file="model-00001-of-00002.bin", **base)
sys.stderr.write(prefix + "{not json\n")
sys.stderr.write(prefix + '{"event": "from-a-newer-converter", "done": 1}\n')
sys.stderr.flush()
sys.stdin.readline()
'''


@pytest.fixture
def dialog(qtbot: QtBot, tmp_path: Path) -> GetModelDialog:
    script = tmp_path / "converter.py"
    script.write_text(CONVERTER, encoding="utf-8")
    dlg = GetModelDialog(tmp_path / "models")
    qtbot.addWidget(dlg)
    dlg.free_bytes = lambda: NEEDED_BYTES * 2
    dlg.real_command = dlg.command  # type: ignore[attr-defined]
    dlg.command = lambda: (sys.executable, [str(script), PROGRESS_PREFIX, REPO_ID, SHA])
    return dlg


def _go_on(qtbot: QtBot, dlg: GetModelDialog) -> None:
    assert dlg.proc is not None
    dlg.proc.write(b"\n")


def test_progress_bar_and_status_follow_the_structured_lines(qtbot: QtBot, dialog: GetModelDialog) -> None:
    dlg = dialog
    assert dlg.start()
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Downloading checkpoint"), timeout=20000)
    assert dlg.status.text() == f"Downloading checkpoint {REPO_ID}: 1.0 GB of 4.0 GB (1 of 4 files)"
    assert (dlg.progress.minimum(), dlg.progress.maximum(), dlg.progress.value()) == (0, 1000, 250)
    assert dlg.progress.text() == "25%"
    log = dlg.log.toPlainText()
    assert f"revision {SHA} (main)" in log and PROGRESS_PREFIX not in log  # the converter's log, no event frames
    assert f"Pinned {REPO_ID} to revision {SHA}" in log

    _go_on(qtbot, dlg)
    qtbot.waitUntil(lambda: "web2code-progress: {not json" in dlg.log.toPlainText(), timeout=20000)
    assert dlg.status.text() == f"Checking checkpoint {REPO_ID} against the Hub's checksums: 3.0 GB of 4.0 GB"
    assert dlg.progress.value() == 750  # the unknown event changed nothing

    _go_on(qtbot, dlg)
    qtbot.waitUntil(lambda: dlg.proc is None, timeout=20000)
    assert dlg.status.text().startswith("Done") and dlg.progress.value() == dlg.progress.maximum()


def test_first_download_pins_the_revision_for_every_later_run(qtbot: QtBot, dialog: GetModelDialog,
                                                              tmp_path: Path) -> None:
    dlg = dialog
    _, args = dlg.real_command()  # type: ignore[attr-defined]
    assert "--revision" not in args and args[args.index("--progress") + 1] == "json"
    assert dlg.start()
    qtbot.waitUntil((tmp_path / "models" / REVISIONS_FILE).exists, timeout=20000)
    recorded = json.loads((tmp_path / "models" / REVISIONS_FILE).read_text(encoding="utf-8"))
    assert recorded[REPO_ID]["revision"] == SHA
    # cancel (SIGTERM) mid-download; Resume asks for exactly the recorded commit
    dlg.btn_cancel.click()
    qtbot.waitUntil(lambda: dlg.proc is None, timeout=20000)
    assert "Cancelled" in dlg.status.text() and dlg.btn_start.text() == "Resume"
    _, args = dlg.real_command()  # type: ignore[attr-defined]
    assert args[args.index("--revision") + 1] == SHA
    # a new dialog (the app restarted) too
    _, args = GetModelDialog(tmp_path / "models").command()
    assert args[args.index("--revision") + 1] == SHA


def test_a_damaged_revisions_file_means_no_pin(qtbot: QtBot, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / REVISIONS_FILE).write_text('{"LLM360/CrystalChat-7B-Web2Code": {"revision": "main; rm -rf"}}')
    dlg = GetModelDialog(models)
    qtbot.addWidget(dlg)
    assert "--revision" not in dlg.command()[1]


def test_get_the_model_from_a_fake_hub_with_the_real_converter(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_copy_checkpoint: Path
) -> None:
    fake = FakeHub()
    try:
        sha = fake.add_folder(REPO_ID, tiny_copy_checkpoint)
        for key, value in fake.env(tmp_path / "hf").items():
            monkeypatch.setenv(key, value)
        dlg = GetModelDialog(tmp_path / "models")
        qtbot.addWidget(dlg)
        dlg.free_bytes = lambda: NEEDED_BYTES * 2
        statuses: list[tuple[str, int, int]] = []
        dlg.progress.valueChanged.connect(
            lambda v: statuses.append((dlg.status.text(), v, dlg.progress.maximum())))
        assert dlg.start()
        qtbot.waitUntil(lambda: dlg.proc is None, timeout=180000)
    finally:
        fake.close()
    assert dlg.status.text().startswith("Done"), dlg.log.toPlainText()
    downloading = [(v, m) for s, v, m in statuses if s.startswith(f"Downloading checkpoint {REPO_ID}")]
    checking = [(v, m) for s, v, m in statuses if s.startswith(f"Checking checkpoint {REPO_ID}")]
    assert downloading and downloading[-1] == (1000, 1000)
    assert checking and checking[-1] == (1000, 1000)
    assert json.loads((tmp_path / "models" / REVISIONS_FILE).read_text())[REPO_ID]["revision"] == sha
    [pair] = pairs.discover(tmp_path / "models")
    assert pair.manifest is not None
    assert json.loads(pair.manifest.read_text())["source_revision"] == sha
