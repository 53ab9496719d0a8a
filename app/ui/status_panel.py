"""The status bar's figures: what the engine is doing, progress, tokens, speed and time."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from ..engine.events import Progress, Stats
from .throttle import Throttle

PHASES = {"load": "Loading model", "encode": "Encoding image", "prefill": "Reading prompt"}
COUNT_INTERVAL_MS = 100  # token counter and progress bar while tokens arrive
FINISH_WORDS = {"stop": "Finished", "length": "Finished (reached max tokens)", "cancelled": "Stopped"}


class StatusPanel(QObject):
    """Owns the status bar's widgets; the request controller reports to it, it never starts anything."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.bar = bar
        self.phase_label = QLabel("Ready", bar)
        self.phase_label.setToolTip("What the engine is doing")
        self.progress = QProgressBar(bar)
        self.progress.setFixedWidth(180)
        self.progress.setTextVisible(False)
        self.progress.setToolTip("Progress of the current step")
        self.tokens_label = QLabel("", bar)
        self.tokens_label.setToolTip("Tokens generated")
        self.rate_label = QLabel("", bar)
        self.rate_label.setToolTip("Generation speed in tokens per second")
        self.elapsed_label = QLabel("", bar)
        self.elapsed_label.setToolTip("Time since Generate")
        self.device_label = QLabel("", bar)
        self.device_label.setToolTip("Where the model ran: device, layers on it, and the image encoder")
        self.rates: dict[str, float] = {}  # tokens/s measured per device set-up, this session
        bar.addWidget(self.phase_label, 1)
        for w in (self.progress, self.tokens_label, self.rate_label, self.elapsed_label, self.device_label):
            bar.addPermanentWidget(w)
        self.progress.setVisible(False)
        self.n_tokens = 0
        self._t_start = 0.0
        self._t_first = 0.0
        self._max_tokens = 0
        # QProgressBar.setValue repaints at once (~1 ms, spikes of tens): not once per token.
        self._count_throttle = Throttle(self._show_count, COUNT_INTERVAL_MS, self)
        self._clock = QTimer(self)
        self._clock.setInterval(200)
        self._clock.timeout.connect(self.tick)

    def message(self, text: str, ms: int = 6000) -> None:
        self.bar.showMessage(text, ms)

    # ------------------------------------------------------------ a request
    def begin(self) -> None:
        # A message left by an earlier request (its failure) hides the phase: this request's figures count now.
        self.bar.clearMessage()
        self.n_tokens = 0
        self._t_start = time.monotonic()
        self._t_first = 0.0
        self.phase_label.setText("Starting…")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.tokens_label.setText("")
        self.rate_label.setText("")
        self._clock.start()

    def phase(self, ev: Progress) -> None:
        self.phase_label.setText(PHASES.get(ev.phase, ev.phase) + "…")
        if ev.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(ev.fraction * 1000))

    def started(self, text: str, max_tokens: int) -> None:
        self.phase_label.setText(text)
        self._max_tokens = max_tokens
        self.progress.setRange(0, max_tokens)
        self.progress.setValue(0)

    def tokens(self, n: int) -> None:
        if not self._t_first:
            self._t_first = time.monotonic()
        self.n_tokens += n
        self._count_throttle()

    def _show_count(self) -> None:
        self.progress.setValue(min(self.progress.maximum(), self.n_tokens))
        self.tokens_label.setText(f"{self.n_tokens} tokens")

    def finished(self, stats: Stats, *, answered: bool = False) -> None:
        self._count_throttle.flush()
        self.bar.clearMessage()  # the result is what the bar shows now, not a message from before
        reason = stats.finish_reason
        if answered:
            self.phase_label.setText("Answered" if reason != "cancelled" else "Stopped")
            return
        self.phase_label.setText(f"{FINISH_WORDS[reason]} · seed {stats.seed}"
                                 + (" · image reused" if stats.reused_image else ""))
        if stats.tokens_per_s:
            self.rate_label.setText(f"{stats.tokens_per_s:.1f} tok/s")
        self.show_device(stats)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)

    def show_device(self, stats: Stats) -> None:
        """``Vulkan0 (…) · 32 layers · vision GPU``; the tooltip lists the speed of each set-up tried."""
        if not stats.devices:
            return
        gpu = [d for d in stats.devices if not d.upper().startswith("CPU")]
        if gpu and stats.n_gpu_layers_offloaded:
            where = f"{gpu[0]} · {stats.n_gpu_layers_offloaded} layers"
        else:
            where = "CPU" if not stats.devices[0].startswith("remote") else stats.devices[0]
        text = f"{where} · vision {'GPU' if stats.vision_on_gpu else 'CPU'}"
        self.device_label.setText(text)
        if stats.tokens_per_s:
            self.rates[text] = stats.tokens_per_s
        self.device_label.setToolTip("Where the model ran (Settings: GPU layers, vision on GPU).\n"
                                     + "\n".join(f"{k}: {v:.1f} tok/s" for k, v in self.rates.items()))

    def failed(self) -> None:
        self._count_throttle.flush()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.phase_label.setText("Failed")

    def stopping(self) -> None:
        self.phase_label.setText("Stopping…")

    def ended(self) -> None:
        self.progress.setVisible(False)
        self._clock.stop()
        self.tick(final=True)

    def tick(self, final: bool = False) -> None:
        if not self._t_start:
            return
        now = time.monotonic()
        self.elapsed_label.setText(f"{now - self._t_start:.1f} s")
        if self._t_first and self.n_tokens > 1 and not final:
            self.rate_label.setText(f"{(self.n_tokens - 1) / max(1e-6, now - self._t_first):.1f} tok/s")
