"""Exceptions a user can cause, with messages a user understands.

Every error that reaches a person (a bad image, a wrong model file, an
unreachable server) is one of these types. ``str(error)`` is always one line
written for the user; ``error.detail`` may hold technical text (a llama.cpp log
tail, an HTTP body) that the GUI shows behind a "details" button and the CLI
prints only with ``--verbose``. Anything else that escapes is a bug and may
show a traceback.

The types are deliberately few: callers branch on them (exit status, which
widget shows the message, whether a retry makes sense), not on wording.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "Cancelled",
    "EngineClosed",
    "GenerationError",
    "ImageError",
    "ModelError",
    "RequestError",
    "Web2CodeError",
    "error_type",
]


class Web2CodeError(Exception):
    """Base class: a problem the user can understand and usually fix.

    ``exit_code`` is what the command line exits with: 2 for bad input (the
    convention for usage errors), 1 for failures of the machinery.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, detail: str = "") -> None:
        # One line, so a CLI message and a status-bar text stay readable.
        self.message = " ".join(message.split()) or type(self).__name__
        self.detail = detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[Web2CodeError], tuple[str], dict[str, str]]:
        # Keep ``detail`` when the worker process pickles an error across the pipe.
        return (type(self), (self.message,), {"detail": self.detail})


class RequestError(Web2CodeError):
    """The request itself is invalid: empty instruction, out-of-range sampling value."""

    exit_code = 2


class ImageError(Web2CodeError):
    """The input image is missing, not an image, damaged, empty or too large."""

    exit_code = 2


class ModelError(Web2CodeError):
    """The GGUF model or mmproj is missing, unreadable, of the wrong kind, or the two do not match."""

    exit_code = 2


class GenerationError(Web2CodeError):
    """Generation failed inside the engine (context overflow, llama.cpp error)."""


class BackendError(Web2CodeError):
    """The worker process or remote server failed, was unreachable or answered garbage."""


class EngineClosed(Web2CodeError):
    """A model, session or backend was used after it was closed (a programming or shutdown-order error)."""


class Cancelled(Web2CodeError):
    """The user cancelled the job. Not a failure: callers usually show nothing."""

    exit_code = 130  # what shells use for Ctrl+C

    def __init__(self, message: str = "Cancelled.", *, detail: str = "") -> None:
        super().__init__(message, detail=detail)


_BY_NAME: dict[str, type[Web2CodeError]] = {
    cls.__name__: cls
    for cls in (Web2CodeError, RequestError, ImageError, ModelError, GenerationError, BackendError, Cancelled,
                EngineClosed)
}


def error_type(name: str) -> type[Web2CodeError]:
    """The error class called ``name`` (as sent over a pipe by the worker); the base class if unknown."""
    return _BY_NAME.get(name, Web2CodeError)
