"""llama.cpp's own tools, built from the same patched source as our llama-cpp-python: the anchor.

``llama-bench`` gives decode (tg) tokens/s; ``llama-mtmd-cli`` gives image
encode + prompt evaluation on the same image and instruction. Both are run as
child processes and their own timing output is parsed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from .procs import REPO, Measured, run_measured

TOOLS_DIR = REPO / "bench" / "tools"
TOOLS = ("llama-bench", "llama-mtmd-cli")
BUILD_HINT = (f"build them with: {sys.executable} -m bench.anchors (or bench.run --build-tools; needs cmake, "
              "a C/C++ compiler and git; Debian/Ubuntu: apt-get install cmake build-essential git)")


class ToolMissing(RuntimeError):
    """A llama.cpp tool the anchor needs is not there; the message says how to get it."""


def find_tool(name: str, tools_dir: Path = TOOLS_DIR) -> Path:
    for cand in (tools_dir / name, Path(shutil.which(name) or "")):
        if cand.name == name and cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise ToolMissing(f"{name} not found in {tools_dir} or on PATH: {BUILD_HINT}")


def missing_prerequisites() -> list[str]:
    """What building the tools would need and this machine lacks (said plainly in the report)."""
    missing = []
    if shutil.which("cmake") is None:
        missing.append("cmake (Debian/Ubuntu: apt-get install cmake)")
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (Debian/Ubuntu: apt-get install build-essential)")
    if shutil.which("git") is None:
        missing.append("git (to apply our llama.cpp patches)")
    return missing


def load_build_wheel() -> Any:
    """packaging/llama.cpp/build_wheel.py as a module: the same sdist, patch series and checks as the wheel."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("w2c_build_wheel", REPO / "packaging/llama.cpp/build_wheel.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_tools(tools_dir: Path = TOOLS_DIR, log: Path | None = None) -> list[Path]:
    """Build llama-bench and llama-mtmd-cli from the wheel's patched source (build_wheel.py's own steps).

    Same as ``build_wheel.py --tools DIR``, but the build folder is kept (``DIR/build``, so a rerun
    is incremental) and the executables are taken from ``build/bin`` (build_wheel.py 0.3.36's
    ``--tools`` picks the first path *named* like the tool, which is the ``tools/llama-bench``
    folder, and fails after the compile).
    """
    missing = missing_prerequisites()
    if missing:
        raise ToolMissing("cannot build llama.cpp's tools, missing: " + "; ".join(missing))
    bw = load_build_wheel()
    tools_dir.mkdir(parents=True, exist_ok=True)
    log = log or tools_dir / "build.log"
    src_root = tools_dir / "src"
    llama_dir = next(src_root.glob("llama_cpp_python-*/"), None) if src_root.is_dir() else None
    if llama_dir is None:
        src_root.mkdir(parents=True, exist_ok=True)
        llama_dir = bw.prepare_source(src_root, log)
    src = llama_dir / bw.VENDOR_SUBDIR
    build = tools_dir / "build"
    extra = os.environ.get("CMAKE_ARGS", "").split()
    gen = ["-G", "Ninja"] if shutil.which("ninja") and not (build / "Makefile").exists() else []
    print(f"  building llama-bench and llama-mtmd-cli (several minutes); log {log}", file=sys.stderr, flush=True)
    if bw.run(["cmake", "-S", str(src), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release",
               "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_BUILD_SERVER=OFF", *extra], log=log).returncode != 0:
        raise ToolMissing(f"configuring llama.cpp failed; see {log}")
    if bw.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2), "--target", *TOOLS],
              log=log).returncode != 0:
        raise ToolMissing(f"building llama.cpp's tools failed; see {log}")
    out = []
    for name in TOOLS:
        exe = build / "bin" / name
        if not exe.is_file():
            raise ToolMissing(f"the build produced no {exe}")
        shutil.copy2(exe, tools_dir / name)
        out.append(tools_dir / name)
    return out


# ------------------------------------------------------------------------------ llama-bench
def llama_bench(exe: Path, model: Path, *, threads: int, n_gen: int, depths: list[int], reps: int,
                n_gpu_layers: int = 0, n_prompt: int | str = 0, extra: list[str] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
    """``llama-bench -p N -n N -d D,... -r R -o json``; per depth: median tokens/s of the repetitions."""
    cmd = [str(exe), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-t", str(threads),
           "-r", str(reps), "-ngl", str(n_gpu_layers), "-fa", "0", "-o", "json",
           "-d", ",".join(str(d) for d in depths), *(extra or [])]
    m = run_measured(cmd, timeout=timeout).check("llama-bench")
    rows = json.loads(m.stdout[m.stdout.index("["):])
    out: dict[str, Any] = {"cmd": " ".join(cmd), "wall_s": round(m.wall_s, 2), "tests": []}
    for r in rows:
        samples = [float(x) for x in r.get("samples_ts") or [r["avg_ts"]]]
        samples.sort()
        med = samples[len(samples) // 2] if len(samples) % 2 else sum(samples[len(samples) // 2 - 1:
                                                                              len(samples) // 2 + 1]) / 2
        out["tests"].append({
            "n_prompt": r.get("n_prompt"), "n_gen": r.get("n_gen"), "n_depth": r.get("n_depth", 0),
            "avg_ts": r.get("avg_ts"), "stddev_ts": r.get("stddev_ts"), "median_ts": med, "samples_ts": samples,
            "build_commit": r.get("build_commit"), "cpu_info": r.get("cpu_info"), "gpu_info": r.get("gpu_info"),
            "backends": r.get("backends"), "model_size": r.get("model_size"),
            "model_n_params": r.get("model_n_params"), "n_threads": r.get("n_threads"),
        })
    return out


# --------------------------------------------------------------------------- llama-mtmd-cli
_RE_STAMP = re.compile(r"^(\d+)\.(\d{2})\.(\d{3})\.(\d{3}) [A-Z] (.*)$")
_RE_ENCODE = re.compile(r"(?:mtmd batch encoding done|image slice encoded) in (\d+) ms")
_RE_IMG_DECODE = re.compile(r"image decoded \(batch \d+/\d+\) in (\d+) ms")


def _stamped(log: str) -> list[tuple[float, str]]:
    """llama.cpp's log lines with their timestamps (``M.SS.mmm.uuu`` since start, printed at ``-lv 4``)."""
    out = []
    for line in log.splitlines():
        m = _RE_STAMP.match(line.strip())
        if m:
            t = int(m[1]) * 60 + int(m[2]) + int(m[3]) / 1e3 + int(m[4]) / 1e6
            out.append((t, m[5]))
    return out


def parse_mtmd_timings(log: str) -> dict[str, Any]:
    """Time to first token of ``llama-mtmd-cli -n 0`` from its own timestamped log.

    Its ``llama_perf`` counters do not cover the whole multimodal prompt here (they
    report a fraction of the positions), so the figure is the time from the line
    it logs just before evaluating the message (the "experimental CLI" warning) to
    the perf print right after it (with ``-n 0`` nothing is generated in between):
    text before the image + image encode + image decode + text after the image.
    """
    lines = _stamped(log)
    t_start = next((t for t, msg in lines if "experimental CLI" in msg), None)
    t_enc0 = next((t for t, msg in lines if msg.startswith("encoding mtmd batch") or "encoding image slice" in msg),
                  None)
    t_dec1 = next((t for t, msg in reversed(lines) if _RE_IMG_DECODE.search(msg)), None)
    t_end = next((t for t, msg in lines if msg.startswith("llama_perf_context_print")), None)
    enc = [float(x) for x in _RE_ENCODE.findall(log)]
    dec = [float(x) for x in _RE_IMG_DECODE.findall(log)]
    if None in (t_start, t_enc0, t_dec1, t_end) or not enc:
        raise ValueError("llama-mtmd-cli's log lacks the timestamped lines the timing is read from (-lv 4)")
    assert t_start is not None and t_enc0 is not None and t_dec1 is not None and t_end is not None
    return {
        "startup_s": t_start - lines[0][0],  # model + mmproj load and warm-up
        "text_before_image_s": t_enc0 - t_start,
        "image_encode_s": sum(enc) / 1000.0,
        "image_decode_s": sum(dec) / 1000.0,
        "text_after_image_s": t_end - t_dec1,
        "ttft_s": t_end - t_start,
        "load_s": t_start - lines[0][0],
        "prompt_eval_s": (t_end - t_start) - sum(enc) / 1000.0,
    }


def mtmd_cli(exe: Path, model: Path, mmproj: Path, image: Path, prompt: str, *, threads: int,
             n_predict: int = 0, n_gpu_layers: int = 0, n_batch: int = 1024, n_ubatch: int = 512,
             extra: list[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    cmd = [str(exe), "-m", str(model), "--mmproj", str(mmproj), "--image", str(image), "-p", prompt,
           "-n", str(n_predict), "-t", str(threads), "-c", "2048", "-b", str(n_batch), "-ub", str(n_ubatch),
           "--temp", "0", "-ngl", str(n_gpu_layers), "-fa", "off",
           # The GGUF's own chat template, whose default system text the engine evaluates too. Without
           # --jinja llama-mtmd-cli detects a built-in "vicuna" format that drops the default system
           # text: ~30 fewer positions (~2 s on 2 cores), which is not the same prompt.
           "--jinja",
           "-lv", "4",  # its timings (perf, "image decoded in") are printed at this verbosity only
           *(extra or [])]
    m: Measured = run_measured(cmd, timeout=timeout).check("llama-mtmd-cli")
    out = parse_mtmd_timings(m.stderr + m.stdout)
    out["wall_s"] = m.wall_s
    out["peak_rss_bytes"] = m.peak_rss_bytes
    out["cmd"] = " ".join(cmd)
    return out


if __name__ == "__main__":  # python -m bench.anchors: build the tools
    for path in build_tools():
        print(path)
