"""The one place that starts, stops and regenerates requests, and owns the backend.

A generation streams into the page (code view and live preview), its figures go to
the status panel, its result to the history and then to the fidelity scorer; an
Ask streams into the ask panel. Batches start here too, so the window never runs
two things on one model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from .. import config
from ..engine.backend import Request
from ..engine.events import Failed, Finished, GenerationParams, Progress, Started, Token
from ..engine.html import LivePreview, extract_html
from ..errors import Web2CodeError
from ..history import History, HistoryEntry
from .ask_panel import AskPanel
from .batch import BatchDialog, collect_images, default_output_dir
from .generation import BackendProvider, NoModel, StreamJob
from .imaging import thumbnail_png
from .input_controller import InputController
from .params_panel import ParamsPanel
from .preview_panel import PreviewPanel
from .status_panel import StatusPanel
from .throttle import Throttle
from .unsaved_edits import input_image_bytes

PREVIEW_INTERVAL_MS = 120  # ≈ 8 preview updates per second while tokens arrive


class RequestController(QObject):
    running_changed = Signal(bool)
    generated = Signal(str)  # a generation finished with this page (part edits start from it)
    recorded = Signal(int)  # a result went into the history (its id)
    model_missing = Signal()

    def __init__(self, owner: QWidget, settings: config.Settings, history: History, *, params: ParamsPanel,
                 page: PreviewPanel, status: StatusPanel, ask_panel: AskPanel, inputs: InputController,
                 error: Callable[..., None], info: Callable[[str], None], clear_error: Callable[[], None]) -> None:
        super().__init__(owner)
        self.owner, self.settings, self.history = owner, settings, history
        self.provider = BackendProvider(settings)
        self.params, self.page, self.status, self.ask_panel, self.inputs = params, page, status, ask_panel, inputs
        self._error, self._info, self._clear_error = error, info, clear_error
        self.job: StreamJob | None = None
        self.job_kind = ""
        self.job_params: GenerationParams | None = None
        self.batch_dialog: BatchDialog | None = None
        self.current_entry_id = 0
        self.confirm_new_page: Callable[[str], bool] | None = None  # may a new page replace edits? (UnsavedEdits)
        self._raw = ""
        self._variant_text: dict[int, list[str]] = {}
        self._live = LivePreview()
        self._preview_throttle = Throttle(self._refresh_preview, PREVIEW_INTERVAL_MS, self)
        page.fidelity.scored.connect(self._store_fidelity)
        page.fidelity.variant_chosen.connect(self._show_variant)
        ask_panel.ask_requested.connect(self.ask)
        ask_panel.stop_requested.connect(self.stop)

    @property
    def batch_running(self) -> bool:
        return self.batch_dialog is not None and self.batch_dialog.running

    # ------------------------------------------------------------ starting
    def generate(self, new_seed: bool = False) -> bool:
        if self.job is not None or self.batch_running:
            self._info("Already generating.")
            return False
        image = self.inputs.input_image
        if image is None:
            self._error("Open, paste, drop, capture or sketch an image first.", kind="warning")
            return False
        try:
            params = self.params.current(new_seed)
        except Web2CodeError as exc:
            self._error(str(exc))
            return False
        if self.confirm_new_page is not None and not self.confirm_new_page("regenerate" if new_seed else "generate"):
            return False
        if not self._start_job(Request(image, params), "generate"):
            return False
        self._raw = ""
        self._variant_text = {}
        self._live = LivePreview()
        self.page.code.editor.set_text("")
        self.current_entry_id = 0
        return True

    def regenerate(self) -> bool:
        return self.generate(new_seed=True)

    def ask(self, question: str) -> bool:
        if not question.strip():
            self._error("Type a question first.", kind="warning")
            return False
        if self.job is not None:
            self._info("Wait for the current request to finish.")
            return False
        image = self.inputs.input_image
        if image is None:
            self._error("Open an image first, then ask about it.", kind="warning")
            return False
        try:
            params = self.params.current().replace(instruction=question,
                                                   max_tokens=min(512, self.params.max_tokens.value()))
        except Web2CodeError as exc:
            self._error(str(exc))
            return False
        if not self._start_job(Request(image, params, "ask", tuple(self.ask_panel.history)), "ask"):
            return False
        self.ask_panel.begin(question)
        return True

    def _start_job(self, request: Request, kind: str) -> bool:
        try:
            job = self.provider.job(request, self.owner)
        except NoModel as exc:
            self.model_missing.emit()
            self._error(str(exc), kind="warning")
            return False
        except Web2CodeError as exc:
            self._error(str(exc), exc.detail)
            return False
        self._clear_error()
        job.delivered.connect(self._on_events)
        job.finished.connect(self._job_finished)
        self.job, self.job_kind, self.job_params = job, kind, request.params
        self.status.begin()
        self._set_running(True)
        job.start()
        return True

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.stopping()

    def start_batch(self, paths: list[Path]) -> bool:
        files = collect_images(paths)
        if not files:
            self._error("No images found in what was dropped.", kind="warning")
            return False
        if self.batch_running:
            self._error("A batch is already running.", kind="warning")
            return False
        try:
            params = self.params.current()
        except Web2CodeError as exc:
            self._error(str(exc))
            return False
        dlg = BatchDialog(files, default_output_dir(paths), self.provider, params, self.owner,
                          prepare_photos=self.inputs.pane.prepare_toggle.isChecked())
        dlg.busy_changed.connect(lambda busy: self.running_changed.emit(self.job is not None or busy))
        self.batch_dialog = dlg
        dlg.show()
        if self.job is None:
            dlg.start()
        else:
            dlg.status.setText("Waiting: press Start when the current generation has finished.")
        return True

    def _set_running(self, running: bool) -> None:
        self.page.streaming = running and self.job_kind == "generate"
        self.page.code.editor.setReadOnly(self.page.streaming)
        self.running_changed.emit(running)

    # ------------------------------------------------------------ streaming
    def _on_events(self, events: list[object]) -> None:
        """One frame's events from the engine; the tokens' text goes to the editor in one piece."""
        text: list[str] = []
        for ev in events:
            if self.job is None:
                return
            if isinstance(ev, Token):
                if ev.variant == 0:
                    text.append(ev.text)
                else:
                    self._variant_text.setdefault(ev.variant, []).append(ev.text)
                continue
            self._add_text(text)
            text = []
            self._on_event(ev)
        self._add_text(text)

    def _add_text(self, parts: list[str]) -> None:
        if not parts or self.job is None:
            return
        self.status.tokens(len(parts))
        chunk = "".join(parts)
        if self.job_kind == "ask":
            self.ask_panel.add_text(chunk)
            return
        self._raw += chunk
        self.page.code.editor.append_text(chunk)
        self._preview_throttle()

    def _on_event(self, ev: object) -> None:
        if isinstance(ev, Progress):
            self.status.phase(ev)
        elif isinstance(ev, Started):
            self.status.started("Writing HTML…" if self.job_kind == "generate" else "Answering…",
                                self.job_params.max_tokens if self.job_params else 0)
        elif isinstance(ev, Finished):
            if ev.stats.variant == 0:
                self._finished(ev)
        elif isinstance(ev, Failed):
            self._failed(ev)

    def _refresh_preview(self) -> None:
        if self.job is not None and self.job_kind == "generate":
            self.page.preview.set_html(self._live.update(self._raw), final=False)

    # ------------------------------------------------------------ ending
    def _finished(self, ev: Finished) -> None:
        st = ev.stats
        self.params.last_seed = st.seed
        if self.job_kind == "ask":
            self.status.finished(st, answered=True)
            self.ask_panel.end(st.finish_reason != "cancelled", "(stopped)" if st.finish_reason == "cancelled" else "")
            return
        self._preview_throttle.cancel()
        html = extract_html(self._raw) if self._raw.strip() else ""
        editor = self.page.code.editor
        if html and html != self._raw:
            editor.set_text(html)
        else:
            editor.highlighter.relex()
        if html:
            self.page.preview.set_html(html, final=True)
            self.generated.emit(html)
        self.status.finished(st)
        status = {"stop": "finished", "length": "length", "cancelled": "cancelled"}[st.finish_reason]
        self._record(html, status, dataclasses.asdict(st))

    def _failed(self, ev: Failed) -> None:
        self.status.failed()
        self._error(ev.message, ev.detail)
        if self.job_kind == "ask":
            self.ask_panel.end(False, ev.message)
            return
        self._preview_throttle.flush()
        html = extract_html(self._raw) if self._raw.strip() else ""
        self._record(html, "failed", {"n_generated": self.status.n_tokens}, ev.message)

    def _record(self, html: str, status: str, timings: dict[str, object], error: str = "") -> None:
        params = self.job_params.to_dict() if self.job_params else {}
        if timings.get("seed") is not None:
            params["seed"] = timings["seed"]
        pair = self.provider.pair
        remote = self.settings.remote_url.strip()
        image = self.inputs.input_image
        entry = HistoryEntry(
            instruction=params.get("instruction", ""), params=params,
            model_name=(pair.name or pair.model.stem) if pair else (remote or ""),
            model_quant=pair.quant if pair else "", pair_id=pair.pair_id if pair else "",
            html=html, raw=self._raw, timings=timings, status=status, error=error,
            thumbnail=thumbnail_png(image) if image is not None else b"",
            input_image=input_image_bytes(image) if image is not None else b"", input_name=self.inputs.input_name)
        try:
            self.current_entry_id = self.history.add(entry)
        except Exception as exc:  # sqlite3.Error, OSError: the result is still on screen
            self._error(f"Could not store this generation in the history: {exc}", kind="warning")
            return
        self.recorded.emit(self.current_entry_id)

    def _job_finished(self) -> None:
        job, self.job = self.job, None
        self.status.ended()
        if job is not None:
            job.deleteLater()
        self._set_running(False)
        image = self.inputs.input_image
        if self.job_kind == "generate" and image is not None and self._raw.strip():
            pages = {0: extract_html(self._raw)}
            pages.update({n: extract_html("".join(t)) for n, t in self._variant_text.items()})
            self.page.fidelity.score(image, pages, token=self.current_entry_id)

    def _store_fidelity(self, entry_id: object, payload: dict[str, object]) -> None:
        if isinstance(entry_id, int) and entry_id > 0:
            try:
                self.history.set_fidelity(entry_id, payload)
            except Exception as exc:  # sqlite3.Error, OSError: the score is still on screen
                self._error(f"Could not store the fidelity score: {exc}", kind="warning")

    def _show_variant(self, number: int, html: str) -> None:
        if self.job is not None:
            return
        self.page.show_page(html)
        self._info(f"Showing variant {number + 1}.")

    def save_to_history(self, html: str) -> None:
        """The user saved an edited page: the history's copy follows."""
        if self.current_entry_id:
            try:
                self.history.update_html(self.current_entry_id, html)
            except Exception:  # the file is saved; the history copy is a convenience
                return

    def apply_settings(self, settings: config.Settings) -> None:
        self.settings = settings
        # The next request (or batch image) uses the new settings; one running now, in the window
        # or in a batch, finishes on the old backend, which is closed after it.
        self.provider.reset(settings)

    def close(self) -> None:
        """Ends the engine: a running request ends at once (the worker is killed after a short grace)."""
        job = self.job
        if job is not None:
            job.cancel()
        if self.batch_dialog is not None:
            self.batch_dialog.cancel()
        self.provider.close()
        if self.batch_dialog is not None:
            self.batch_dialog.shutdown()
        if job is not None:
            job.wait(1000)
        self.provider.shutdown()
