"""Regenerating or instructing the picked element through the model: its crop of the input goes as a
normal request, and the answer replaces that element only, shown as a diff. A part of
:class:`EditController`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image
from PySide6.QtCore import QObject, SignalInstance
from PySide6.QtWidgets import QDialog, QWidget

from ..edit import Edit, EditError, History, extract_replacement, locate, replace_element
from ..engine.backend import Request
from ..engine.events import Failed, Finished, GenerationParams, Token
from ..engine.prompt import DEFAULT_INSTRUCTION
from ..errors import Web2CodeError
from ..regions import BEST_EFFORT, crop_region, instruct_prompt
from .edit_widgets import INFO, WARNING, DiffDialog, InstructDialog, Target
from .generation import StreamJob


class PartJobsMixin:
    """Regenerate part and Instruct element; see :mod:`.edit_controller`."""

    if TYPE_CHECKING:  # the controller's, used here
        get_image: Callable[[], Image.Image | None]
        get_html: Callable[[], str]
        start_job: Callable[[Request, QObject], StreamJob]
        target: Target | None
        job: StreamJob | None
        last_raw: str
        confirm_edits: bool
        diff_dialog: DiffDialog | None
        diff_ready: SignalInstance
        busy_changed: SignalInstance
        _params: Callable[[], GenerationParams] | None
        _blocked: Callable[[], bool] | None
        _job_state: dict[str, Any]

        @property
        def busy(self) -> bool: ...
        def parent(self) -> QObject: ...
        def sync_actions(self) -> None: ...
        def _say(self, text: str, kind: str = INFO) -> None: ...
        def _fail(self, text: str) -> None: ...
        def _sync(self) -> History: ...
        def apply(self, edit: Edit) -> bool: ...
        def _locate_in_input(self, then: Callable[[], object] | None = None) -> bool: ...

    # ------------------------------------------------------------ regenerate and instruct
    def regenerate(self) -> bool:
        """Regenerate the picked element from its crop of the input."""
        return self._edit(None)

    def instruct(self, instruction: str | None = None) -> bool:
        """Change the picked element as told (asks for the words when ``instruction`` is None)."""
        if self.target is None:
            self._say("Pick an element first (Pick element, or Select region).", WARNING)
            return False
        if instruction is None:
            try:
                el = locate(self.get_html(), self.target.path, self.target.tag)
            except EditError as exc:
                self._fail(str(exc))
                return False
            parent = self.parent() if isinstance(self.parent(), QWidget) else None
            dlg = InstructDialog(self.target, self.get_html()[el.start:el.end], parent)  # type: ignore[arg-type]
            if dlg.exec() != QDialog.DialogCode.Accepted:
                return False
            instruction = dlg.instruction()
        if not instruction.strip():
            self._say("The instruction is empty.", WARNING)
            return False
        return self._edit(instruction)

    def _edit(self, instruction: str | None) -> bool:
        if self.busy or (self._blocked is not None and self._blocked()):
            self._say("Wait for the current request to finish.", WARNING)
            return False
        target = self.target
        if target is None:
            self._say("Pick an element first (Pick element, or Select region).", WARNING)
            return False
        if self.get_image() is None:
            self._say("Open an input image first.", WARNING)
            return False
        if target.crop is None:  # picked in the preview, not measured yet
            return self._locate_in_input(lambda: self._edit(instruction))
        self._start(target, instruction)
        return self.job is not None

    def _start(self, target: Target, instruction: str | None) -> None:
        image = self.get_image()
        assert image is not None and target.crop is not None
        source = self._sync().current
        try:
            el = locate(source, target.path, target.tag)
            crop, rect = crop_region(image, target.crop)
            params = self._params() if self._params is not None else GenerationParams()
            if instruction is not None:
                asked = instruct_prompt(source[el.start:el.end], instruction)
            else:
                asked = params.instruction or DEFAULT_INSTRUCTION
            params = params.replace(instruction=asked, n_variants=1)
            assert isinstance(self, QObject)  # the controller: the job's parent
            job = self.start_job(Request(crop, params), self)
        except Web2CodeError as exc:
            self._fail(str(exc))
            return
        self.job = job
        self._job_state = {"source": source, "target": target, "instruction": instruction, "texts": [],
                           "failed": None, "finish": "", "rect": rect}
        job.delivered.connect(self._on_events)
        job.finished.connect(self._job_finished)
        self.busy_changed.emit(True)
        self.sync_actions()
        what = "Changing" if instruction is not None else "Regenerating"
        self._say(f"{what} {target.describe()} from a {rect[2] - rect[0]}×{rect[3] - rect[1]} px crop…")
        job.start()

    def _on_events(self, events: list[object]) -> None:
        st = self._job_state
        for ev in events:
            if isinstance(ev, Token) and ev.variant == 0:
                st["texts"].append(ev.text)
            elif isinstance(ev, Failed):
                st["failed"] = ev
            elif isinstance(ev, Finished) and ev.stats.variant == 0:
                st["finish"] = ev.stats.finish_reason

    def _job_finished(self) -> None:
        job, self.job = self.job, None
        st, self._job_state = self._job_state, {}
        if job is not None:
            job.deleteLater()
        self.busy_changed.emit(self.busy)
        self.sync_actions()
        raw = "".join(st.get("texts", []))
        self.last_raw = raw
        failed: Failed | None = st.get("failed")
        if failed is not None:
            self._fail(f"The model failed: {failed.message} The page is unchanged.")
            return
        if st.get("finish") == "cancel" or (job is not None and job.cancelled):
            self._say("Edit stopped; the page is unchanged.")
            return
        target: Target = st["target"]
        try:
            replacement = extract_replacement(raw)
            if not replacement.strip():
                raise EditError("the model wrote no HTML for this part; the page is unchanged")
            label = "instruct" if st["instruction"] is not None else "regenerate"
            edit = replace_element(st["source"], target.path, replacement, tag=target.tag, label=label)
        except Web2CodeError as exc:
            self._fail(str(exc)[:1].upper() + str(exc)[1:])
            return
        if st["instruction"] is not None:
            edit.notes.append(BEST_EFFORT)
        if st.get("finish") == "length":
            edit.notes.append("The model reached its token limit: the new part may be cut short.")
        if not self.confirm_edits:
            self.apply(edit)
            return
        parent = self.parent() if isinstance(self.parent(), QWidget) else None
        title = "Instruct element: the change" if st["instruction"] is not None else "Regenerate part: the change"
        dlg = DiffDialog(edit, title, parent)  # type: ignore[arg-type]
        self.diff_dialog = dlg
        dlg.accepted.connect(lambda: self.apply(edit))
        dlg.rejected.connect(lambda: self._say("Change discarded; the page is unchanged."))
        dlg.finished.connect(lambda _r: self._diff_closed(dlg))
        dlg.open()
        self.diff_ready.emit(dlg)

    def _diff_closed(self, dlg: DiffDialog) -> None:
        if self.diff_dialog is dlg:
            self.diff_dialog = None
        dlg.deleteLater()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
