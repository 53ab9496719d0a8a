"""One command for the whole benchmark: ``python -m bench.run --size 7b``.

Phases (``--only`` picks some, comma-separated):

* ``convert``   random checkpoint (cached) -> ``web2code-convert`` wall time and peak RSS vs ``cp``
* ``decode``    ``web2code generate --json`` decode tokens/s vs ``llama-bench`` tg, same threads
* ``ttft``      image encode + prefill vs ``llama-mtmd-cli`` on the same image and prompt
* ``reuse``     regenerate for the same image (encoded image + KV prefix reused) vs cold
* ``variants``  three variants together vs one
* ``batches``   what one llama_decode of n rows costs vs one row (``llama-bench`` pp n): why the CPU pads to 4
* ``memory``    application + worker resident memory with the pair loaded (+ where it goes)
* ``bandwidth`` memory read bandwidth -> decode ceiling
* ``gui``       window shown after launch; the preview and event loop while streaming (gui_stream.py)
* ``replay``    speculative decoding vs plain decode on real pages forced as the output (replay.py)

``decode`` and ``ttft`` share their rounds: each round runs our engine once and
the anchors once, side by side, and every ratio is the median of the rounds'
ratios. Results: ``bench/results/<date>-<machine>[-<size>].{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import anchors, bandwidth, gui_hooks
from .checkpoint import input_bytes, is_complete
from .procs import REPO, machine_info, median, run_measured, summary, venv_tool
from .sizes import SIZES, Size

PHASES = ("convert", "decode", "ttft", "reuse", "variants", "batches", "memory", "bandwidth", "gui", "replay")
GiB = 2**30
QUANT = "Q4_K_M"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Ctx:
    size: Size
    threads: int
    rounds: int
    cache: Path
    tools_dir: Path
    build_tools: bool
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.cache / "checkpoint"

    @property
    def pair_dir(self) -> Path:
        return self.cache / "pair"

    @property
    def name(self) -> str:
        return f"web2code-bench-{self.size.name}"

    def pair_files(self) -> tuple[Path, Path]:
        model = self.pair_dir / f"{self.name}-{QUANT}.gguf"
        mmproj = self.pair_dir / f"mmproj-{self.name}-f16.gguf"
        if not (model.is_file() and mmproj.is_file() and (self.pair_dir / "manifest.json").is_file()):
            raise FileNotFoundError(f"no converted pair in {self.pair_dir}: run the convert phase first")
        return model, mmproj

    def image_size(self) -> int:
        return int(self.size.config["vision_config"]["image_size"])

    def page(self, seed: int) -> Path:
        from .images import write_page

        path = self.cache / "images" / f"page-{seed}-{self.image_size()}.png"
        if not path.exists():
            write_page(path, seed, self.image_size())
        return path

    def tool(self, name: str) -> Path:
        try:
            return anchors.find_tool(name, self.tools_dir)
        except anchors.ToolMissing:
            if not self.build_tools:
                raise
            anchors.build_tools(self.tools_dir)
            return anchors.find_tool(name, self.tools_dir)


# ------------------------------------------------------------------------------------ convert
def ensure_checkpoint(ctx: Ctx) -> dict[str, Any]:
    ck = ctx.checkpoint
    if is_complete(ck, ctx.size):
        return {"cached": True, "bytes": input_bytes(ck), "path": str(ck)}
    log(f"generating the random {ctx.size.name} checkpoint into {ck} (once; the 7B is ~14.5 GB)")
    ctx.cache.mkdir(parents=True, exist_ok=True)
    m = run_measured([sys.executable, "-m", "bench.checkpoint", "--size", ctx.size.name, "--dest", str(ck)],
                     cwd=REPO).check("checkpoint generation")
    data = json.loads(m.stdout.strip().splitlines()[-1])
    return {"cached": False, "bytes": data["bytes"], "seconds": round(m.wall_s, 1),
            "peak_rss_bytes": m.peak_rss_bytes, "path": str(ck)}


def ensure_pair(ctx: Ctx) -> None:
    """For phases run without ``convert``: convert once (unmeasured) if no pair is cached."""
    try:
        ctx.pair_files()
    except FileNotFoundError:
        ctx.results.setdefault("checkpoint", ensure_checkpoint(ctx))
        log("no converted pair cached: converting once (not timed; run --only convert to time it)")
        run_measured([venv_tool("web2code-convert"), str(ctx.checkpoint), "-o", str(ctx.pair_dir), "--quant",
                      QUANT, "--name", ctx.name, "--force"]).check("web2code-convert")


def _dir_scratch_sizes(folder: Path) -> Callable[[int], dict[str, Any]]:
    def sample(_pid: int) -> dict[str, Any]:
        sizes: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for p in folder.iterdir():
                with contextlib.suppress(OSError):
                    sizes[p.name] = p.stat().st_size
        return {"files": sizes}
    return sample


def _timed_cp(sources: list[Path], dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    m = run_measured(["cp", "-r", *[str(s) for s in sources], str(dest)]).check("cp")
    return m.wall_s


def phase_convert(ctx: Ctx) -> dict[str, Any]:
    ck_info = ensure_checkpoint(ctx)
    ctx.results["checkpoint"] = ck_info
    if ctx.pair_dir.exists():
        shutil.rmtree(ctx.pair_dir)
    log(f"converting with web2code-convert ({QUANT}); timing wall clock and peak RSS")
    cmd = [venv_tool("web2code-convert"), str(ctx.checkpoint), "-o", str(ctx.pair_dir), "--quant", QUANT,
           "--name", ctx.name, "--json"]
    m = run_measured(cmd, sample_every=2.0, sample=_dir_scratch_sizes(ctx.pair_dir), echo=False)
    m.check("web2code-convert")
    summary_json = json.loads(m.stdout[m.stdout.index("{"):])
    # the largest size each file reached (the F16 the quantizer reads is a temporary)
    peak_sizes: dict[str, int] = {}
    for s in m.samples:
        for name, size in s.get("files", {}).items():
            peak_sizes[name] = max(size, peak_sizes.get(name, 0))
    f16_scratch = max((v for k, v in peak_sizes.items() if "-F16.gguf" in k and k.endswith(".incomplete")),
                      default=None)
    model_size = sum(int(x["size"]) for x in summary_json["models"])
    mmproj_size = int(summary_json["mmproj"]["size"])
    rss_timeline = [{"t": s["t"], "rss": s["rss"]} for s in m.samples[:: max(1, len(m.samples) // 200)]]

    log("copying the same input and output bytes with cp, for comparison")
    model, mmproj = ctx.pair_files()
    cp_runs: list[dict[str, float]] = []
    tmp = ctx.cache / "cp-baseline"
    for _ in range(2):
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            t_in = _timed_cp([ctx.checkpoint], tmp / "in")
            t_out = _timed_cp([model, mmproj], tmp / "out")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        cp_runs.append({"input_s": t_in, "output_s": t_out, "total_s": t_in + t_out})
    cp_total = median([r["total_s"] for r in cp_runs])
    out = {
        "cmd": " ".join(cmd),
        "wall_s": round(m.wall_s, 2),
        "peak_rss_bytes": m.peak_rss_bytes,
        "peak_rss_source": "os.wait4 ru_maxrss of the web2code-convert process",
        "converter_reported_peak_rss_bytes": summary_json.get("peak_rss_bytes"),
        "converter_timings_s": summary_json.get("timings_s"),
        "user_s": round(m.user_s, 1), "sys_s": round(m.sys_s, 1),
        "input_bytes": ck_info["bytes"],
        "output_bytes": model_size + mmproj_size,
        "file_sizes": {QUANT: model_size, "mmproj-F16": mmproj_size,
                       **({"F16 (the converter's temporary, same content as an F16 output)": f16_scratch}
                          if f16_scratch else {})},
        "cp_runs": cp_runs,
        "cp_total_s": round(cp_total, 2),
        "ratio_vs_cp": round(m.wall_s / cp_total, 3),
        "rss_timeline": rss_timeline,
    }
    log(f"convert: {m.wall_s:.0f} s, peak RSS {m.peak_rss_bytes / GiB:.2f} GiB, cp {cp_total:.0f} s "
        f"-> {out['ratio_vs_cp']:.2f}x")
    return out


# ------------------------------------------------------------------------- decode + ttft rounds
def engine_cli_run(ctx: Ctx, model: Path, mmproj: Path, image: Path, *, n_tokens: int, seed: int) -> dict[str, Any]:
    cmd = [venv_tool("web2code"), "generate", str(image), "--model", str(model), "--mmproj", str(mmproj),
           "--threads", str(ctx.threads), "--gpu-layers", "0", "--json", "--max-tokens", str(n_tokens),
           "--seed", str(seed), "--no-speculative"]  # the plain decode loop, like llama-bench tg
    m = run_measured(cmd).check("web2code generate")
    obj = json.loads(m.stdout.strip().splitlines()[-1])
    t = obj["timings"]
    n_gen = len(obj.get("token_ids") or [])
    # n tokens are sampled with n-1 evaluations (the first comes from the prompt's logits)
    rate = (n_gen - 1) / t["decode_s"] if n_gen > 1 and t["decode_s"] > 0 else 0.0
    return {"load_s": t["load_s"], "image_encode_s": t["image_encode_s"], "prefill_s": t["prefill_s"],
            "decode_s": t["decode_s"], "reported_tokens_per_s": t["tokens_per_s"], "tokens_per_s": rate,
            "n_generated": n_gen, "n_prompt_tokens": obj.get("n_prompt_tokens"),
            "finish_reason": obj.get("finish_reason"), "ttft_s": t["image_encode_s"] + t["prefill_s"],
            "wall_s": m.wall_s, "peak_rss_bytes": m.peak_rss_bytes, "cmd": " ".join(cmd)}


def phase_rounds(ctx: Ctx, do_decode: bool, do_ttft: bool, append: bool = False) -> dict[str, Any]:
    from web2code.app.engine.prompt import DEFAULT_INSTRUCTION

    model, mmproj = ctx.pair_files()
    image = ctx.page(7)
    n_tok = ctx.size.decode_tokens
    bench_exe = mtmd_exe = None
    try:
        bench_exe = ctx.tool("llama-bench") if do_decode else None
        mtmd_exe = ctx.tool("llama-mtmd-cli") if do_ttft else None
    except anchors.ToolMissing as exc:
        ctx.notes.append(f"anchor not measured: {exc}")
        log(f"{exc}: measuring our engine alone")
    rounds: list[dict[str, Any]] = []
    depth = 0
    if bench_exe is not None:
        # warm-up, not timed: brings the model file into the page cache (the first program to read
        # a freshly converted 4 GB file would otherwise pay for it)
        log("warm-up: llama-bench tg8 (not timed)")
        with contextlib.suppress(RuntimeError, ValueError):
            anchors.llama_bench(bench_exe, model, threads=ctx.threads, n_gen=8, depths=[0], reps=1)
    for r in range(ctx.rounds):
        row: dict[str, Any] = {"loadavg_1min": round(os.getloadavg()[0], 2)}
        log(f"round {r + 1}/{ctx.rounds}: web2code generate ({n_tok} tokens)")
        eng = engine_cli_run(ctx, model, mmproj, image, n_tokens=n_tok, seed=42 + r)
        if eng["n_generated"] < n_tok:
            ctx.notes.append(f"round {r + 1}: the engine stopped after {eng['n_generated']} tokens "
                             f"({eng['finish_reason']}); its rate counts those")
        row["engine"] = eng
        depth = int(eng["n_prompt_tokens"] or 0)
        log(f"  engine: load {eng['load_s']:.1f}s encode {eng['image_encode_s']:.2f}s prefill "
            f"{eng['prefill_s']:.2f}s decode {eng['tokens_per_s']:.2f} tok/s")
        if mtmd_exe is not None:
            log("  llama-mtmd-cli (same image and instruction)")
            mt = anchors.mtmd_cli(mtmd_exe, model, mmproj, image, DEFAULT_INSTRUCTION, threads=ctx.threads)
            row["mtmd_cli"] = mt
            row["ttft_ratio"] = eng["ttft_s"] / mt["ttft_s"]
            log(f"  mtmd-cli: text {mt['text_before_image_s']:.2f}s + encode {mt['image_encode_s']:.2f}s + image "
                f"{mt['image_decode_s']:.2f}s + text {mt['text_after_image_s']:.2f}s -> ttft ratio "
                f"{row['ttft_ratio']:.3f}")
        if bench_exe is not None:
            log(f"  llama-bench tg{n_tok} at depth 0 and {depth}")
            lb = anchors.llama_bench(bench_exe, model, threads=ctx.threads, n_gen=n_tok, depths=[0, depth], reps=1)
            row["llama_bench"] = lb
            tg = {t["n_depth"]: t["median_ts"] for t in lb["tests"]}
            row["decode_ratio_depth0"] = eng["tokens_per_s"] / tg[0]
            row["decode_ratio_same_depth"] = eng["tokens_per_s"] / tg[depth]
            log(f"  llama-bench: {tg[0]:.2f} tok/s (depth 0), {tg[depth]:.2f} (depth {depth}) -> ratios "
                f"{row['decode_ratio_depth0']:.3f} / {row['decode_ratio_same_depth']:.3f}")
        rounds.append(row)

    if append:  # keep the rounds of earlier runs of the day (same settings) and add these
        prior = ctx.results.get("rounds", {})
        if prior.get("tokens") == n_tok and prior.get("threads") == ctx.threads:
            rounds = [*prior.get("rounds", []), *rounds]
    return summarize_rounds(ctx, rounds, n_tok=n_tok, image=image, depth=depth)


def summarize_rounds(ctx: Ctx, rounds: list[dict[str, Any]], *, n_tok: int, image: Path,
                     depth: int) -> dict[str, Any]:
    def col(path: Callable[[dict[str, Any]], float]) -> list[float]:
        return [path(r) for r in rounds if _has(path, r)]

    bench_exe = any("llama_bench" in r for r in rounds) or None
    mtmd_exe = any("mtmd_cli" in r for r in rounds) or None
    out: dict[str, Any] = {"threads": ctx.threads, "tokens": n_tok, "image": str(image), "prompt_depth": depth,
                           "rounds": rounds, "loadavg_1min": [r.get("loadavg_1min") for r in rounds]}
    out["engine"] = {k: summary(col(lambda r, k=k: r["engine"][k]))
                     for k in ("load_s", "image_encode_s", "prefill_s", "decode_s", "tokens_per_s",
                               "reported_tokens_per_s", "ttft_s", "wall_s", "peak_rss_bytes")}
    if bench_exe is not None:
        out["llama_bench_tg_depth0"] = summary(
            col(lambda r: next(t["median_ts"] for t in r["llama_bench"]["tests"] if t["n_depth"] == 0)))
        out["llama_bench_tg_same_depth"] = summary(
            col(lambda r: next(t["median_ts"] for t in r["llama_bench"]["tests"] if t["n_depth"] != 0)))
        out["decode_ratio_depth0"] = summary(col(lambda r: r["decode_ratio_depth0"]))
        out["decode_ratio_same_depth"] = summary(col(lambda r: r["decode_ratio_same_depth"]))
        first = next(r for r in rounds if "llama_bench" in r)
        out["llama_bench_info"] = {k: first["llama_bench"]["tests"][0].get(k)
                                   for k in ("build_commit", "cpu_info", "backends", "model_size", "model_n_params")}
    if mtmd_exe is not None:
        out["mtmd_cli"] = {k: summary(col(lambda r, k=k: r["mtmd_cli"][k]))
                           for k in ("load_s", "image_encode_s", "image_decode_s", "prompt_eval_s", "ttft_s",
                                     "text_before_image_s", "text_after_image_s", "wall_s")}
        out["ttft_ratio"] = summary(col(lambda r: r["ttft_ratio"]))
    return out


def _has(path: Callable[[dict[str, Any]], float], row: dict[str, Any]) -> bool:
    try:
        path(row)
        return True
    except (KeyError, StopIteration, TypeError):
        return False


# ------------------------------------------------------------------------------ reuse/variants
def phase_inproc(ctx: Ctx, do_reuse: bool, do_variants: bool) -> dict[str, Any]:
    model, mmproj = ctx.pair_files()
    images = [ctx.page(100 + i) for i in range(ctx.rounds + 1)]
    skip = [p for p, on in (("reuse", do_reuse), ("variants", do_variants)) if not on]
    cmd = [sys.executable, "-m", "bench.inproc", "--model", str(model), "--mmproj", str(mmproj), "--threads",
           str(ctx.threads), "--images", *map(str, images), "--variant-tokens", str(ctx.size.variant_tokens),
           "--runs", str(ctx.rounds), "--skip", ",".join(skip)]
    log(f"engine in-process (LocalBackend): {'reuse ' if do_reuse else ''}{'variants' if do_variants else ''}")
    m = run_measured(cmd, cwd=REPO, echo=True).check("bench.inproc")
    raw = json.loads(m.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {"raw": raw, "load_s": raw.get("load_s")}
    if do_reuse and raw["cold"]:
        cold = [c["ttft_s"] for c in raw["cold"]]
        warm = [c["ttft_s"] for c in raw["reuse"]]
        out["reuse"] = {
            "cold_ttft_s": summary(cold), "reuse_ttft_s": summary(warm),
            "ratio": summary([w / c for w, c in zip(warm, cold, strict=True)]),
            "cold_positions_evaluated": [c["n_prompt_tokens"] - c["reused_prefix_tokens"] for c in raw["cold"]],
            "reuse_positions_evaluated": [c["n_prompt_tokens"] - c["reused_prefix_tokens"] for c in raw["reuse"]],
            "reuse_image_cached": [c["reused_image"] for c in raw["reuse"]],
        }
    if do_variants and "variants" in raw:
        v = raw["variants"]
        one, three = v["one"], v["three"]
        out["variants"] = {
            "tokens_per_variant": v["tokens_per_variant"],
            "one_wall_s": summary([x["wall_s"] for x in one]),
            "three_wall_s": summary([x["wall_s"] for x in three]),
            "one_decode_s": summary([x["decode_s"] for x in one]),
            "three_decode_s": summary([x["decode_s"] for x in three]),
            "ratio_wall": summary([t["wall_s"] / o["wall_s"] for o, t in zip(one, three, strict=True)]),
            "ratio_decode": summary([t["decode_s"] / o["decode_s"] for o, t in zip(one, three, strict=True)]),
            "n_generated_three": [x["n_generated"] for x in three],
            "first_multi_variant_request": v["first_multi"],
        }
    return out


# ------------------------------------------------------------------------------------- batches
BATCH_ROWS = (1, 2, 3, 4, 5, 8)


def phase_batches(ctx: Ctx) -> dict[str, Any]:
    """Seconds per llama_decode of n rows (one ubatch), relative to one row: the engine pads
    generation batches of 2-3 rows to 4 and drafts 3 tokens on the CPU because of this curve."""
    model, _ = ctx.pair_files()
    exe = ctx.tool("llama-bench")
    res = anchors.llama_bench(exe, model, threads=ctx.threads, n_gen=0, depths=[0], reps=max(ctx.rounds, 3),
                              n_prompt=",".join(str(n) for n in BATCH_ROWS), extra=["-lm", "none"])
    rows = []
    for t in res["tests"]:
        n = int(t["n_prompt"])
        rows.append({"rows": n, "tokens_per_s": t["median_ts"], "s_per_batch": n / t["median_ts"]})
    one = next(r["s_per_batch"] for r in rows if r["rows"] == 1)
    for r in rows:
        r["x_one_row"] = round(r["s_per_batch"] / one, 3)
    log("batch cost: " + ", ".join(f"{r['rows']} rows {r['x_one_row']}x" for r in rows))
    return {"cmd": res["cmd"], "rows": rows}


# -------------------------------------------------------------------------------------- memory
def phase_memory(ctx: Ctx, diagnostics: bool) -> dict[str, Any]:
    model, mmproj = ctx.pair_files()
    image = ctx.page(7)
    files = model.stat().st_size + mmproj.stat().st_size
    log("memory: WorkerBackend with the pair loaded, one token")
    base = [sys.executable, "-m", "bench.memprobe", "--model", str(model), "--mmproj", str(mmproj),
            "--image", str(image), "--threads", str(ctx.threads)]
    m = run_measured(base, cwd=REPO).check("bench.memprobe")
    probe = json.loads(m.stdout.strip().splitlines()[-1])
    w, p = probe["worker"], probe["parent"]
    total = w.get("VmRSS", 0) + p.get("VmRSS", 0)
    total_hwm = w.get("VmHWM", 0) + p.get("VmHWM", 0)
    out: dict[str, Any] = {
        "files_bytes": files, "budget_bytes": files + int(1.5 * GiB), "worker": w, "parent": p,
        "total_rss_bytes": total, "total_hwm_bytes": total_hwm,
        "over_files_bytes": total - files, "ratio_to_budget": total / (files + 1.5 * GiB),
    }
    if diagnostics:
        diag = []
        for label, flags in (("mmap + repack (default)", []), ("no mmap + repack", ["--no-mmap"]),
                             ("mmap, no repack", ["--no-repack"])):
            log(f"memory diagnostic: llama.cpp load with {label}")
            d = run_measured([*base, "--raw", *flags], cwd=REPO)
            if d.rc != 0:
                diag.append({"label": label, "error": d.stderr.strip()[-400:]})
                continue
            r = json.loads(d.stdout.strip().splitlines()[-1])
            diag.append({"label": label, "load_s": r["load_s"], "rss_after_load": r["after_load"].get("VmRSS"),
                         "rss_after_decode": r["after_decode"].get("VmRSS"),
                         "anon_after_decode": r["after_decode"].get("RssAnon"),
                         "file_after_decode": r["after_decode"].get("RssFile"),
                         "peak_rss_bytes": d.peak_rss_bytes})
        out["diagnostics"] = diag
        with contextlib.suppress(anchors.ToolMissing, RuntimeError, ValueError, KeyError):
            exe = ctx.tool("llama-bench")
            log("memory diagnostic: llama-bench tg32 with weight repacking off vs on")
            lb = anchors.llama_bench(exe, model, threads=ctx.threads, n_gen=32, depths=[0], reps=2,
                                     extra=["--repack", "0,1"])
            out["repack_decode_tg32"] = [{"repack": i == 1, "tokens_per_s": t["median_ts"]}
                                         for i, t in enumerate(lb["tests"])]
    log(f"memory: worker {w.get('VmRSS', 0) / GiB:.2f} GiB + app {p.get('VmRSS', 0) / GiB:.2f} GiB; "
        f"files {files / GiB:.2f} GiB")
    return out


# ------------------------------------------------------------------------------------ bandwidth
def phase_bandwidth(ctx: Ctx) -> dict[str, Any]:
    log("memory bandwidth (numpy)")
    bw = bandwidth.read_bandwidth(threads=ctx.threads)
    out: dict[str, Any] = {"bandwidth": bw}
    with contextlib.suppress(FileNotFoundError):
        model, _ = ctx.pair_files()
        wb = bandwidth.weight_bytes_per_token(model)
        out["weights"] = wb
        depth = int(ctx.results.get("rounds", {}).get("prompt_depth") or 625)
        kv = bandwidth.kv_bytes_per_token(wb["n_layer"], wb["n_embd"], depth)
        out["kv_bytes_per_token_at_depth"] = {"depth": depth, "bytes": kv}
        out["ceiling_tokens_per_s_depth0"] = bandwidth.ceiling(bw["bytes_per_s"], wb["weights_read_per_token"])
        out["ceiling_tokens_per_s_at_depth"] = bandwidth.ceiling(bw["bytes_per_s"],
                                                                 wb["weights_read_per_token"] + kv)
    return out


# ------------------------------------------------------------------------------------------ main
def phase_replay(ctx: Ctx, pages: int = 3, tokens: int = 300, only: str = "", ocr: bool = False) -> dict[str, Any]:
    """Speculative decoding by replaying bench/corpus pages through the engine (bench/replay.py);
    ``ocr``: also with the image-text source (the pages' screenshots read by bench.ocr_pages)."""
    out = ctx.pair_dir / "replay.json"
    cmd = [sys.executable, "-m", "bench.replay", "--pair", str(ctx.pair_dir), "--pages", str(pages),
           "--tokens", str(tokens), "--threads", str(ctx.threads), "--json", str(out)]
    if only:
        cmd += ["--only", only]
    if ocr:
        cmd += ["--ocr"]
    log(f"replay: {' '.join(cmd[2:])}")
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def results_stem(size: Size) -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.uname().nodename)[:40] or "machine"
    date = _dt.date.today().isoformat()
    return f"{date}-{host}" + ("" if size.name == "7b" else f"-{size.name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="7b",
                    help="7b: the real shapes (~14.5 GB checkpoint); 1b: quick; tiny: smoke test of the harness")
    ap.add_argument("--only", default=",".join(PHASES), help=f"comma list of phases: {','.join(PHASES)}")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for every program (default: physical cores)")
    ap.add_argument("--rounds", type=int, default=3, help="repetitions of each side-by-side measurement")
    ap.add_argument("--cache", type=Path, default=None, help="default: bench/cache/<size>")
    ap.add_argument("--tools-dir", type=Path, default=anchors.TOOLS_DIR)
    ap.add_argument("--build-tools", action="store_true", help="build llama-bench/llama-mtmd-cli if missing")
    ap.add_argument("--no-memory-diagnostics", action="store_true")
    ap.add_argument("--replay-pages", type=int, default=3, help="corpus pages the replay phase forces as output")
    ap.add_argument("--replay-tokens", type=int, default=300, help="tokens per page (0: whole pages)")
    ap.add_argument("--replay-only", default="", metavar="PREFIXES",
                    help="replay these corpus pages (name prefixes, e.g. 02,04) instead of the first --replay-pages")
    ap.add_argument("--replay-ocr", action="store_true",
                    help="replay also with the drafts from the image's text (bench.ocr_pages reads the screenshots)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--append-rounds", action="store_true",
                    help="decode/ttft: add this run's rounds to today's instead of replacing them")
    ap.add_argument("--fresh", action="store_true",
                    help="start a new results file instead of adding to today's (phases run now replace theirs)")
    args = ap.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(only) - set(PHASES))
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    size = SIZES[args.size]
    if args.threads <= 0:
        from web2code.app.engine.session import physical_cores

        args.threads = physical_cores()
    ctx = Ctx(size, args.threads, max(1, args.rounds), args.cache or REPO / "bench" / "cache" / size.name,
              args.tools_dir, args.build_tools)
    stem = results_stem(size)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{stem}.json"
    results: dict[str, Any] = {}
    if json_path.is_file() and not args.fresh:
        with contextlib.suppress(ValueError):
            results = json.loads(json_path.read_text())
    results.setdefault("errors", {})
    results.setdefault("notes", [])
    ctx.results = results
    results["meta"] = {**results.get("meta", {}), "size": size.name, "config": size.config,
                       "threads": args.threads, "rounds": ctx.rounds, "quant": QUANT,
                       "machine": machine_info(), "command": " ".join([Path(sys.executable).name, "-m", "bench.run",
                                                                       *(argv if argv is not None else sys.argv[1:])]),
                       "started": _dt.datetime.now().isoformat(timespec="seconds")}
    missing = anchors.missing_prerequisites()
    tools_missing = [t for t in anchors.TOOLS if not _has_tool(t, args.tools_dir)]
    results["meta"]["tools_missing"] = tools_missing
    if tools_missing:
        msg = f"llama.cpp tools missing: {', '.join(tools_missing)}: {anchors.BUILD_HINT}"
        if missing:
            msg += "; this machine lacks: " + "; ".join(missing)
        log(msg)
        results["notes"].append(msg)

    def step(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            results[name] = fn()
            results["errors"].pop(name, None)
        except Exception as exc:
            log(f"{name} failed: {exc}")
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        results.setdefault("phase_wall_s", {})[name] = round(time.perf_counter() - t0, 1)
        save(results, json_path)

    if "convert" in only:
        step("convert", lambda: phase_convert(ctx))
    if any(p in only for p in ("decode", "ttft", "reuse", "variants", "batches", "memory", "bandwidth")):
        try:
            ensure_pair(ctx)
        except Exception as exc:
            results["errors"]["pair"] = f"{type(exc).__name__}: {exc}"
            log(f"no pair: {exc}")
    if "decode" in only or "ttft" in only:
        step("rounds", lambda: phase_rounds(ctx, "decode" in only, "ttft" in only, args.append_rounds))
    if "reuse" in only or "variants" in only:
        step("inproc", lambda: phase_inproc(ctx, "reuse" in only, "variants" in only))
    if "batches" in only:
        step("batches", lambda: phase_batches(ctx))
    if "memory" in only:
        step("memory", lambda: phase_memory(ctx, not args.no_memory_diagnostics))
    if "bandwidth" in only:
        step("bandwidth", lambda: phase_bandwidth(ctx))
    if "replay" in only:
        step("replay", lambda: phase_replay(ctx, args.replay_pages, args.replay_tokens, args.replay_only,
                                            args.replay_ocr))
    if "gui" in only:
        step("gui", lambda: {"window_shown": gui_hooks.window_shown_after_launch(),
                             "streaming_preview": gui_hooks.measure_streaming_preview()})
    results["notes"] = sorted(set(results["notes"] + ctx.notes))
    results["meta"]["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
    save(results, json_path)
    from .report import write_report

    md = write_report(results, json_path.with_suffix(".md"))
    log(f"results: {json_path} and {md}")
    return 0 if not results["errors"] else 1


def _has_tool(name: str, tools_dir: Path) -> bool:
    try:
        anchors.find_tool(name, tools_dir)
        return True
    except anchors.ToolMissing:
        return False


def save(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    # Paths in the results are relative to the repository: they name no machine's folders.
    tmp.write_text(json.dumps(results, indent=1, default=str).replace(f"{REPO}/", "") + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
