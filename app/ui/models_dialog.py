"""The model manager (installed pairs, add existing GGUF files, delete) and the "Get the model" dialog."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...converters.hub import PROGRESS_PREFIX
from ..config import atomic_write_bytes
from ..engine import pair as pairs
from ..errors import ModelError
from . import theme

REPO_ID = "LLM360/CrystalChat-7B-Web2Code"
MODEL_FOLDER = "crystalchat-7b-web2code"
#: The commit of REPO_ID to download, when a known one ships with the app. None: trust on first use:
#: the commit the first download resolves ``main`` to is recorded in the models folder
#: (REVISIONS_FILE), and every later run (a resume, a fresh download) asks for exactly that commit,
#: whose files the converter checks against the Hub's sizes and hashes.
PINNED_REVISION: str | None = None
REVISIONS_FILE = "revisions.json"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
#: Download cache (~15 GB of fp16 shards + CLIP) plus the outputs and a temporary F16 base.
NEEDED_BYTES = 30 * 10**9
_QUANT_RE = re.compile(r"(?i)(Q\d_K_[SML]|Q\d_K|Q\d_\d|IQ\d_\w+|BF16|F16|F32)")


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def guess_quant(path: Path) -> str:
    m = _QUANT_RE.search(path.name)
    return m.group(1).upper() if m else ""


def add_existing_pair(models_dir: Path, model: Path, mmproj: Path) -> pairs.ModelPair:
    """Validate the two files as a pair and register them with a manifest (the files stay where they are)."""
    candidate = pairs.ModelPair(model=model.resolve(), mmproj=mmproj.resolve(), name=model.stem)
    info = pairs.inspect_pair(candidate)  # ModelError with a one-line reason
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", model.stem).strip("-") or "model"
    folder = models_dir / name
    n = 2
    while (folder / pairs.MANIFEST_NAME).exists():
        folder = models_dir / f"{name}-{n}"
        n += 1
    # A manifest names files inside its folder only (pair.py refuses paths): link the files there.
    folder.mkdir(parents=True, exist_ok=True)
    links = {"model": folder / candidate.model.name, "mmproj": folder / candidate.mmproj.name}
    if links["mmproj"] == links["model"]:
        links["mmproj"] = folder / f"mmproj-{candidate.mmproj.name}"
    try:
        for role, link in links.items():
            target: Path = getattr(candidate, role)
            if link.resolve() == target:
                continue  # the file is already in the folder
            if link.is_symlink():
                link.unlink()  # an old link of ours
            elif link.exists():
                raise ModelError(f"Cannot register the pair: {folder} already holds another {link.name}.")
            link.symlink_to(target)
    except OSError as e:
        raise ModelError(f"Cannot register the pair in {folder}: {e.strerror or e}") from None
    manifest = {
        "format_version": 1,
        "name": name,
        "pair_id": info.pair_id,
        "mmproj": {"file": links["mmproj"].name},
        "models": [{"quant": guess_quant(model) or "unknown", "file": links["model"].name}],
        "source": "added from existing files",
    }
    atomic_write_bytes(folder / pairs.MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    return pairs.ModelPair(model=links["model"], mmproj=links["mmproj"], name=name, quant=guess_quant(model),
                           pair_id=info.pair_id, manifest=folder / pairs.MANIFEST_NAME)


def delete_pair(models_dir: Path, pair: pairs.ModelPair) -> list[Path]:
    """Remove a pair: its manifest entry, and its files when they live inside the models folder."""
    removed: list[Path] = []
    manifest = pair.manifest
    if manifest is None:
        return removed
    root = models_dir.resolve()
    data = json.loads(manifest.read_text(encoding="utf-8"))
    others = [m for m in data.get("models", []) if (manifest.parent / m["file"]).resolve() != pair.model.resolve()]

    def inside(p: Path) -> bool:
        # the entry itself: a file, or a link to a file kept elsewhere (unlinking removes only the link)
        return p.parent.resolve().is_relative_to(root) and (p.exists() or p.is_symlink())

    if inside(pair.model):
        pair.model.unlink()
        removed.append(pair.model)
    if others:
        data["models"] = others
        atomic_write_bytes(manifest, (json.dumps(data, indent=2) + "\n").encode())
        return removed
    if inside(pair.mmproj):
        pair.mmproj.unlink()
        removed.append(pair.mmproj)
    manifest.unlink()
    removed.append(manifest)
    folder = manifest.parent
    if folder != root and inside(folder) and not any(folder.iterdir()):
        folder.rmdir()
    return removed


class ModelsDialog(QDialog):
    """Lists the pairs in the models folder; adds, deletes, and gets the model."""

    models_changed = Signal()

    def __init__(self, models_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Web2Code — models")
        self.resize(900, 420)
        self.models_dir = models_dir
        self.where = QLabel(self)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Name", "Quant", "Size", "Model file", "Vision projector (mmproj)"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setToolTip("Model pairs found in the models folder (one manifest.json each)")
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.btn_get = QPushButton(qta.icon("mdi6.download"), "Get the model…", self)
        self.btn_get.setToolTip(f"Download {REPO_ID} and convert it (about 30 GB of free space needed)")
        self.btn_add = QPushButton(qta.icon("mdi6.file-plus-outline"), "Add GGUF files…", self)
        self.btn_add.setToolTip("Use a text model GGUF and its mmproj GGUF that you already have")
        self.btn_delete = QPushButton(qta.icon("mdi6.delete-outline"), "Delete…", self)
        self.btn_delete.setToolTip("Delete the selected pair (files outside the models folder are kept)")
        self.btn_folder = QPushButton(qta.icon("mdi6.folder-open-outline"), "Open folder", self)
        self.btn_folder.setToolTip("Show the models folder in the file manager")
        self.btn_get.clicked.connect(self.get_model)
        self.btn_add.clicked.connect(self.add_files)
        self.btn_delete.clicked.connect(self.delete_selected)
        self.btn_folder.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.models_dir))))
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        row = QHBoxLayout()
        for b in (self.btn_get, self.btn_add, self.btn_delete, self.btn_folder):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.where)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.message)
        lay.addLayout(row)
        self.tree.itemSelectionChanged.connect(
            lambda: self.btn_delete.setEnabled(bool(self.tree.selectedItems())))
        self.refresh()

    def refresh(self) -> None:
        self.where.setText(f"Models folder: {self.models_dir}")
        self.tree.clear()
        self.pairs = pairs.discover(self.models_dir)
        for p in self.pairs:
            item = QTreeWidgetItem([p.name or p.model.stem, p.quant or "?", human_size(p.size_bytes),
                                    str(p.model), str(p.mmproj)])
            item.setToolTip(3, str(p.model))
            item.setToolTip(4, str(p.mmproj))
            item.setIcon(0, qta.icon("mdi6.brain"))
            self.tree.addTopLevelItem(item)
        for bad in pairs.broken_manifests(self.models_dir):
            item = QTreeWidgetItem([bad.parent.name, "", "", f"broken or incomplete: {bad}", ""])
            item.setIcon(0, qta.icon("mdi6.alert-outline", color="#c62828"))
            item.setDisabled(True)
            self.tree.addTopLevelItem(item)
        if not self.pairs:
            self.message.setText("No model installed yet. Get the model (download and convert), or add a GGUF "
                                 "text model and its mmproj that you already have.")
        self.btn_delete.setEnabled(False)

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet(f"color: {theme.error_colour(self)};" if error else "")
        self.message.setText(text)

    def add_files(self) -> None:
        model, _ = QFileDialog.getOpenFileName(self, "Text model (GGUF)", str(Path.home()), "GGUF (*.gguf)")
        if not model:
            return
        mmproj, _ = QFileDialog.getOpenFileName(self, "Vision projector (mmproj GGUF)", str(Path(model).parent),
                                                "GGUF (*.gguf)")
        if not mmproj:
            return
        self.add_pair(Path(model), Path(mmproj))

    def add_pair(self, model: Path, mmproj: Path) -> bool:
        try:
            added = add_existing_pair(self.models_dir, model, mmproj)
        except ModelError as exc:
            self.show_message(f"Not added: {exc}", error=True)
            return False
        except OSError as exc:
            self.show_message(f"Not added: cannot write to {self.models_dir}: {exc.strerror or exc}", error=True)
            return False
        self.refresh()
        self.show_message(f"Added {added.model.name} with {added.mmproj.name}.")
        self.models_changed.emit()
        return True

    def delete_selected(self) -> None:
        rows = [self.tree.indexOfTopLevelItem(i) for i in self.tree.selectedItems()]
        rows = [r for r in rows if 0 <= r < len(self.pairs)]
        if not rows:
            return
        p = self.pairs[rows[0]]
        answer = QMessageBox.question(
            self, "Delete model", f"Delete {p.label}?\n\nFiles inside {self.models_dir} are deleted; "
            "files elsewhere are only forgotten.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            delete_pair(self.models_dir, p)
        except (OSError, ValueError, KeyError) as exc:
            self.show_message(f"Could not delete {p.label}: {exc}", error=True)
            return
        self.refresh()
        self.show_message(f"Deleted {p.label}.")
        self.models_changed.emit()

    def get_model(self) -> None:
        dlg = GetModelDialog(self.models_dir, self)
        dlg.finished_ok.connect(self.refresh)
        dlg.finished_ok.connect(self.models_changed.emit)
        dlg.show()


class GetModelDialog(QDialog):
    """Runs ``web2code-convert`` (download + convert) in a child process, with progress, cancel and resume."""

    finished_ok = Signal()

    def __init__(self, models_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Web2Code — get the model")
        self.resize(720, 420)
        self.models_dir = models_dir
        self.outdir = models_dir / MODEL_FOLDER
        intro = QLabel(
            f"Downloads <b>{REPO_ID}</b> and its CLIP vision tower from Hugging Face (about 15 GB, resumable, "
            "one pinned revision, every file checked against the Hub's checksums) "
            f"and converts them into a GGUF pair in<br><code>{self.outdir}</code>.<br>"
            "About 30 GB of free disk space are needed, including the download cache.", self)
        intro.setWordWrap(True)
        self.status = QLabel("Not started.", self)
        self.status.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setToolTip("Progress of the current step")
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setFont(QFont("monospace"))
        self.log.setToolTip("What the converter reports")
        self.btn_start = QPushButton(qta.icon("mdi6.download"), "Start", self)
        self.btn_start.setToolTip("Start (or resume: files already downloaded are not fetched again)")
        self.btn_cancel = QPushButton(qta.icon("mdi6.stop"), "Cancel", self)
        self.btn_cancel.setToolTip("Stop the download or conversion; Start again resumes it")
        self.btn_cancel.setEnabled(False)
        close = QPushButton("Close", self)
        close.setToolTip("Close this window (a running job is cancelled)")
        self.btn_start.clicked.connect(self.start)
        self.btn_cancel.clicked.connect(self.cancel)
        close.clicked.connect(self.close)
        row = QHBoxLayout()
        row.addWidget(self.btn_start)
        row.addWidget(self.btn_cancel)
        row.addStretch(1)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.status)
        lay.addWidget(self.progress)
        lay.addWidget(self.log, 1)
        lay.addLayout(row)
        self.proc: QProcess | None = None
        self._buf = ""
        self._last_error = ""
        self.free_bytes = self._free_bytes

    def _free_bytes(self) -> int:
        probe = self.models_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def command(self) -> tuple[str, list[str]]:
        args = ["-m", "web2code.converters", REPO_ID, "-o", str(self.outdir), "--json", "--progress", "json"]
        revision = self.revision()
        if revision:
            args += ["--revision", revision]
        return sys.executable, args

    def revision(self) -> str | None:
        """The commit to download: the shipped pin, else the one recorded by the first download."""
        if PINNED_REVISION:
            return PINNED_REVISION
        try:
            data = json.loads((self.models_dir / REVISIONS_FILE).read_text(encoding="utf-8"))
            sha = data[REPO_ID]["revision"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return sha if isinstance(sha, str) and _COMMIT_RE.match(sha) else None

    def _record_revision(self, sha: str) -> None:
        """Trust on first use: remember the commit the first download resolved to."""
        if not _COMMIT_RE.match(sha):
            return
        pinned = self.revision()
        if pinned is not None:
            if pinned != sha:  # cannot happen while the converter honours --revision
                self.log.appendPlainText(f"warning: the converter fetched revision {sha}, not the pinned {pinned}")
            return
        path = self.models_dir / REVISIONS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data[REPO_ID] = {"revision": sha, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
        except OSError as exc:
            self.log.appendPlainText(f"warning: cannot record the revision in {path}: {exc.strerror or exc}")
            return
        self.log.appendPlainText(f"Pinned {REPO_ID} to revision {sha} (recorded in {path}): resuming or "
                                 "downloading again fetches exactly these files.")

    def start(self) -> bool:
        if self.proc is not None:
            return False
        try:
            free = self.free_bytes()
        except OSError as exc:
            self._fail(f"Cannot check the free space in {self.models_dir}: {exc.strerror or exc}")
            return False
        if free < NEEDED_BYTES:
            self._fail(f"Not enough disk space: {human_size(free)} free where the model goes, about "
                       f"{human_size(NEEDED_BYTES)} needed. Free some space or choose another models folder "
                       "in Settings.")
            return False
        self.models_dir.mkdir(parents=True, exist_ok=True)
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        proc.readyReadStandardError.connect(self._stderr)
        proc.readyReadStandardOutput.connect(proc.readAllStandardOutput)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._error)
        program, args = self.command()
        self.proc = proc
        self._last_error = ""
        self.log.appendPlainText(f"$ web2code-convert {' '.join(args[2:])}")
        self.status.setStyleSheet("")
        self.status.setText("Starting…")
        self.progress.setRange(0, 0)
        self.btn_start.setEnabled(False)
        self.btn_cancel.setEnabled(True)
        proc.start(program, args)
        return True

    def _stderr(self) -> None:
        if self.proc is None:
            return
        self._buf += bytes(self.proc.readAllStandardError().data()).decode("utf-8", "replace")
        parts = re.split(r"[\r\n]", self._buf)
        self._buf = parts.pop()
        for raw in parts:
            if raw.strip():
                self._line(raw.strip())

    def _line(self, line: str) -> None:
        if line.startswith(PROGRESS_PREFIX):
            try:
                event = json.loads(line[len(PROGRESS_PREFIX):])
            except ValueError:
                event = None
            if isinstance(event, dict):
                self._event(event)  # shown in the bar and the status line, not logged frame by frame
            else:
                self.log.appendPlainText(line)  # garbled: kept for the record, not shown as the status
            return
        frac = re.search(r"(\d+)/(\d+) tensors", line)
        if frac:
            self.progress.setRange(0, int(frac.group(2)))
            self.progress.setValue(int(frac.group(1)))
        elif line.startswith(("quantizing", "vision projector")):
            self.progress.setRange(0, 0)
        if line.startswith("error:"):
            self._last_error = line[6:].strip()
        self.status.setText(line[:160])
        self.log.appendPlainText(line)

    def _event(self, event: dict[str, object]) -> None:
        """One structured progress event from the converter (see ``web2code.converters.hub.PROGRESS_PREFIX``)."""

        def number(key: str) -> int:
            value = event.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

        kind = event.get("event")
        what = str(event.get("what") or "files")
        repo = str(event.get("repo") or "")
        if kind == "revision":  # the converter logs it too; here it is pinned
            if repo == REPO_ID and what == "checkpoint":
                self._record_revision(str(event.get("revision") or ""))
            self.status.setText(f"Downloading {what} {repo} ({human_size(number('bytes'))})…")
            self.progress.setRange(0, 0)
            return
        if kind not in ("download", "verify"):
            return  # a newer converter's event: nothing to show
        done, total = number("done"), number("total")
        amount = f"{human_size(done)} of {human_size(total)}"
        if kind == "download":
            self.status.setText(f"Downloading {what} {repo}: {amount} "
                                f"({number('files_done')} of {number('files_total')} files)")
        else:
            self.status.setText(f"Checking {what} {repo} against the Hub's checksums: {amount}")
        if total > 0:
            self.progress.setRange(0, 1000)  # byte counts overflow the bar's int
            self.progress.setValue(min(1000, done * 1000 // total))
        else:
            self.progress.setRange(0, 0)

    def _error(self, err: QProcess.ProcessError) -> None:
        if err == QProcess.ProcessError.FailedToStart:
            self._fail("Could not start the converter (web2code-convert).")
            self._reset()

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self._buf.strip():
            self._line(self._buf.strip())
        self._buf = ""
        cancelled = getattr(self, "_cancelling", False)
        self._cancelling = False
        self._reset()
        if cancelled or code == 130:
            self._fail("Cancelled. Start again to resume: what was downloaded is kept.", error=False)
        elif code == 0 and status == QProcess.ExitStatus.NormalExit:
            self.progress.setRange(0, 100)
            self.progress.setValue(100)
            self.status.setStyleSheet("")
            self.status.setText(f"Done: the model is installed in {self.outdir}.")
            self.finished_ok.emit()
        else:
            reason = self._last_error or f"the converter exited with status {code}"
            hint = ""
            low = reason.lower()
            if any(k in low for k in ("connect", "network", "resolve", "offline", "internet", "hub", "http")):
                hint = " Check the internet connection, then Start again to resume."
            self._fail(f"Getting the model failed: {reason}.{hint}")

    def _reset(self) -> None:
        self.proc = None
        self.btn_start.setEnabled(True)
        self.btn_start.setText("Resume")
        self.btn_cancel.setEnabled(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 100)
            self.progress.setValue(0)

    def _fail(self, message: str, error: bool = True) -> None:
        self.status.setStyleSheet(f"color: {theme.error_colour(self)};" if error else "")
        self.status.setText(message)
        self.log.appendPlainText(message)

    def cancel(self) -> None:
        if self.proc is not None:
            self._cancelling = True
            self.proc.terminate()  # SIGTERM: the converter removes its temporary files
            if not self.proc.waitForFinished(10000):
                self.proc.kill()

    def closeEvent(self, event: object) -> None:
        self.cancel()
        super().closeEvent(event)  # type: ignore[arg-type]
