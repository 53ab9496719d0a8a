"""``web2code-convert``: the published checkpoint -> a verified GGUF pair that stock llama.cpp runs.

Exit status: 0 done, 1 ``--verify`` found the output beyond tolerance, 2 a
problem with the input or the environment (one ``error: ...`` line on stderr,
nothing written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from ..app.errors import Web2CodeError
from .hub import PROGRESS_PREFIX, ProgressSink
from .keys import DEFAULT_REPO
from .quantize import MAX_THREADS, VALID_TYPES, native_work_running

#: The signals that stop a conversion cleanly (Ctrl-C, kill, a closed terminal).
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
_stop_requested = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, like every other user error (the usage is one --help away)
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="web2code-convert",
        description="Convert CrystalChat-7B-Web2Code (PyTorch checkpoint) into a GGUF text model plus its "
                    "mmproj vision projector, exactly, for llama.cpp.",
    )
    p.add_argument("source", nargs="?", default=DEFAULT_REPO, metavar="SOURCE",
                   help=f"checkpoint folder or Hugging Face repo id (default: {DEFAULT_REPO})")
    p.add_argument("-o", "--outdir", required=True, type=Path, metavar="OUTDIR",
                   help="output folder: <name>-<QUANT>.gguf, mmproj-<name>-f16.gguf, manifest.json")
    p.add_argument("--quant", action="append", metavar="TYPE",
                   help=f"output type, repeatable (default Q4_K_M): {', '.join(VALID_TYPES)}")
    p.add_argument("--revision", type=_revision, metavar="REV",
                   help="the commit of a Hugging Face SOURCE to download: a commit hash pins the exact files; "
                        "a branch or tag is resolved to its commit once (default: main)")
    p.add_argument("--vision-tower", metavar="SRC",
                   help="CLIP tower folder or repo id when the checkpoint lacks it "
                        "(default: the repo named by mm_vision_tower)")
    p.add_argument("--name", help="file-name stem of the outputs (default: the source's name)")
    p.add_argument("--verify", action="store_true",
                   help="compare the converted F32/F16 model with a float64 reference of the original")
    p.add_argument("--force", action="store_true", help="replace outputs already in OUTDIR")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="download progress on stderr: huggingface-hub's bars (text), or one "
                        f"'{PROGRESS_PREFIX}{{...}}' line per event for programs (json)")
    p.add_argument("--threads", type=_threads, default=0, metavar="N",
                   help=f"threads for llama.cpp, 0 to {MAX_THREADS} (default 0: all cores)")
    return p


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{n} is out of range: use 0 (all cores) to {MAX_THREADS}")
    return n


def _revision(text: str) -> str:
    if not text or len(text) > 255 or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(f"not a revision: {text!r} (use a commit hash, a branch or a tag)")
    return text


def _progress_printer() -> ProgressSink:
    """Writes each event as one prefixed JSON line on stderr, whole (events come from download threads)."""
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        line = PROGRESS_PREFIX + json.dumps(event, separators=(",", ":")) + "\n"
        with lock:
            sys.stderr.write(line)
            sys.stderr.flush()

    return emit


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """First signal: stop (KeyboardInterrupt, the clean-up path); later ones are ignored so that
    the clean-up itself cannot be interrupted."""
    global _stop_requested
    _stop_requested = True
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _stop_requested_flag() -> bool:
    # A KeyboardInterrupt raised inside a ctypes callback (llama.cpp's log) is swallowed there;
    # the flag is seen at the next step of the conversion instead.
    return _stop_requested


def main(argv: list[str] | None = None) -> int:
    """The command; ``argv`` None: this process's arguments (and this process is the command)."""
    global _stop_requested
    _stop_requested = False
    handlers: dict[int, Any] = {}
    try:
        for sig in _STOP_SIGNALS:
            handlers[sig] = signal.signal(sig, _interrupt)
    except ValueError:  # not the main thread: the caller handles signals
        handlers = {}
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr, flush=True)
        if argv is None and native_work_running():
            # llama.cpp's quantizer cannot be cancelled; its output folder is already gone.
            # Leave now instead of letting the interpreter wait for, or tear down around, it.
            sys.stdout.flush()
            os._exit(130)
        return 130
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # imported late: `--help` and argument errors stay instant (torch takes seconds to load)
    from .convert import ConvertOptions, convert

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        result = convert(ConvertOptions(
            outdir=args.outdir, source=args.source, quants=args.quant or ["Q4_K_M"],
            vision_tower=args.vision_tower, name=args.name, force=args.force, verify=args.verify,
            threads=args.threads, log=log, should_stop=_stop_requested_flag,
            revision=args.revision, progress=_progress_printer() if args.progress == "json" else None,
        ))
    except Web2CodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    # The outputs are in place: report them; a signal now cannot undo that.
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(ValueError):
            signal.signal(sig, signal.SIG_IGN)

    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        for m in [*result.models, result.mmproj]:
            print(f"{result.outdir / m.file}  {m.size / 2**20:.1f} MiB")
        print(f"{result.manifest}  pair {result.pair_id}")
    for report in result.verify:
        for line in report.lines():
            print(line, file=sys.stderr)
    return 1 if any(not r.passed for r in result.verify) else 0


if __name__ == "__main__":
    sys.exit(main())
