"""The ``web2code`` command: the desktop application, and subcommands for scripts.

``web2code`` (optionally with an image) starts the application;
``web2code generate``, ``ask`` and ``models`` work without a display. User
mistakes print one line on stderr and exit with status 2, never a traceback;
a request that fails for another reason (the model) exits with status 1.

Ctrl+C (SIGINT) and SIGTERM end ``generate`` and ``ask`` cleanly: the running
request is cancelled, no output file is written for a page that did not finish
(a batch keeps the pages that did, and writes its report with every image's
status: ok, failed, cancelled or skipped), and the exit status is 130 for
SIGINT, 143 for SIGTERM (128 + the signal's number, as shells report it). A
second signal ends the program at once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import __version__, cli_address, cli_export, cli_prepare, cli_score
from .errors import Cancelled, Web2CodeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class UsageError(Web2CodeError):
    """A command-line mistake (exit status 2)."""

    exit_code = 2


class Interrupted(Cancelled):
    """SIGINT (Ctrl+C) or SIGTERM ended the command: exit status 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.exit_code = 128 + signum


class Interrupts:
    """Turns the first SIGINT or SIGTERM into a cancel of what is running (see the module notes).

    The signal handler only records the signal; a helper thread calls the registered
    cancel functions, again every 50 ms until the command ends (a request that was
    just starting would clear a single cancel). The command calls :meth:`check` at
    the points where it would write something, and ends with :class:`Interrupted`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self._cancels: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._wake: queue.SimpleQueue[int] = queue.SimpleQueue()  # safe to put from a signal handler
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        threading.Thread(target=self._cancel_loop, name="web2code-interrupt", daemon=True).start()

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.signum:  # the second one: stop now
            self.uninstall()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        self._wake.put(signum)

    def _cancel_loop(self) -> None:
        self._wake.get()
        while True:
            with self._lock:
                cancels = list(self._cancels)
            for cancel in cancels:
                with contextlib.suppress(Exception):
                    cancel()
            time.sleep(0.05)

    @contextlib.contextmanager
    def cancelling(self, cancel: Callable[[], None]) -> Iterator[None]:
        """``cancel`` is called when a signal comes while the block runs."""
        with self._lock:
            self._cancels.append(cancel)
        try:
            yield
        finally:
            with self._lock:
                self._cancels.remove(cancel)

    def check(self) -> None:
        if self.signum:
            raise Interrupted(self.signum)


def _interrupts(args: argparse.Namespace) -> Interrupts:
    found = getattr(args, "interrupts", None)
    return found if isinstance(found, Interrupts) else Interrupts()


# ----------------------------------------------------------------- arguments
def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", type=Path, metavar="M.gguf", help="text model GGUF (with --mmproj)")
    g.add_argument("--mmproj", type=Path, metavar="P.gguf", help="vision projector GGUF (with --model)")
    g.add_argument("--models-dir", type=Path, metavar="DIR",
                   help="folder of converted pairs (default: the user data folder, or $WEB2CODE_MODELS_DIR)")
    g.add_argument("--quant", default=None, help="which installed quantization to use (default: Q4_K_M)")
    g.add_argument("--backend", metavar="URL",
                   help="an OpenAI-compatible server (e.g. llama-server) instead of the local engine")
    g.add_argument("--api-key", default=None, help="API key for --backend (or $WEB2CODE_API_KEY)")
    g.add_argument("--timeout", default=None, metavar="SECONDS",
                   help="with --backend: the longest the server may stay silent, before its answer starts and "
                        "between two chunks (default 120, room for a CPU server's prefill)")
    g.add_argument("--gpu-layers", default="auto", metavar="N",
                   help="layers to offload to the GPU: auto (all that fit), 0 (CPU) or N")
    g.add_argument("--no-vision-gpu", action="store_true", help="run the vision encoder on the CPU")
    g.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads (default: physical cores)")
    g.add_argument("--flash-attn", action="store_true", help="use flash attention")
    g.add_argument("--no-speculative", action="store_true",
                   help="one token per step (no drafts from the text; the output is the same either way)")
    g.add_argument("--no-ocr-drafts", action="store_true",
                   help="no drafts from the text read in the image (the output is the same either way)")


def _add_sampling_args(p: argparse.ArgumentParser, *, instruction: bool) -> None:
    g = p.add_argument_group("sampling")
    if instruction:
        g.add_argument("--instruction", default=None,
                       help="what to ask for (default: 'Please generate html code for the given image')")
    g.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="0 = greedy, deterministic (default 0.2)")
    g.add_argument("--top-p", type=float, default=None, metavar="P")
    g.add_argument("--top-k", type=int, default=None, metavar="K")
    g.add_argument("--repeat-penalty", type=float, default=None, metavar="R")
    g.add_argument("--seed", type=int, default=None, metavar="S")
    g.add_argument("--max-tokens", type=int, default=None, metavar="N")
    g.add_argument("--stream", action="store_true", help="print the text while it is generated")
    g.add_argument("--json", action="store_true", help="print one JSON object (or a batch report)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="web2code",
        description="Web2Code: turn a picture of a webpage into HTML, privately, on this machine.",
        epilog="Without a command, the desktop application starts (optionally with IMAGE open).",
    )
    p.add_argument("--version", action="version", version=f"web2code {__version__}")
    p.add_argument("--self-test", action="store_true",
                   help="check this installation without a screen: open the window offscreen, load a model "
                        "pair (--model M --mmproj P, or --models-dir DIR; default: the installed one), generate "
                        "a few tokens, render them in the preview; exit 0 when everything works")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("generate", help="write HTML for one or more images",
                       description="Write HTML for images. Several images or a folder run as a batch.")
    g.add_argument("images", nargs="+", type=cli_address.image_source, metavar="IMAGE",
                   help="image files, folders, or web addresses (http://, https://: the page is captured)")
    g.add_argument("-o", "--output", type=Path, metavar="OUT.html", help="write the HTML here (one image)")
    g.add_argument("--out-dir", type=Path, metavar="DIR", help="batch output folder (one .html per image)")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="concurrent requests (remote backend)")
    g.add_argument("--variants", type=int, default=1, metavar="N",
                   help="generate N variants together, sharing the encoded image")
    g.add_argument("--pick", choices=("first", "best"), default="first",
                   help="with --variants: keep the first variant, or the one with the best fidelity score "
                        "(every variant's score is reported)")
    g.add_argument("--no-score", action="store_true",
                   help="batch: leave the report's fidelity column empty (scoring renders every page)")
    cli_score.add_mode_arg(g)
    _add_model_args(g)
    cli_address.add_capture_args(g)
    _add_sampling_args(g, instruction=True)
    cli_prepare.add_flag(g)

    a = sub.add_parser("ask", help="answer a question about a webpage image")
    a.add_argument("image", type=cli_address.image_source, metavar="IMAGE", help="an image file or a web address")
    a.add_argument("question", metavar="QUESTION")
    _add_model_args(a)
    cli_address.add_capture_args(a)
    _add_sampling_args(a, instruction=False)
    cli_prepare.add_flag(a)

    m = sub.add_parser("models", help="list or verify installed model pairs")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = msub.add_parser("list", help="list installed pairs")
    ml.add_argument("--models-dir", type=Path, metavar="DIR")
    ml.add_argument("--json", action="store_true")
    mv = msub.add_parser("verify", help="check a pair (a manifest folder, a manifest.json or a model GGUF)")
    mv.add_argument("path", type=Path)
    mv.add_argument("--mmproj", type=Path, help="the projector, when PATH is a model GGUF")
    mv.add_argument("--json", action="store_true")
    mv.add_argument("--fix", action="store_true",
                    help="give files from an older converter the current chat template, in place "
                         "(every model of the manifest; no new conversion)")

    cli_prepare.add_parser(sub)
    cli_score.add_parser(sub)
    cli_export.add_parsers(sub)
    return p


COMMANDS = ("generate", "ask", "models", "score", "prepare", *cli_export.COMMANDS)


# ---------------------------------------------------------------- backends
def _params(args: argparse.Namespace, instruction: str | None) -> Any:
    from .engine.events import GenerationParams

    values: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "repeat_penalty", "seed", "max_tokens"):
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    if instruction is not None:
        values["instruction"] = instruction
    if getattr(args, "variants", 1) != 1:
        values["n_variants"] = args.variants
    return GenerationParams(**values)


def _gpu_layers(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"--gpu-layers must be auto, 0 or a number, not {value!r}") from None
    if n < 0:
        raise UsageError("--gpu-layers must not be negative")
    return n


def resolve_pair(args: argparse.Namespace) -> Any:
    from .config import models_dir
    from .engine.pair import ModelPair, choose, discover

    if args.model or args.mmproj:
        if not (args.model and args.mmproj):
            raise UsageError("--model and --mmproj go together")
        return ModelPair(model=args.model, mmproj=args.mmproj, name=args.model.stem)
    folder = models_dir(args.models_dir)
    pairs = discover(folder)
    if args.quant:
        pairs = [p for p in pairs if p.quant == args.quant]
    pair = choose(pairs, args.quant or "Q4_K_M")
    if pair is None:
        raise UsageError(
            f"no model pair in {folder}{' with quant ' + args.quant if args.quant else ''}: convert one with "
            "web2code-convert, or pass --model and --mmproj")
    return pair


def _remote_timeout(args: argparse.Namespace) -> float:
    """``--timeout`` (a positive number of seconds): the longest wait for the server's next event."""
    import math

    from .engine.remote import DEFAULT_TIMEOUT

    if args.timeout is None:
        return DEFAULT_TIMEOUT
    try:
        t = float(args.timeout)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and t > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout!r}")
    return t


def make_backend(args: argparse.Namespace) -> Any:
    if getattr(args, "timeout", None) is not None and not args.backend:
        raise UsageError("--timeout is for --backend (the local engine has no timeout)")
    if args.backend:
        import os

        from .engine.remote import RemoteBackend, server_address

        server_address(args.backend)  # a malformed address is reported before anything else is done
        read_timeout = _remote_timeout(args)
        offset = None
        if args.model or args.mmproj or args.models_dir:
            from .engine.pair import inspect_pair

            offset = inspect_pair(resolve_pair(args)).logit_offset
        return RemoteBackend(args.backend, api_key=args.api_key or os.environ.get("WEB2CODE_API_KEY"),
                             logit_offset=offset, read_timeout=read_timeout)
    from .engine.backend import LocalBackend
    from .engine.session import EngineOptions

    if args.threads < 0:
        raise UsageError("--threads must not be negative")
    opts = EngineOptions(n_gpu_layers=_gpu_layers(args.gpu_layers), vision_gpu=not args.no_vision_gpu,
                         n_threads=args.threads, flash_attention=args.flash_attn,
                         speculative=False if args.no_speculative else None,
                         ocr_drafts=not getattr(args, "no_ocr_drafts", False))
    return LocalBackend(resolve_pair(args), opts)


# ---------------------------------------------------------------- running
@dataclass
class Outcome:
    """What one request produced."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    stats: Any = None
    error: str = ""
    exit_code: int = 0  # 2 for a user mistake (bad image, wrong pair, bad parameter), 1 otherwise
    variants: dict[int, str] = field(default_factory=dict)


def consume(events: Iterator[Any], stream_to: TextIO | None = None,
            on_progress: Any = None) -> Outcome:
    from .engine.events import Failed, Finished, Progress, Token

    out = Outcome()
    texts: dict[int, list[str]] = {}
    for ev in events:
        if isinstance(ev, Token):
            variant = getattr(ev, "variant", 0)
            texts.setdefault(variant, []).append(ev.text)
            if variant == 0:
                out.token_ids.append(ev.token_id)
                if stream_to is not None:
                    stream_to.write(ev.text)
                    stream_to.flush()
        elif isinstance(ev, Finished):
            if getattr(ev.stats, "variant", 0) == 0:
                out.stats = ev.stats
        elif isinstance(ev, Failed):
            out.error = ev.message
            out.exit_code = ev.to_exception().exit_code
        elif isinstance(ev, Progress) and on_progress is not None:
            on_progress(ev)
    out.variants = {k: "".join(v).strip() for k, v in sorted(texts.items())}
    out.text = out.variants.get(0, "")
    if stream_to is not None and out.text:
        stream_to.write("\n")
    return out


def _timings(stats: Any) -> dict[str, float]:
    if stats is None:
        return {}
    return {"load_s": round(stats.load_s, 4), "image_encode_s": round(stats.image_encode_s, 4),
            "prefill_s": round(stats.prefill_s, 4), "decode_s": round(stats.decode_s, 4),
            "tokens_per_s": round(stats.tokens_per_s, 3)}


def _collect_images(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()))
        elif p.exists():
            found.append(p)
        else:
            raise UsageError(f"no such file: {p}")
    if not found:
        raise UsageError("no images found in " + ", ".join(str(p) for p in paths))
    return found


def _write_text(path: Path, text: str) -> None:
    from .config import atomic_write_bytes

    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _progress_line(ev: Any) -> None:
    if ev.fraction is not None and sys.stderr.isatty():
        sys.stderr.write(f"\r{ev.message or ev.phase}: {ev.fraction * 100:5.1f}%\x1b[K")
        if ev.fraction >= 1.0:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def cmd_generate(args: argparse.Namespace) -> int:
    from .batchnames import output_names
    from .engine.html import extract_html

    images = _collect_images(args.images)
    batch = len(images) > 1 or any(p.is_dir() for p in args.images)
    if batch:
        return _batch(args, images)
    if args.output and args.out_dir:
        raise UsageError("use -o for one image or --out-dir for a batch, not both")
    params = _params(args, args.instruction)
    interrupts = _interrupts(args)
    if not args.backend:
        resolve_pair(args)  # a missing model is said before the image is prepared
    image, prepared = cli_prepare.prepared_input(images[0], args)
    if prepared is not None and prepared.changed and not args.json:
        print(f"prepared: {prepared.note}", file=sys.stderr)
    _read_text_ahead(image, args)
    with make_backend(args) as backend:
        session = getattr(backend, "session", None)
        with interrupts.cancelling(backend.cancel):
            interrupts.check()
            events = backend.generate(image, params)
            out = consume(events, sys.stdout if args.stream and not args.json else None,
                          on_progress=None if args.json else _progress_line)
        interrupts.check()  # an interrupted page is not written anywhere
        if out.error:
            print(f"error: {out.error}", file=sys.stderr)
            return out.exit_code
        html = extract_html(out.text)
        picked = _pick_variant(args, images[0], out)
        if picked is not None:
            html = picked["html"]
        if args.output:
            _write_text(args.output, html)
        elif args.out_dir:
            _write_text(args.out_dir / output_names(images)[0], html)
        if args.json:
            session = getattr(backend, "session", session)
            obj = {
                "html": html, "text": out.text, "token_ids": out.token_ids,
                "prompt_token_ids": _prompt_ids(backend, images[0], params.instruction),
                "n_prompt_tokens": out.stats.n_prompt_tokens if out.stats else 0,
                "timings": _timings(out.stats),
                "finish_reason": out.stats.finish_reason if out.stats else "",
                "seed": getattr(out.stats, "seed", None),
                "draft_tokens": getattr(out.stats, "draft_tokens", 0),
                "accepted_draft_tokens": getattr(out.stats, "accepted_draft_tokens", 0),
                "image_text_draft_tokens": getattr(out.stats, "image_text_draft_tokens", 0),
                "image_text_accepted_tokens": getattr(out.stats, "image_text_accepted_tokens", 0),
                "prepared": prepared.to_dict() if prepared is not None else None,
            }
            if len(out.variants) > 1:
                obj["variants"] = [extract_html(t) for _, t in sorted(out.variants.items())]
            if picked is not None:
                obj["picked_variant"] = picked["variant"]
                obj["score"] = picked["score"]
                obj["variant_scores"] = picked["scores"]
            print(json.dumps(obj, ensure_ascii=False))
        elif not args.stream and not args.output and not args.out_dir:
            print(html)
        if out.stats and out.stats.max_tokens_clamped:
            n_ctx = getattr(getattr(getattr(backend, "session", None), "info", None), "n_ctx_train", 0)
            size = f"{n_ctx}-token " if n_ctx else ""  # the loaded model's own; a server does not say
            print(f"note: --max-tokens was lowered to what fits in the model's {size}context", file=sys.stderr)
    return 0


def _read_text_ahead(image: Any, args: argparse.Namespace) -> None:
    """The image's text, read in this process while the engine loads and encodes (the engine drafts from
    it once it is in the OCR cache, and --pick best scores with it); never waited for."""
    if args.backend or getattr(args, "no_speculative", False) or getattr(args, "no_ocr_drafts", False):
        return

    def read() -> None:
        from .engine.image import load_image
        from .fidelity.ocr import read_blocks

        with contextlib.suppress(Exception):  # drafts and scores only get faster with it
            if hasattr(os, "setpriority"):  # the cores llama.cpp leaves idle (Linux: per thread)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            read_blocks(load_image(image))

    threading.Thread(target=read, name="web2code-read-text", daemon=True).start()


def _pick_variant(args: argparse.Namespace, image: Path, out: Any) -> dict[str, Any] | None:
    """``--pick best``: score every variant against the image, keep the best (ties: the lowest number)."""
    from .engine.html import extract_html
    from .engine.image import load_image

    if args.pick != "best":
        return None
    img = load_image(image)
    scores: list[dict[str, Any]] = []
    for variant, text in sorted(out.variants.items()):
        html = extract_html(text)
        try:
            fid = cli_score.score_html(img, html, args.score_mode).fidelity
            scores.append({"variant": variant, "score": round(fid.score, 6), **{k: round(v, 6) for k, v in
                                                                               fid.sub.items()}, "html": html})
        except Web2CodeError as exc:  # a page that cannot be rendered scores 0, the others still count
            scores.append({"variant": variant, "score": 0.0, "error": str(exc), "html": html})
    best = max(scores, key=lambda r: (r["score"], -r["variant"]))
    if not args.json:
        for r in sorted(scores, key=lambda r: (-r["score"], r["variant"])):
            mark = "*" if r is best else " "
            print(f"{mark} variant {r['variant']}: score {r['score']:.3f}"
                  + (f" ({r['error']})" if "error" in r else ""), file=sys.stderr)
    return {"variant": best["variant"], "score": best["score"], "html": best["html"],
            "scores": [{k: v for k, v in r.items() if k != "html"} for r in scores]}


def _prompt_ids(backend: Any, image: Path, instruction: str) -> list[int] | None:
    session = getattr(backend, "session", None)
    if session is None:
        return None
    ids: list[int] = session.prompt_token_ids(image, instruction)
    return ids


def _batch(args: argparse.Namespace, images: list[Path]) -> int:
    from .batchnames import output_names
    from .engine.html import extract_html

    if args.output:
        raise UsageError("-o names one output file; use --out-dir for several images")
    out_dir: Path = args.out_dir or Path("web2code-out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    params = _params(args, args.instruction)
    interrupts = _interrupts(args)
    rows: list[dict[str, Any]] = []
    # scored after the batch, on this thread (rendering is Qt's, and Qt lives here): row, image, variant texts
    scores_wanted: list[tuple[dict[str, Any], Path, dict[int, str]]] = []
    lock = threading.Lock()
    done = 0
    t_start = time.perf_counter()
    with make_backend(args) as backend:
        jobs = args.jobs if args.backend else 1  # one local model runs one request at a time
        live: set[Any] = set()  # backends with a request in flight: Ctrl+C cancels them
        stop = threading.Event()

        def one(path: Path, name: str) -> dict[str, Any]:
            nonlocal done
            t0 = time.perf_counter()
            row: dict[str, Any] = {"image": str(path), "output": "", "status": "ok", "error": ""}
            try:
                image, prepared = cli_prepare.prepared_input(path, args)
                row["prepared"] = prepared.summary if prepared is not None else "off"
                b = backend if jobs == 1 else backend.clone()
                with lock:
                    if stop.is_set():
                        raise Cancelled()
                    live.add(b)
                try:
                    out = consume(b.generate(image, params))
                finally:
                    with lock:
                        live.discard(b)
                if out.error:
                    row.update(status="failed", error=out.error)
                elif out.stats is not None and out.stats.finish_reason == "cancelled":
                    row.update(status="cancelled", error="interrupted")  # never a half page
                else:
                    target = out_dir / name  # distinct for every input (batchnames.py)
                    page = extract_html(out.text)
                    _write_text(target, page)
                    row["output"] = str(target)
                    if args.pick == "best" and len(out.variants) > 1:
                        with lock:
                            scores_wanted.append((row, path, dict(out.variants)))
                    elif not args.no_score:
                        with lock:
                            scores_wanted.append((row, path, {0: out.text}))
                    row["n_generated"] = out.stats.n_generated if out.stats else 0
                    row.update(_timings(out.stats))
            except Cancelled:
                row.update(status="skipped", error="interrupted before it started")
            except Web2CodeError as exc:
                row.update(status="failed", error=str(exc))
            except Exception as exc:  # a bug below: this image fails, the batch goes on and is reported
                row.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
            row["wall_s"] = round(time.perf_counter() - t0, 3)
            with lock:
                done += 1
                sys.stderr.write(f"\r[{done}/{len(images)}] {path.name}: {row['status']}\x1b[K\n"
                                 if sys.stderr.isatty() else f"[{done}/{len(images)}] {path.name}: "
                                 f"{row['status']}{' (' + row['error'] + ')' if row['error'] else ''}\n")
            return row

        def cancel_all() -> None:  # Ctrl+C, SIGTERM: no new image starts, the running ones end
            stop.set()
            with lock:
                for b in live:
                    b.cancel()

        with interrupts.cancelling(cancel_all), ThreadPoolExecutor(max_workers=jobs) as pool:
            try:
                rows = list(pool.map(one, images, output_names(images)))
            except KeyboardInterrupt:  # end the requests in flight now, not when each would have ended
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                while True:  # again until none is left: a request just starting clears an earlier cancel
                    with lock:
                        if not live:
                            break
                        for b in live:
                            b.cancel()
                    time.sleep(0.05)
                raise
    if not interrupts.signum:
        _score_rows(args, scores_wanted)
    report = {"images": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
              "failed": sum(r["status"] == "failed" for r in rows),
              "cancelled": sum(r["status"] == "cancelled" for r in rows),
              "skipped": sum(r["status"] == "skipped" for r in rows),
              "interrupted": bool(interrupts.signum),
              "wall_s": round(time.perf_counter() - t_start, 3), "results": rows}
    _write_text(out_dir / "report.json", json.dumps(report, indent=2))
    buf = io.StringIO()
    cols = ["image", "status", "output", "error", "prepared", "score", "n_generated", "load_s", "image_encode_s",
            "prefill_s", "decode_s", "tokens_per_s", "wall_s"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    _write_text(out_dir / "report.csv", buf.getvalue())
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        stopped = f", interrupted: {report['cancelled']} cancelled, {report['skipped']} not started" \
            if interrupts.signum else ""
        print(f"{report['ok']} of {len(rows)} done, {report['failed']} failed{stopped}; report: "
              f"{out_dir / 'report.json'}", file=sys.stderr)
    interrupts.check()
    return 0 if report["failed"] == 0 else 1


def _score_rows(args: argparse.Namespace, wanted: list[tuple[dict[str, Any], Path, dict[int, str]]]) -> None:
    """The batch report's fidelity column; with ``--pick best`` the best variant replaces the first."""
    from .engine.html import extract_html

    for i, (row, path, variants) in enumerate(wanted, 1):
        if sys.stderr.isatty():
            sys.stderr.write(f"\rscoring {i}/{len(wanted)}\x1b[K")
        if len(variants) > 1:
            picked = _pick_variant(args, path, _Variants(variants))
            if picked is None:
                continue
            row.update(score=picked["score"], variant=picked["variant"], variant_scores=picked["scores"])
            if picked["variant"] != min(variants):
                _write_text(Path(row["output"]), picked["html"])
            continue
        try:
            from .engine.image import load_image

            page = extract_html(next(iter(variants.values())))
            row["score"] = round(cli_score.score_html(load_image(path), page, args.score_mode).fidelity.score, 6)
        except Web2CodeError as exc:
            row["score_error"] = str(exc)
    if wanted and sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")


@dataclass
class _Variants:
    variants: dict[int, str]


def cmd_ask(args: argparse.Namespace) -> int:
    params = _params(args, None)
    if not args.image.exists():
        raise UsageError(f"no such file: {args.image}")
    image, prepared = cli_prepare.prepared_input(args.image, args)
    if prepared is not None and prepared.changed and not args.json:
        print(f"prepared: {prepared.note}", file=sys.stderr)
    interrupts = _interrupts(args)
    with make_backend(args) as backend:
        with interrupts.cancelling(backend.cancel):
            interrupts.check()
            out = consume(backend.ask(image, args.question, params),
                          sys.stdout if args.stream and not args.json else None,
                          on_progress=None if args.json else _progress_line)
        interrupts.check()
        if out.error:
            print(f"error: {out.error}", file=sys.stderr)
            return out.exit_code
        if args.json:
            print(json.dumps({
                "text": out.text, "token_ids": out.token_ids,
                "prompt_token_ids": _prompt_ids(backend, args.image, args.question),
                "n_prompt_tokens": out.stats.n_prompt_tokens if out.stats else 0,
                "timings": _timings(out.stats),
            }, ensure_ascii=False))
        elif not args.stream:
            print(out.text)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .config import models_dir
    from .engine.pair import broken_manifests, discover, inspect_pair

    if args.models_command == "list":
        folder = models_dir(args.models_dir)
        pairs = discover(folder)
        if args.json:
            print(json.dumps([{"name": p.name, "quant": p.quant, "model": str(p.model), "mmproj": str(p.mmproj),
                               "pair_id": p.pair_id, "size_bytes": p.size_bytes} for p in pairs]))
            return 0
        if not pairs:
            print(f"no model pairs in {folder} (convert one with web2code-convert)", file=sys.stderr)
        for p in pairs:
            print(f"{p.name:32} {p.quant:8} {p.size_bytes / 2**30:7.2f} GiB  {p.model}")
        for m in broken_manifests(folder):
            print(f"broken: {m} (unreadable, or its files are missing)", file=sys.stderr)
        return 0
    pair = _pair_from_path(args.path, args.mmproj)
    fixed = []
    if args.fix:
        from .engine.chat_template import fix_chat_templates

        fixed = fix_chat_templates(pair)
        for path in fixed:
            print(f"fixed: {path.name} now carries the current chat template", file=sys.stderr)
    info = inspect_pair(pair)
    from .engine.backend import LocalBackend
    from .engine.events import GenerationParams
    from .engine.session import EngineOptions

    smoke = _smoke_image()
    with LocalBackend(pair, EngineOptions(n_gpu_layers=0)) as backend:
        out = consume(backend.generate(smoke, GenerationParams(temperature=0.0, max_tokens=1)))
    result = {"model": str(pair.model), "mmproj": str(pair.mmproj), "n_embd": info.n_embd,
              "n_vocab": info.n_vocab, "pair_id": info.pair_id, "warnings": list(info.warnings),
              "smoke_run": "ok" if not out.error else out.error, "fixed": [str(p) for p in fixed]}
    if args.json:
        print(json.dumps(result))
    else:
        for w in info.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"ok: {pair.model.name} + {pair.mmproj.name} (width {info.n_embd}, {info.n_vocab} tokens); "
              f"one-token run: {result['smoke_run']}")
    return 0 if not out.error else 1


def _smoke_image() -> Any:
    from PIL import Image

    return Image.new("RGB", (336, 336), (255, 255, 255))


def _pair_from_path(path: Path, mmproj: Path | None) -> Any:
    from .engine.pair import MANIFEST_NAME, ModelPair, discover

    if path.is_dir() or path.name == MANIFEST_NAME:
        folder = path if path.is_dir() else path.parent
        pairs = discover(folder)
        if not pairs:
            raise UsageError(f"no readable manifest.json with existing files in {folder}")
        return pairs[0]
    if mmproj is None:
        raise UsageError("pass --mmproj with a model GGUF, or a folder with a manifest.json")
    return ModelPair(model=path, mmproj=mmproj, name=path.stem)


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if cli_score.qt_started():
        # A command that captured or scored made an offscreen QApplication next to llama.cpp's threads;
        # tearing both down at interpreter exit can abort ("terminate called without an active
        # exception") after everything was written. The outputs are complete (atomic writes): end here.
        cli_score.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--self-test"]:
        from .selftest import main as self_test

        return self_test(argv[1:])
    if argv[:1] == ["--engine-worker"]:  # how a frozen bundle starts its engine process
        from .engine.worker import main as worker_main

        return worker_main()
    image = None
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        image = argv.pop(0)  # `web2code page.png` opens the image in the application
    parser = build_parser()
    args = parser.parse_args(argv)
    args.image = getattr(args, "image", None) if args.command else image
    args.interrupts = interrupts = Interrupts()
    try:
        if args.command in ("generate", "ask"):
            interrupts.install()
        if args.command in ("generate", "ask", "prepare", "score"):
            cli_address.resolve(args)  # web addresses become captured images
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "ask":
            return cmd_ask(args)
        if args.command == "models":
            return cmd_models(args)
        if args.command == "prepare":
            return cli_prepare.run(args)
        if args.command == "score":
            return cli_score.cmd_score(args)
        if args.command in cli_export.COMMANDS:
            return cli_export.run(args)
        from .ui.app import run_gui

        return run_gui(image=args.image)
    except Interrupted as exc:
        print("interrupted", file=sys.stderr)
        return _exit_now_if_loading(exc.exit_code)
    except Web2CodeError as exc:  # UsageError, RequestError, ModelError, ImageError, BackendError...
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return _exit_now_if_loading(130)
    finally:
        interrupts.uninstall()


def _exit_now_if_loading(code: int) -> int:
    """A model load cancelled by the interrupt may still run in native code on a helper thread;
    the interpreter's teardown must not race it, so the process ends here, outputs flushed."""
    if any(t.name == "web2code-load" and t.is_alive() for t in threading.enumerate()):
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
