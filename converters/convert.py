"""One conversion: checkpoint in, verified GGUF pair + manifest out, all or nothing.

Every input problem is found before OUTDIR is touched (config, layout, tensor
names, shapes and types, tokenizer, vision tower, output names, output folder,
free space); damaged tensor data (NaN, absurd values, checksum mismatches) is
found while reading, before anything is in place. Files are written under
temporary names (``.<file>.w2c-<pid>-<rand>.incomplete``) and renamed into
place only when all of them are complete, as one step that restores the old
files if it fails (see :mod:`.staging`); an exception or Ctrl-C removes the
temporaries, and what a killed run left is removed by the next run in the same
folder (never what a live run is writing).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from gguf import GGUFWriter

from . import hub
from .checkpoint import Checkpoint, read_json
from .clip import ClipConfig, Tower, feature_layer, find_tower_prefix, mmproj_plan, validate_tower
from .configvalues import config_int
from .crystal import CrystalConfig, CrystalLayout, text_plan
from .errors import ConvertError
from .gguf_out import write_ggufs
from .keys import DEFAULT_REPO, MANIFEST_FORMAT_VERSION, MANIFEST_NAME, PAIR_ID
from .quantize import BYTES_PER_WEIGHT, DIRECT_TYPES, check_threads, check_types, quantize
from .staging import TEMP_OVERHEAD, Staging, remove_stale
from .tokenizer import find_tokenizer, load_vocab
from .verify import VerifyReport, verify_pair


def converter_version() -> str:
    try:
        return importlib_metadata.version("web2code-desktop")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class ConvertOptions:
    outdir: Path
    source: str = DEFAULT_REPO
    quants: list[str] = field(default_factory=lambda: ["Q4_K_M"])
    vision_tower: str | None = None
    name: str | None = None
    force: bool = False
    verify: bool = False
    threads: int = 0
    log: Callable[[str], None] = lambda message: None
    #: Polled between the steps: True stops the conversion as Ctrl-C does (KeyboardInterrupt).
    should_stop: Callable[[], bool] = lambda: False
    #: SOURCE's commit on the Hub (a hash, a branch or a tag; None: main); an error for a local folder.
    revision: str | None = None
    #: Download and check events (see :data:`.hub.PROGRESS_PREFIX`); None: huggingface-hub's own bars.
    progress: hub.ProgressSink | None = None


@dataclass(frozen=True)
class OutputFile:
    quant: str
    file: str
    sha256: str
    size: int


@dataclass
class ConvertResult:
    outdir: Path
    name: str
    pair_id: str
    models: list[OutputFile]
    mmproj: OutputFile
    manifest: Path
    inferred: list[str]
    timings: dict[str, float]
    peak_rss_bytes: int | None
    verify: list[VerifyReport] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "outdir": str(self.outdir),
            "name": self.name,
            "pair_id": self.pair_id,
            "manifest": str(self.manifest),
            "models": [vars(m) for m in self.models],
            "mmproj": vars(self.mmproj),
            "inferred": self.inferred,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "peak_rss_bytes": self.peak_rss_bytes,
            "verify": [r.as_dict() for r in self.verify],
        }


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- inputs ---------------------------------------------------------------------------------------
def _read_tower_config(folder: Path) -> ClipConfig:
    cfg = read_json(folder / "config.json", "vision tower config.json")
    pre_path = folder / "preprocessor_config.json"
    pre = read_json(pre_path, "vision tower preprocessor config") if pre_path.exists() else None
    return ClipConfig.from_tower_config(cfg, pre)


def _open_tower(ck: Checkpoint, layout: CrystalLayout, vision_tower: str | None,
                resolve: Callable[..., Path] = hub.resolve) -> Tower:
    if layout.tower is not None:
        # LLaVA saved the tower inside; its configuration is not there.
        if vision_tower:
            config = _read_tower_config(resolve(vision_tower, what="vision tower"))
        else:
            config = ClipConfig.infer(ck, layout.tower)
        validate_tower(ck, layout.tower, config, strict=True)
        return Tower(ck, layout.tower, config, feature_layer(ck.config, config))
    ref = vision_tower or ck.config.get("mm_vision_tower")
    if not ref:
        raise ConvertError("vision tower not found: the checkpoint has none and config.json names none "
                           "(pass --vision-tower FOLDER_OR_REPO)")
    try:
        folder = resolve(str(ref), what="vision tower")
    except ConvertError as e:
        raise ConvertError(f"vision tower not found: {e}") from None
    tck = Checkpoint(folder, what="vision tower")
    prefix = find_tower_prefix(tck)
    if prefix is None:
        raise ConvertError(f"vision tower not found: {folder} holds no CLIP vision weights")
    config = _read_tower_config(folder)
    validate_tower(tck, prefix, config, strict=False)
    return Tower(tck, prefix, config, feature_layer(ck.config, config))


def _license(folder: Path) -> str | None:
    """The ``license:`` of a model card's front matter, when the checkpoint has one."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    front = re.match(r"^---\n(.*?)\n---", text, re.S)
    match = re.search(r"^license:\s*(\S+)", front.group(1), re.M) if front else None
    return match.group(1).strip("'\"") if match else None


def _default_name(source: str, folder: Path) -> str:
    return source.rsplit("/", 1)[-1] if hub.is_repo_id(source) and not Path(source).exists() else folder.name


# -- output folder --------------------------------------------------------------------------------
def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    for parent in [folder, *folder.parents]:
        try:
            if parent.is_dir():
                return int(os.pathconf(parent, "PC_NAME_MAX"))
        except (OSError, ValueError, AttributeError):  # AttributeError: no pathconf (Windows)
            break
    return 255


def _check_name(name: str, explicit: bool, outdir: Path, files: list[str]) -> None:
    """A plain file-name stem whose output and temporary names all fit the file system."""
    what = "--name" if explicit else "the output name (from SOURCE; pass --name)"
    if not name or "/" in name or "\\" in name or name.startswith(".") or any(ord(c) < 32 or ord(c) == 127
                                                                               for c in name):
        raise ConvertError(f"invalid {what} {name!r}: use a plain file-name stem")
    limit = _name_max(outdir)
    longest = max(len(os.fsencode(f)) for f in files) + TEMP_OVERHEAD
    if longest > limit:
        room = len(os.fsencode(name)) - (longest - limit)
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise ConvertError(f"{what} {shown!r} is too long: the output files' names would exceed the file "
                           f"system's limit of {limit} bytes (use at most {max(room, 0)} bytes)")


def _check_outdir(outdir: Path, files: list[str], force: bool) -> None:
    """OUTDIR is a folder (or can be made); its outputs are absent, or (``--force``) plain files to replace."""
    try:
        if outdir.exists() and not outdir.is_dir():
            raise ConvertError(f"OUTDIR {outdir} exists and is not a folder")
        if not outdir.is_dir():
            return
        targets = [*files, MANIFEST_NAME]
        existing = [f for f in targets if (outdir / f).exists() or (outdir / f).is_symlink()]
        if existing and not force:
            raise ConvertError(
                f"OUTDIR {outdir} already holds {', '.join(existing)} (use --force to replace)")
        # --force replaces files only: find a folder in the way now, not after half the pair was replaced
        blocked = [f for f in existing if not (outdir / f).is_file()]
        if blocked:
            raise ConvertError(f"cannot replace {', '.join(blocked)} in OUTDIR {outdir}: not a file "
                               "(nothing was replaced)")
    except OSError as e:
        raise ConvertError(f"cannot use OUTDIR {outdir}: {e.strerror or e}") from None


def _make_outdir(outdir: Path) -> bool:
    """Create OUTDIR if needed; True if it was created."""
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConvertError(f"OUTDIR {outdir} is not writable: {e.strerror or e}") from None
    return created


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


# -- the conversion -------------------------------------------------------------------------------
def convert(opts: ConvertOptions) -> ConvertResult:
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    log = opts.log
    quants = check_types(opts.quants)
    check_threads(opts.threads)

    def step() -> None:
        if opts.should_stop():
            raise KeyboardInterrupt

    fetched = hub.fetch(opts.source, revision=opts.revision, progress=opts.progress, log=log,
                        should_stop=opts.should_stop)
    folder = fetched.folder
    ck = Checkpoint(folder)
    cfg = CrystalConfig.from_config(ck.config)
    layout = CrystalLayout.detect(ck)
    tower = _open_tower(ck, layout, opts.vision_tower, functools.partial(
        hub.resolve, progress=opts.progress, log=log, should_stop=opts.should_stop))
    mm_hidden = config_int(ck.config, "mm_hidden_size", 1, 1 << 16, default=tower.config.hidden_size)
    if mm_hidden != tower.config.hidden_size:
        raise ConvertError(f"mm_hidden_size {mm_hidden} does not match the vision tower's hidden size "
                           f"{tower.config.hidden_size}")
    layout.validate(ck, cfg, mm_hidden)
    vocab = load_vocab(find_tokenizer(folder), cfg.vocab_size)
    name = opts.name or _default_name(opts.source, folder)
    inferred = [f"vision tower {k}" for k in tower.config.inferred]
    timings["inspect"] = time.monotonic() - t_start

    model_files = {q: f"{name}-{q}.gguf" for q in quants}
    mmproj_file = f"mmproj-{name}-f16.gguf"
    outdir = opts.outdir
    _check_name(name, bool(opts.name), outdir, [*model_files.values(), mmproj_file, MANIFEST_NAME])
    _check_outdir(outdir, [*model_files.values(), mmproj_file], opts.force)
    step()

    n_text = cfg.vocab_size * cfg.n_embd * 2 + cfg.n_layer * (4 * cfg.n_embd**2 + 3 * cfg.n_embd * cfg.n_ff)
    quantized = [q for q in quants if q not in DIRECT_TYPES]
    base_type = "F32" if "F32" in quants else "F16"
    temp_base = bool(quantized) and base_type not in quants
    need = n_text * (sum(BYTES_PER_WEIGHT[q] for q in quants) + (2.0 if temp_base else 0.0))
    tc = tower.config
    need += 2 * tc.hidden_size * (4 * tc.hidden_size + 2 * tc.intermediate_size) * tower.layer + 64 * 2**20

    created = _make_outdir(outdir)
    staging = Staging(outdir)
    try:
        try:
            staging.lock()
        except OSError as e:
            raise ConvertError(f"OUTDIR {outdir} is not writable: {e.strerror or e}") from None
        # before the free-space check: what killed runs left must not make this run fail
        stale = remove_stale(outdir, staging.token)
        if stale:
            log(f"removed {len(stale)} temporary files left in {outdir} by an interrupted run")
        free = free_bytes(outdir)
        if free < need:
            raise ConvertError(f"not enough disk space in OUTDIR {outdir}: need about {_gib(need)}, "
                               f"{_gib(free)} free")
        # notes only once the input is known good: a bad input gets exactly one line
        for item in inferred:
            log(f"note: {item} was inferred from the weights (CLIP convention)")
        pair_id = uuid.uuid4().hex
        source_repo = opts.source if hub.is_repo_id(opts.source) and not Path(opts.source).exists() else None
        licence = _license(folder)

        def provenance(w: GGUFWriter) -> None:
            w.add_name(name)
            w.add_description(f"{name} converted by web2code-convert {converter_version()}")
            if source_repo:
                w.add_source_repo_url(f"https://huggingface.co/{source_repo}")
            if licence:
                w.add_license(licence)

        def pair(w: GGUFWriter) -> None:
            w.add_string(PAIR_ID, pair_id)

        # 1. the text model: every direct type (and the quantizer's base) in one pass
        t0 = time.monotonic()
        paths = {q: staging.temp(f) for q, f in model_files.items()}
        base = paths.get(base_type) or staging.scratch_file(f"{name}-{base_type}.gguf")
        targets = [(paths[q], q) for q in quants if q in DIRECT_TYPES]
        if temp_base:
            targets.append((base, base_type))
        plan = text_plan(ck, cfg, layout, vocab, provenance)

        def text_progress(i: int, n: int, tensor: str) -> None:
            if i % max(1, n // 10) == 0 or i == n:
                log(f"text model: {i}/{n} tensors")

        write_ggufs(plan, targets, extra=pair, progress=text_progress)
        ck.release()
        timings["text"] = time.monotonic() - t0
        step()

        # 2. quantized types, by llama.cpp
        for q in quantized:
            t0 = time.monotonic()
            log(f"quantizing to {q} (llama.cpp)")
            quantize(base, paths[q], q, work_dir=staging.work_dir(), n_threads=opts.threads)
            timings[f"quantize_{q}"] = time.monotonic() - t0
            step()

        # 3. the mmproj
        t0 = time.monotonic()
        log("vision projector (mmproj)")
        mm_path = staging.temp(mmproj_file)
        mplan = mmproj_plan(tower, ck, text=cfg, layout=layout, metadata=provenance)
        write_ggufs(mplan, [(mm_path, "F16")], extra=pair)
        tower.src.release()
        ck.release()
        timings["mmproj"] = time.monotonic() - t0
        step()

        # 4. verification against the reference, before anything is in place
        reports: list[VerifyReport] = []
        if opts.verify:
            t0 = time.monotonic()
            log(f"verifying {base_type} against the float64 reference")
            reports.append(verify_pair(ck, tower, model_path=base, mmproj_path=mm_path, file_type=base_type,
                                       cfg=cfg, layout=layout, threads=opts.threads))
            ck.release()
            tower.src.release()
            timings["verify"] = time.monotonic() - t0
            step()

        # 5. checksums, manifest, rename into place
        t0 = time.monotonic()
        models = [OutputFile(q, f, sha256_file(paths[q]), paths[q].stat().st_size)
                  for q, f in model_files.items()]
        mmproj = OutputFile("F16", mmproj_file, sha256_file(mm_path), mm_path.stat().st_size)
        manifest = {
            "format_version": MANIFEST_FORMAT_VERSION,
            "name": name,
            "pair_id": pair_id,
            "mmproj": {"file": mmproj.file, "sha256": mmproj.sha256},
            "models": [{"quant": m.quant, "file": m.file, "sha256": m.sha256} for m in models],
            "source": source_repo or str(folder.resolve()),
            "converter_version": converter_version(),
            # the Hub commit the checked download came from (trust on first use pins later downloads to it)
            **({"source_revision": fetched.revision} if fetched.revision else {}),
        }
        manifest_tmp = staging.temp(MANIFEST_NAME)
        manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        step()
        # renamed last (dicts keep order): a folder with a manifest holds a complete pair
        staging.commit(force=opts.force)
        timings["finish"] = time.monotonic() - t0
    except OSError as e:
        # ENOSPC and friends while writing: a user-fixable condition, not a bug
        what = "the output file names are too long" if e.errno == errno.ENAMETOOLONG else e.strerror or e
        raise ConvertError(f"writing to {outdir} failed: {what}") from None
    finally:
        staging.cleanup()
        ck.release()
        if created:
            with contextlib.suppress(OSError):
                outdir.rmdir()  # only if empty: nothing of ours is left in a folder we made
    timings["total"] = time.monotonic() - t_start
    return ConvertResult(outdir, name, pair_id, models, mmproj, outdir / MANIFEST_NAME, inferred, timings,
                         peak_rss_bytes(), reports)
