"""What to ask for: the instruction (with presets) and the sampling settings, as GenerationParams."""

from __future__ import annotations

import json

import qtawesome as qta
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...resources import path as resource_path
from ..engine.events import DEFAULT_MAX_TOKENS, GenerationParams
from ..engine.sampling import SEED_MAX
from .widgets import Disclosure, SeedBox


def load_presets() -> list[dict[str, str]]:
    try:
        data = json.loads(resource_path("presets.json").read_text(encoding="utf-8"))
        return [d for d in data if isinstance(d, dict) and d.get("instruction")]
    except (OSError, ValueError):
        from ..engine.prompt import DEFAULT_INSTRUCTION

        return [{"name": "Web2Code default", "instruction": DEFAULT_INSTRUCTION, "tip": ""}]


class ParamsPanel(QWidget):
    """Instruction presets and text, and (under Advanced) temperature, top-p, max tokens, seed, variants."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.last_seed: int | None = None
        self.presets = load_presets()
        self.preset_box = QComboBox(self)
        for p in self.presets:
            self.preset_box.addItem(p["name"], p["instruction"])
            self.preset_box.setItemData(self.preset_box.count() - 1, p.get("tip", ""), Qt.ItemDataRole.ToolTipRole)
        self.preset_box.addItem("Custom", "")
        self.preset_box.setToolTip("Instruction presets; the first is the instruction the model was trained with")
        self.preset_box.activated.connect(self._preset_chosen)
        self.instruction = QPlainTextEdit(self)
        self.instruction.setPlainText(self.presets[0]["instruction"])
        self.instruction.setToolTip("What to ask the model (Ctrl+Enter generates)")
        self.instruction.setTabChangesFocus(True)
        self.instruction.setAcceptDrops(False)
        self.instruction.setFixedHeight(self.instruction.fontMetrics().lineSpacing() * 3 + 14)
        self.instruction.textChanged.connect(self._instruction_edited)

        adv = QWidget()
        form = QFormLayout(adv)
        form.setContentsMargins(12, 0, 0, 0)
        self.temperature = QDoubleSpinBox(adv)
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(0.2)
        self.temperature.setToolTip("Randomness: 0 always picks the likeliest token (reproducible); "
                                    "the authors used 0.2")
        self.top_p = QDoubleSpinBox(adv)
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(1.0)
        self.top_p.setToolTip("Nucleus sampling: keep the likeliest tokens up to this probability mass (1 = off)")
        self.max_tokens = QSpinBox(adv)
        self.max_tokens.setRange(1, 2048)
        self.max_tokens.setValue(DEFAULT_MAX_TOKENS)
        self.max_tokens.setToolTip("Longest answer in tokens (the model's context leaves room for about 1400)")
        self.seed = SeedBox(SEED_MAX, adv)
        self.seed.setToolTip("Seed of the sampler: the same seed, image and settings give the same page")
        self.btn_reuse_seed = QToolButton(adv)
        self.btn_reuse_seed.setIcon(qta.icon("mdi6.pin-outline"))
        self.btn_reuse_seed.setToolTip("Use the last generation's seed")
        self.btn_reuse_seed.clicked.connect(self.reuse_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.btn_reuse_seed)
        form.addRow("Temperature:", self.temperature)
        form.addRow("Top-p:", self.top_p)
        form.addRow("Max tokens:", self.max_tokens)
        form.addRow("Seed:", seed_row)
        self.variants = QSpinBox(adv)
        self.variants.setRange(1, 4)
        self.variants.setValue(1)
        self.variants.setToolTip("Generate several variants together (they share the encoded image); they are "
                                 "scored against the image and the best one is shown, the others listed")
        form.addRow("Variants:", self.variants)
        self.advanced = Disclosure("Advanced", adv, self)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Instruction:", self))
        row.addWidget(self.preset_box, 1)
        lay.addLayout(row)
        lay.addWidget(self.instruction)
        lay.addWidget(self.advanced)

    def _preset_chosen(self, index: int) -> None:
        text = self.preset_box.itemData(index)
        if text:
            self.instruction.blockSignals(True)
            self.instruction.setPlainText(text)
            self.instruction.blockSignals(False)

    def _instruction_edited(self) -> None:
        text = self.instruction.toPlainText()
        for i in range(self.preset_box.count()):
            if self.preset_box.itemData(i) == text:
                self.preset_box.setCurrentIndex(i)
                return
        self.preset_box.setCurrentIndex(self.preset_box.count() - 1)

    def reuse_seed(self) -> None:
        if self.last_seed is not None:
            self.seed.setValue(self.last_seed)

    def current(self, new_seed: bool = False) -> GenerationParams:
        """The request's parameters (raises RequestError for values the engine would refuse)."""
        seed = None if new_seed or self.seed.value() < 0 else self.seed.value()
        return GenerationParams(instruction=self.instruction.toPlainText().strip(),
                                temperature=round(self.temperature.value(), 3), top_p=round(self.top_p.value(), 3),
                                max_tokens=self.max_tokens.value(), seed=seed, n_variants=self.variants.value())
