"""The one stream of events every backend produces, and the parameters of a request.

A request (generate HTML, or ask a question about the page) yields::

    Progress*  Started  Progress*  Token*  Finished
    ...or, at any point:  Failed                    -- and nothing after it

With ``n_variants > 1`` every variant has its own ``Started`` and
``Finished``; variants may be decoded together, so their ``Token`` events can
interleave: ``Started.variant``, ``Token.variant`` and ``Stats.variant`` (0,
1, ...) say which is which. Cancelling ends each unfinished variant with a
``Finished`` whose ``stats.finish_reason`` is ``"cancelled"``; it is not a
failure.

The GUI, the CLI and the tests consume these objects directly;
:func:`event_to_dict` / :func:`event_from_dict` carry them over the worker
pipe and through the CLI's ``--json`` output as plain JSON values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

from ..errors import BackendError, RequestError, Web2CodeError, error_type
from .prompt import DEFAULT_INSTRUCTION

__all__ = [
    "CONTEXT_LENGTH",
    "DEFAULT_MAX_TOKENS",
    "IMAGE_TOKENS",
    "Event",
    "Failed",
    "FinishReason",
    "Finished",
    "GenerationParams",
    "Phase",
    "Progress",
    "RequestKind",
    "Started",
    "Stats",
    "Token",
    "event_from_dict",
    "event_from_json",
    "event_to_dict",
    "event_to_json",
]

RequestKind = Literal["generate", "ask"]
Phase = Literal["load", "encode", "prefill"]
FinishReason = Literal["stop", "length", "cancelled"]

CONTEXT_LENGTH = 2048  # the model's n_positions
IMAGE_TOKENS = 576  # 24×24 CLIP patches at 336 px
DEFAULT_MAX_TOKENS = 1408  # see GenerationParams


def _frozen_set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Started:
    """A request (or one variant of it) has begun."""

    request_id: str
    kind: RequestKind
    variant: int = 0
    n_variants: int = 1

    def __post_init__(self) -> None:
        if self.kind not in get_args(RequestKind):
            raise ValueError(f"unknown request kind {self.kind!r}")


@dataclass(frozen=True)
class Progress:
    """Progress of a phase before the first token: loading the model, encoding the image, prefill.

    ``fraction`` is 0..1 when known. ``done``/``total`` count units (layers,
    tokens) when the phase has them; :meth:`counted` fills both.
    """

    phase: Phase
    fraction: float | None = None
    message: str = ""
    done: int | None = None
    total: int | None = None

    def __post_init__(self) -> None:
        if self.phase not in get_args(Phase):
            raise ValueError(f"unknown progress phase {self.phase!r}")
        if self.fraction is not None:
            if not math.isfinite(self.fraction):
                raise ValueError("progress fraction must be finite")
            _frozen_set(self, "fraction", min(1.0, max(0.0, float(self.fraction))))

    @classmethod
    def counted(cls, phase: Phase, done: int, total: int, message: str = "") -> Progress:
        fraction = done / total if total > 0 else None
        return cls(phase, fraction, message, done, total)


@dataclass(frozen=True)
class Token:
    """One generated token. ``text`` may be empty while a multi-byte character is incomplete."""

    text: str
    token_id: int  # -1 where the backend does not know it (a remote server)
    index: int  # 0, 1, ... within its variant
    variant: int = 0


@dataclass(frozen=True)
class Stats:
    """What a finished run cost and how it ended."""

    n_prompt_tokens: int = 0  # text + image positions
    n_image_tokens: int = 0
    n_generated: int = 0
    load_s: float = 0.0
    image_encode_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    tokens_per_s: float = 0.0
    finish_reason: FinishReason = "stop"
    reused_image: bool = False  # the encoded image came from the cache
    reused_prefix_tokens: int = 0  # KV positions kept from the previous request
    max_tokens_clamped: bool = False  # max_tokens was lowered to fit the context
    devices: tuple[str, ...] = ()
    n_gpu_layers_offloaded: int = 0
    vision_on_gpu: bool = False  # the image encoder (CLIP projector) ran on a GPU device
    seed: int | None = None  # the seed actually used, to reproduce this variant
    variant: int = 0
    draft_tokens: int = 0  # speculative decoding: tokens drafted from the text so far
    accepted_draft_tokens: int = 0  # ... and how many of them the model accepted
    image_text_draft_tokens: int = 0  # of the drafted tokens: those taken from the image's own text (OCR)
    image_text_accepted_tokens: int = 0  # ... and how many of those the model accepted

    def __post_init__(self) -> None:
        if self.finish_reason not in get_args(FinishReason):
            raise ValueError(f"unknown finish reason {self.finish_reason!r}")
        # Accept any sequence (JSON gives lists) but store a tuple: the event stays immutable.
        _frozen_set(self, "devices", tuple(self.devices))

    @staticmethod
    def rate(n_generated: int, decode_s: float) -> float:
        """Tokens per second, 0 when nothing was timed."""
        return n_generated / decode_s if decode_s > 0 else 0.0


@dataclass(frozen=True)
class Finished:
    """The run ended normally, by length, or by cancel (see ``stats.finish_reason``)."""

    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class Failed:
    """The request failed; ``message`` is one line for the user, ``detail`` is for a details view.

    ``error_type`` names the :mod:`~web2code.app.errors` class, so a process on
    the other side of a pipe can raise the same kind of error again.
    """

    message: str
    detail: str = ""
    error_type: str = "Web2CodeError"

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failed:
        if isinstance(exc, Web2CodeError):
            return cls(exc.message, exc.detail, type(exc).__name__)
        # A bug or a library error: still one line, the type name tells a developer where to look.
        return cls(f"Internal error: {type(exc).__name__}: {exc}".strip(), "", "Web2CodeError")

    def to_exception(self) -> Web2CodeError:
        return error_type(self.error_type)(self.message, detail=self.detail)


Event: TypeAlias = Started | Progress | Token | Finished | Failed

_TYPES: dict[str, type[Any]] = {
    "started": Started,
    "progress": Progress,
    "token": Token,
    "finished": Finished,
    "failed": Failed,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict: ``{"type": "token", "text": ..., ...}``."""
    try:
        name = _NAMES[type(event)]
    except KeyError:
        raise TypeError(f"not an event: {event!r}") from None
    d = dataclasses.asdict(event)
    if isinstance(event, Finished):
        d["stats"]["devices"] = list(event.stats.devices)
    return {"type": name, **d}


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    return cls(**data)


def event_from_dict(data: object) -> Event:
    """The inverse of :func:`event_to_dict`; anything malformed is a :class:`BackendError`."""
    try:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        body = dict(data)
        name = body.pop("type", None)
        if name not in _TYPES:
            raise ValueError(f"unknown event type {name!r}")
        if name == "finished":
            stats = body.pop("stats", {})
            if not isinstance(stats, dict):
                raise ValueError("stats is not an object")
            if body:
                raise ValueError(f"unknown fields {sorted(body)}")
            devices = stats.get("devices", [])
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise ValueError("devices is not a list of names")  # Stats would make a tuple of anything
            return Finished(_build(Stats, stats))
        event: Event = _build(_TYPES[name], body)
        return event
    except (TypeError, ValueError) as exc:
        raise BackendError(
            "Received a malformed event from the backend.", detail=f"{exc}: {str(data)[:500]}"
        ) from exc


def event_to_json(event: Event) -> str:
    """One line of JSON (no newlines inside), for line-based pipes."""
    return json.dumps(event_to_dict(event), ensure_ascii=False, separators=(",", ":"))


def event_from_json(line: str | bytes) -> Event:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise BackendError("Received garbage instead of an event from the backend.",
                           detail=repr(line[:500])) from exc
    return event_from_dict(data)


@dataclass(frozen=True)
class GenerationParams:
    """What to generate and how to sample. Out-of-range values raise :class:`RequestError`.

    Defaults follow the authors' evaluation script (temperature 0.2, no top-p or
    top-k truncation, no repetition penalty). ``temperature=0`` is greedy and
    fully deterministic. ``top_p=1.0`` and ``top_k=0`` switch those filters off.
    ``max_tokens`` 1408 fits the 2048-token context after the 576 image
    positions and the 49 text tokens of the default prompt, with room for a
    slightly longer instruction (1536 would not fit: 576 + 49 + 1536 > 2048);
    the engine clamps it when a longer question or conversation leaves less
    room, and says so in ``Stats.max_tokens_clamped``.
    ``seed=None`` draws a fresh seed per request.
    """

    instruction: str = DEFAULT_INSTRUCTION
    temperature: float = 0.2
    top_p: float = 1.0
    top_k: int = 0
    repeat_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    n_variants: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise RequestError("The instruction is empty.")
        for name in ("temperature", "top_p", "repeat_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise RequestError(f"{name} must be a number, got {v!r}.")
        for name in ("top_k", "max_tokens", "n_variants"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise RequestError(f"{name} must be a whole number, got {v!r}.")
        if not 0.0 <= self.temperature <= 5.0:
            raise RequestError(f"temperature must be between 0 and 5, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise RequestError(f"top_p must be greater than 0 and at most 1, got {self.top_p}.")
        if self.top_k < 0:
            raise RequestError(f"top_k must be 0 (off) or positive, got {self.top_k}.")
        if not 0.0 < self.repeat_penalty <= 10.0:
            raise RequestError(
                f"repeat_penalty must be greater than 0 and at most 10, got {self.repeat_penalty}."
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32
        ):
            raise RequestError(f"seed must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}.")
        if not 1 <= self.max_tokens <= CONTEXT_LENGTH:
            raise RequestError(f"max_tokens must be between 1 and {CONTEXT_LENGTH}, got {self.max_tokens}.")
        if not 1 <= self.n_variants <= 16:
            raise RequestError(f"n_variants must be between 1 and 16, got {self.n_variants}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes: Any) -> GenerationParams:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise RequestError(f"Unknown generation parameters: {', '.join(sorted(unknown))}.")
        return cls(**data)
