"""Batch conversion: several images (a dropped folder or files) → one HTML file each, in an output folder."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import qtawesome as qta
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..batchnames import output_names
from ..config import atomic_write_bytes
from ..engine.backend import Request
from ..engine.events import Failed, Finished, GenerationParams, Progress, Token
from ..engine.html import extract_html
from ..engine.image import ALLOWED_FORMATS
from .generation import BackendProvider, StreamJob

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico", ".ppm", ".tga",
                  ".avif", ".jfif"}
assert ALLOWED_FORMATS  # the engine decides what really opens; the suffixes only pick candidates


def collect_images(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def default_output_dir(paths: list[Path]) -> Path:
    base = paths[0] if paths[0].is_dir() else paths[0].parent
    return base / "web2code-html"


def prepared_request(request: Request) -> Request:
    """A photo of a sketch flattened, lit and cropped as the command line's batch does it
    (``cli_prepare.prepared_input``); a screenshot goes as the file it is. Runs on the engine thread."""
    from ..prepare import for_backend

    image, _record = for_backend(request.image)  # type: ignore[type-var]  # a batch's requests carry paths
    return dataclasses.replace(request, image=image)


class BatchDialog(QDialog):
    """Its own progress view: one row per image; files are converted one after another."""

    busy_changed = Signal(bool)

    def __init__(self, files: list[Path], output: Path, provider: BackendProvider, params: GenerationParams,
                 parent: QWidget | None = None, *, prepare_photos: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Web2Code — batch of {len(files)} image(s)")
        self.resize(760, 420)
        self.files = files
        self.names = output_names(files)  # the same names as `web2code generate` gives (batchnames.py)
        self.output = output
        self.provider = provider
        self.params = params
        self.prepare_photos = prepare_photos  # as the window's "Prepare photo" and `generate --no-prepare`
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Image", "Status", "Output"])
        self.tree.setRootIsDecorated(False)
        self.tree.setToolTip("Each image and what became of it")
        for f in files:
            item = QTreeWidgetItem([f.name, "waiting", ""])
            item.setToolTip(0, str(f))
            self.tree.addTopLevelItem(item)
        self.tree.setColumnWidth(0, 260)
        self.tree.setColumnWidth(1, 220)
        self.out_label = QLabel(self)
        self.out_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.btn_out = QPushButton(qta.icon("mdi6.folder-edit-outline"), "Change…", self)
        self.btn_out.setToolTip("Choose where the HTML files are written")
        self.btn_out.clicked.connect(self._choose_output)
        self.btn_open_out = QPushButton(qta.icon("mdi6.folder-open-outline"), "Open", self)
        self.btn_open_out.setToolTip("Show the output folder")
        self.btn_open_out.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.output))))
        self.progress = QProgressBar(self)
        self.progress.setRange(0, len(files))
        self.progress.setToolTip("Images done")
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.btn_start = QPushButton(qta.icon("mdi6.play"), "Start", self)
        self.btn_start.setToolTip("Convert the images that are not done yet")
        self.btn_start.clicked.connect(self.start)
        self.btn_cancel = QPushButton(qta.icon("mdi6.stop"), "Stop", self)
        self.btn_cancel.setToolTip("Stop after cancelling the current image")
        self.btn_cancel.clicked.connect(self.cancel)
        close = QPushButton("Close", self)
        close.setToolTip("Close (stops the batch)")
        close.clicked.connect(self.close)
        orow = QHBoxLayout()
        orow.addWidget(QLabel("Output folder:", self))
        orow.addWidget(self.out_label, 1)
        orow.addWidget(self.btn_out)
        orow.addWidget(self.btn_open_out)
        brow = QHBoxLayout()
        brow.addWidget(self.btn_start)
        brow.addWidget(self.btn_cancel)
        brow.addStretch(1)
        brow.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(orow)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addLayout(brow)
        self._index = -1
        self._job: StreamJob | None = None
        self._raw = ""
        self._stop = False
        self._results: dict[int, str] = {}  # row -> "ok" | error message (not "done": QDialog.done)
        self._set_output(output)
        self._sync(False)

    @property
    def results(self) -> dict[int, str]:
        """Finished rows: "ok" or the error message."""
        return dict(self._results)

    def _set_output(self, out: Path) -> None:
        self.output = out
        self.out_label.setText(str(out))

    def _choose_output(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Output folder", str(self.output))
        if d:
            self._set_output(Path(d))

    def _sync(self, running: bool) -> None:
        self.btn_start.setEnabled(not running and len(self._results) < len(self.files))
        self.btn_cancel.setEnabled(running)
        self.btn_out.setEnabled(not running)
        self.busy_changed.emit(running)

    @property
    def running(self) -> bool:
        return self._job is not None

    def start(self) -> None:
        if self._job is not None:
            return
        try:
            self.provider.get()
            self.output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.status.setText(f"Cannot create the output folder: {exc.strerror or exc}")
            return
        except Exception as exc:  # NoModel, BackendError: user messages
            self.status.setText(str(exc))
            return
        self._stop = False
        self._sync(True)
        self._next()

    def _next(self) -> None:
        self._index = next((i for i in range(len(self.files)) if i not in self._results), -1)
        if self._stop or self._index < 0:
            self._job = None
            ok = sum(1 for v in self._results.values() if v == "ok")
            self.status.setText(f"Finished: {ok} of {len(self.files)} converted into {self.output}."
                                if not self._stop else "Stopped.")
            self._sync(False)
            return
        item = self.tree.topLevelItem(self._index)
        assert item is not None
        item.setText(1, "starting…")
        self._raw = ""
        self._t0 = time.monotonic()
        job = self.provider.job(Request(self.files[self._index], self.params), self,
                                prepare=prepared_request if self.prepare_photos else None)
        job.delivered.connect(self._events)
        job.finished.connect(self._job_done)
        self._job = job
        job.start()

    def _events(self, events: list[object]) -> None:
        for ev in events:
            self._event(ev)

    def _event(self, ev: object) -> None:
        item = self.tree.topLevelItem(self._index)
        if item is None:
            return
        if isinstance(ev, Progress):
            item.setText(1, ev.message or ev.phase)
        elif isinstance(ev, Token) and ev.variant == 0:
            self._raw += ev.text
            item.setText(1, f"writing… {ev.index + 1} tokens")
        elif isinstance(ev, Finished) and ev.stats.variant == 0:
            if ev.stats.finish_reason == "cancelled":
                item.setText(1, "cancelled")
                return
            target = self.output / self.names[self._index]
            try:
                atomic_write_bytes(target, extract_html(self._raw).encode("utf-8"))
            except OSError as exc:
                self._results[self._index] = str(exc)
                item.setText(1, f"could not save: {exc.strerror or exc}")
                return
            self._results[self._index] = "ok"
            item.setText(1, f"done · {ev.stats.n_generated} tokens · {time.monotonic() - self._t0:.1f} s")
            item.setText(2, target.name)
            item.setIcon(1, qta.icon("mdi6.check", color="#2e7d32"))
        elif isinstance(ev, Failed):
            self._results[self._index] = ev.message
            item.setText(1, ev.message)
            item.setToolTip(1, ev.message + ("\n\n" + ev.detail if ev.detail else ""))
            item.setIcon(1, qta.icon("mdi6.alert-circle-outline", color="#c62828"))

    def _job_done(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.deleteLater()
        self.progress.setValue(len(self._results))
        if self._stop:
            self._index = -1
            self.status.setText("Stopped.")
            self._sync(False)
            return
        self._job = None
        self._next()

    def cancel(self) -> None:
        self._stop = True
        if self._job is not None:
            self._job.cancel()

    def shutdown(self) -> None:
        """Stop and wait for the current image (the application is closing)."""
        self.cancel()
        job = self._job
        if job is not None:
            job.delivered.disconnect(self._events)
            job.finished.disconnect(self._job_done)
            job.wait(5000)
            self._job = None

    def closeEvent(self, event: QCloseEvent) -> None:
        self.cancel()
        super().closeEvent(event)
