"""The GPU benchmark: on a fresh NVIDIA machine with no network, in about 8 minutes.

    bench/gpu/run.sh            # = python3 bench/gpu/gpu_bench.py run

1. unpacks the llama-cpp-python 0.3.36 source (``bench/cache/gpu/``, made here by
   ``gpu_bench.py pack``; or the wheel cache's sdist) and applies our patch series
   (packaging/llama.cpp/patches) with packaging/llama.cpp/build_wheel.py's own code;
2. builds, in ONE CUDA compile for the local architecture only
   (``-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native``): the shared libraries
   llama-cpp-python loads (libllama, libggml*, libmtmd: its Python package runs
   on them through ``LLAMA_CPP_LIB_PATH``/``MTMD_CPP_LIB``) and llama.cpp's own
   ``llama-bench`` and ``llama-mtmd-cli`` as the anchor;
3. meanwhile writes a random 7B pair of the real shapes straight as GGUF with
   gguf-py (no checkpoint): an F16 ``llama`` model with the converter's tensor
   names, shapes and metadata (tokenizer, chat template, logit offset, pair id
   copied from a metadata-only template of a converted pair), and a CLIP ViT-L/336
   mmproj; then ``llama_model_quantize`` -> Q4_K_M;
4. measures with full offload (image encoder on the GPU too): decode tokens/s
   (our engine vs ``llama-bench`` tg), time to first token (vs ``llama-mtmd-cli``),
   reuse vs cold, three variants vs one, GPU memory; prints one summary and writes
   JSON (to ``$OUT`` when set).

``--cpu`` builds without CUDA and ``--size tiny`` writes a tiny pair: the dry run
of everything but the GPU on a machine without one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import anchors  # noqa: E402  (the repository root is put on the path above)
from bench.anchors import load_build_wheel  # noqa: E402
from bench.procs import run_measured, summary  # noqa: E402

PACK_DIR = REPO / "bench" / "cache" / "gpu"
SDIST_NAME = "llama_cpp_python-0.3.36.tar.gz"
VENDOR = Path("vendor") / "llama.cpp"
#: what the build needs from the sdist (the rest, ~150 MB of vocab files, docs and tests, stays behind)
DROP = ("vendor/llama.cpp/models/", "vendor/llama.cpp/docs/", "vendor/llama.cpp/tests/", "vendor/llama.cpp/benches/",
        "vendor/llama.cpp/examples/", "vendor/llama.cpp/.devops/", "vendor/llama.cpp/media/", "docs/", "tests/",
        "examples/", "docker/", "vendor/llama.cpp/tools/mtmd/test-", "vendor/llama.cpp/tools/server/webui/",
        "vendor/llama.cpp/ggml/src/ggml-vulkan/", "vendor/llama.cpp/ggml/src/ggml-sycl/",
        "vendor/llama.cpp/ggml/src/ggml-opencl/", "vendor/llama.cpp/ggml/src/ggml-cann/",
        "vendor/llama.cpp/ggml/src/ggml-musa/", "vendor/llama.cpp/ggml/src/ggml-webgpu/",
        "vendor/llama.cpp/ggml/src/ggml-hexagon/", "vendor/llama.cpp/ggml/src/ggml-zdnn/",
        "vendor/llama.cpp/ggml/src/ggml-kompute/", "vendor/llama.cpp/ggml/src/ggml-metal/", ".git/",
        "vendor/llama.cpp/.git", "vendor/llama.cpp/tools/ui/", "vendor/llama.cpp/tools/mtmd/tests/",
        "vendor/llama.cpp/tools/server/public")

REAL = {"n_vocab": 32032, "n_embd": 4096, "n_layer": 32, "n_head": 32, "n_ff": 11008,
        "v_hidden": 1024, "v_ff": 4096, "v_layers": 24, "v_heads": 16, "image": 336, "patch": 14}
TINY = {"n_vocab": 32032, "n_embd": 256, "n_layer": 2, "n_head": 2, "n_ff": 512,
        "v_hidden": 128, "v_ff": 200, "v_layers": 3, "v_heads": 2, "image": 28, "patch": 14}

T0 = time.perf_counter()
#: threads for every program (with full offload they only feed the GPU)
THREADS = os.cpu_count() or 4


def say(msg: str) -> None:
    print(f"[gpu-bench {time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ pack (here)
def _keep(member: tarfile.TarInfo) -> bool:
    rel = member.name.split("/", 1)[1] if "/" in member.name else ""
    return not any(rel.startswith(d) for d in DROP)


def pack(template_pair: Path, sdist: Path | None) -> None:
    """bench/cache/gpu/: a slim source tarball, a metadata-only template pair, the wheels python3 lacks there."""
    bw = load_build_wheel()
    sdist = sdist or bw.cache_dir() / "sdist" / SDIST_NAME
    if not sdist.is_file():
        raise SystemExit(f"no sdist at {sdist}: run packaging/llama.cpp/build_wheel.py once (it downloads it)")
    PACK_DIR.mkdir(parents=True, exist_ok=True)
    out = PACK_DIR / SDIST_NAME
    with tarfile.open(sdist) as src, tarfile.open(out, "w:gz", compresslevel=9) as dst:
        for m in src.getmembers():
            if _keep(m):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    say(f"slim source: {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    tdir = PACK_DIR / "template"
    tdir.mkdir(exist_ok=True)
    import gguf

    for src_path, name in ((next(template_pair.glob("*-Q4_K_M.gguf")), "model.gguf"),
                           (next(template_pair.glob("mmproj-*.gguf")), "mmproj.gguf")):
        r = gguf.GGUFReader(str(src_path))
        w = gguf.GGUFWriter(str(tdir / name), arch=str(r.fields["general.architecture"].contents()))
        copy_kv(r, w, {})
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
    say(f"metadata-only template pair: {tdir}")
    wheels = PACK_DIR / "wheels"
    wheels.mkdir(exist_ok=True)
    if not list(wheels.glob("diskcache-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                        str(wheels), "diskcache==5.6.3"], check=False)
    # The corpus screenshots' OCR for the replay's image-text drafts (the GPU machine needs no OCR engine).
    from bench.ocr_pages import DEFAULT_OUT, INDEX, load_texts

    load_texts(DEFAULT_OUT)
    (PACK_DIR / "ocr-pages").mkdir(exist_ok=True)
    shutil.copy2(DEFAULT_OUT / INDEX, PACK_DIR / "ocr-pages" / INDEX)
    total = sum(p.stat().st_size for p in PACK_DIR.rglob("*") if p.is_file())
    say(f"bench/cache/gpu holds {total / 2**20:.1f} MiB: carry it with the run (carry: ['bench/cache/gpu'])")


# ------------------------------------------------------------------------------ GGUF writing
def copy_kv(reader: Any, writer: Any, overrides: dict[str, Any]) -> None:
    """Every key of ``reader`` (but the GGUF header's and the architecture) into ``writer``."""
    import gguf

    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in overrides:
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    for key, (value, vtype, sub) in overrides.items():
        writer.add_key_value(key, value, vtype, sub_type=sub)


class Pool:
    """Random F16 values reused at random offsets: speed does not depend on the values, writing does."""

    def __init__(self, n: int = 1 << 27, seed: int = 0) -> None:
        import numpy as np

        self.np = np
        rng = np.random.default_rng(seed)
        self.data = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float16)
        self.rng = rng

    def take(self, shape: tuple[int, ...], dtype: str) -> Any:
        np = self.np
        n = int(np.prod(shape))
        parts = []
        left = n
        while left > 0:
            off = int(self.rng.integers(0, len(self.data)))
            chunk = self.data[off: off + left]
            parts.append(chunk)
            left -= len(chunk)
        arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if dtype == "F32":
            arr = arr.astype(np.float32)
        return arr.reshape(shape)


def llama_tensors(c: dict[str, int]) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, type) of the converter's text model (CONVERSION.md §3), in its order."""
    d, f, v = c["n_embd"], c["n_ff"], c["n_vocab"]
    hd = d // c["n_head"]
    out: list[tuple[str, tuple[int, ...], str]] = [
        ("token_embd.weight", (v, d), "F16"), ("output.weight", (v, d), "F16"),
        ("output_norm.weight", (d,), "F32"), ("rope_freqs.weight", (hd // 2,), "F32")]
    for i in range(c["n_layer"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (d,), "F32")]
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            out += [(b + t + ".weight", (d, d), "F16"), (b + t + ".bias", (d,), "F32")]
        out += [(b + "ffn_norm.weight", (d,), "F32"),
                (b + "ffn_gate.weight", (f, d), "F16"), (b + "ffn_gate.bias", (f,), "F32"),
                (b + "ffn_up.weight", (f, d), "F16"), (b + "ffn_up.bias", (f,), "F32"),
                (b + "ffn_down.weight", (d, f), "F16"), (b + "ffn_down.bias", (d,), "F32")]
    return out


def clip_tensors(c: dict[str, int]) -> list[tuple[str, tuple[int, ...], str]]:
    """The converter's mmproj: CLIP layers 0..N-2 (feature layer N-1), patch conv, projector."""
    h, f, p, d = c["v_hidden"], c["v_ff"], c["patch"], c["n_embd"]
    n_pos = (c["image"] // p) ** 2 + 1
    out: list[tuple[str, tuple[int, ...], str]] = [
        ("v.class_embd", (h,), "F32"), ("v.patch_embd.weight", (h, 3, p, p), "F16"),
        ("v.position_embd.weight", (n_pos, h), "F32"), ("v.pre_ln.weight", (h,), "F32"),
        ("v.pre_ln.bias", (h,), "F32")]
    for i in range(c["v_layers"] - 1):
        b = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            out += [(b + t + ".weight", (h, h), "F16"), (b + t + ".bias", (h,), "F32")]
        out += [(b + "ln1.weight", (h,), "F32"), (b + "ln1.bias", (h,), "F32"), (b + "ln2.weight", (h,), "F32"),
                (b + "ln2.bias", (h,), "F32"), (b + "ffn_up.weight", (f, h), "F16"), (b + "ffn_up.bias", (f,), "F32"),
                (b + "ffn_down.weight", (h, f), "F16"), (b + "ffn_down.bias", (h,), "F32")]
    out += [("mm.0.weight", (d, h), "F16"), ("mm.0.bias", (d,), "F32"), ("mm.2.weight", (d, d), "F16"),
            ("mm.2.bias", (d,), "F32")]
    return out


def write_gguf(path: Path, template: Path, arch: str, tensors: list[tuple[str, tuple[int, ...], str]], *,
               overrides: dict[str, Any], pool: Pool) -> None:
    """Stream a GGUF: header and metadata, then one tensor at a time (memory stays small)."""
    import gguf
    import numpy as np

    r = gguf.GGUFReader(str(template))
    w = gguf.GGUFWriter(str(path), arch=arch)
    copy_kv(r, w, overrides)
    for name, shape, t in tensors:
        dt = np.float16 if t == "F16" else np.float32
        nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
        w.add_tensor_info(name, shape, np.dtype(dt), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, t in tensors:
        if name == "rope_freqs.weight" or (t == "F32" and ("norm" in name or "ln" in name.split(".")[-2])):
            arr = np.ones(shape, dtype=np.float32)  # rotary frequency factors, norm weights
        elif name.endswith(".bias"):
            arr = np.zeros(shape, dtype=np.float32)
        else:
            arr = pool.take(shape, t)
        w.write_tensor_data(np.ascontiguousarray(arr))
    w.close()


def write_pair(work: Path, c: dict[str, int], template_dir: Path) -> tuple[Path, Path]:
    """model-F16.gguf + mmproj-f16.gguf of shapes ``c`` with a shared new pair id."""
    import gguf
    import numpy as np

    U32, F32, STR, ARR, I32 = (gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.STRING,
                               gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
    pair_id = uuid.uuid4().hex
    pool = Pool()
    model = work / "bench-F16.gguf"
    hd = c["n_embd"] // c["n_head"]
    write_gguf(model, template_dir / "model.gguf", "llama", llama_tensors(c), overrides={
        "general.name": ("web2code-gpu-bench", STR, None), "web2code.pair_id": (pair_id, STR, None),
        "llama.embedding_length": (c["n_embd"], U32, None), "llama.block_count": (c["n_layer"], U32, None),
        "llama.feed_forward_length": (c["n_ff"], U32, None), "llama.attention.head_count": (c["n_head"], U32, None),
        "llama.attention.head_count_kv": (c["n_head"], U32, None), "llama.rope.dimension_count": (hd, U32, None),
        "llama.context_length": (2048, U32, None), "general.file_type": (1, U32, None),
        "web2code.logit_offset": (list(np.zeros(c["n_vocab"], dtype=np.float32).tolist()), ARR, F32),
    }, pool=pool)
    mmproj = work / "mmproj-bench-f16.gguf"
    write_gguf(mmproj, template_dir / "mmproj.gguf", "clip", clip_tensors(c), overrides={
        "general.name": ("web2code-gpu-bench", STR, None), "web2code.pair_id": (pair_id, STR, None),
        "clip.vision.image_size": (c["image"], U32, None), "clip.vision.patch_size": (c["patch"], U32, None),
        "clip.vision.embedding_length": (c["v_hidden"], U32, None),
        "clip.vision.feed_forward_length": (c["v_ff"], U32, None),
        "clip.vision.block_count": (c["v_layers"] - 1, U32, None),
        "clip.vision.projection_dim": (768 if c["v_hidden"] == 1024 else c["v_hidden"], U32, None),
        "clip.vision.attention.head_count": (c["v_heads"], U32, None),
        "clip.vision.feature_layer": ([c["v_layers"] - 1], ARR, I32),
    }, pool=pool)
    return model, mmproj


def quantize(src: Path, dst: Path, threads: int) -> None:
    from web2code.app.engine import llama

    rc = llama.quantize(src, dst, "Q4_K_M", n_threads=threads)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed ({rc})")


# ---------------------------------------------------------------------------------- building
def unpack_source(work: Path, sdist: Path | None) -> Path:
    bw = load_build_wheel()
    cands = [sdist] if sdist else [PACK_DIR / SDIST_NAME, bw.cache_dir() / "sdist" / SDIST_NAME]
    found = next((p for p in cands if p and p.is_file()), None)
    if found is None:
        raise SystemExit("no llama-cpp-python source: run `python bench/gpu/gpu_bench.py pack` where the wheel "
                         "cache has the sdist, and carry bench/cache/gpu to this machine")
    with tarfile.open(found) as tf:
        tf.extractall(work, filter="data")
    src = next(work.glob("llama_cpp_python-*/"))
    llama_dir = src / VENDOR
    if shutil.which("git"):
        for line in bw.apply_patches(llama_dir):
            say(line)
    else:  # same series, applied with patch(1)
        for p in bw.patches():
            rc = subprocess.run(["patch", "-p1", "-N", "-s", "-i", str(p)], cwd=llama_dir, check=False).returncode
            say(f"{p.name}: {'applied with patch(1)' if rc == 0 else 'patch(1) failed'}")
            if rc != 0:
                raise SystemExit(f"patch {p.name} does not apply")
    return src


def start_build(src: Path, build: Path, *, cuda: bool, fa: bool, log: Path) -> subprocess.Popen[bytes]:
    """Configure + build in the background (one compile: shared libs and the two tools)."""
    args = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=ON"]
    if cuda:
        args += ["-DGGML_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=native", f"-DGGML_CUDA_FA={'ON' if fa else 'OFF'}",
                 "-DGGML_CUDA_NCCL=OFF"]
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = str(os.cpu_count() or 4)
    script = (f"cmake -S {src / VENDOR} -B {build} {' '.join(gen)} {' '.join(args)} && "
              f"cmake --build {build} -j {jobs} --target llama mtmd llama-bench llama-mtmd-cli")
    fh = log.open("wb")
    return subprocess.Popen(["bash", "-c", script], stdout=fh, stderr=subprocess.STDOUT)


def python_site(work: Path, src: Path) -> Path:
    """A site folder: llama-cpp-python's package (from the same source), gguf-py, web2code -> this checkout."""
    site = work / "site"
    site.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        shutil.copytree(src / "llama_cpp", site / "llama_cpp")
    gguf_src = src / VENDOR / "gguf-py" / "gguf"
    with contextlib.suppress(FileExistsError):
        shutil.copytree(gguf_src, site / "gguf")
    ns = site / "web2code"
    ns.mkdir(exist_ok=True)
    for name in ("app", "converters", "resources"):
        link = ns / name
        if not link.exists():
            link.symlink_to(REPO / name)
    for whl in (PACK_DIR / "wheels").glob("*.whl"):
        import zipfile

        with zipfile.ZipFile(whl) as z:
            z.extractall(site)
    return site


# ------------------------------------------------------------------------------- measuring
def gpu_name() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False, timeout=20).stdout.strip()
        if out:
            return out
    return "no NVIDIA GPU visible"


def gpu_bandwidth() -> float | None:
    """Device read bandwidth (bytes/s) from a large torch reduction, when torch sees a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.ones(1 << 30, dtype=torch.float32, device="cuda")  # 4 GiB
    a.sum()
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(10):
        t0 = time.perf_counter()
        a.sum()
        torch.cuda.synchronize()
        best = max(best, a.numel() * 4 / (time.perf_counter() - t0))
    del a
    torch.cuda.empty_cache()
    return best


def engine_generate(env: dict[str, str], model: Path, mmproj: Path, image: Path, *, n: int, seed: int,
                    gpu: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "web2code.app.cli", "generate", str(image), "--model", str(model), "--mmproj",
           str(mmproj), "--gpu-layers", "auto" if gpu else "0", "--threads", str(THREADS), "--json",
           "--max-tokens", str(n), "--seed", str(seed)]
    m = run_measured(cmd, env=env).check("web2code generate")
    obj = json.loads(m.stdout.strip().splitlines()[-1])
    t = obj["timings"]
    n_gen = len(obj.get("token_ids") or [])
    return {**t, "n_generated": n_gen, "n_prompt_tokens": obj.get("n_prompt_tokens"),
            "tokens_per_s_corrected": (n_gen - 1) / t["decode_s"] if n_gen > 1 and t["decode_s"] else 0.0,
            "ttft_s": t["image_encode_s"] + t["prefill_s"], "wall_s": m.wall_s}


def measure(env: dict[str, str], model: Path, mmproj: Path, tools: Path, image: Path, *, gpu: bool, rounds: int,
            n_tok: int) -> dict[str, Any]:
    from bench.procs import median

    ngl = 99 if gpu else 0
    prompt = "Please generate html code for the given image"
    rows = []
    for r in range(rounds):
        eng = engine_generate(env, model, mmproj, image, n=n_tok, seed=42 + r, gpu=gpu)
        depth = int(eng["n_prompt_tokens"] or 0)
        mt = anchors.mtmd_cli(tools / "llama-mtmd-cli", model, mmproj, image, prompt, threads=THREADS,
                              n_gpu_layers=ngl)
        lb = anchors.llama_bench(tools / "llama-bench", model, threads=THREADS, n_gen=n_tok,
                                 depths=[0, depth], reps=3, n_gpu_layers=ngl)
        tg = {t["n_depth"]: t["median_ts"] for t in lb["tests"]}
        rows.append({"engine": eng, "mtmd_cli": mt, "llama_bench": tg, "depth": depth})
        say(f"round {r + 1}: engine {eng['tokens_per_s_corrected']:.1f} tok/s, llama-bench {tg}; ttft engine "
            f"{eng['ttft_s']:.3f}s vs mtmd-cli {mt['ttft_s']:.3f}s")
    depth = rows[-1]["depth"]
    out: dict[str, Any] = {
        "engine_tokens_per_s": summary([r["engine"]["tokens_per_s_corrected"] for r in rows]),
        "llama_bench_tg_depth0": summary([r["llama_bench"][0] for r in rows]),
        "llama_bench_tg_same_depth": summary([r["llama_bench"][r["depth"]] for r in rows]),
        "decode_ratio_depth0": summary([r["engine"]["tokens_per_s_corrected"] / r["llama_bench"][0] for r in rows]),
        "decode_ratio_same_depth": summary([r["engine"]["tokens_per_s_corrected"] / r["llama_bench"][r["depth"]]
                                            for r in rows]),
        "engine_ttft_s": summary([r["engine"]["ttft_s"] for r in rows]),
        "engine_load_s": summary([r["engine"]["load_s"] for r in rows]),
        "engine_image_encode_s": summary([r["engine"]["image_encode_s"] for r in rows]),
        "engine_prefill_s": summary([r["engine"]["prefill_s"] for r in rows]),
        "mtmd_ttft_s": summary([r["mtmd_cli"]["ttft_s"] for r in rows]),
        "mtmd_image_encode_s": summary([r["mtmd_cli"]["image_encode_s"] for r in rows]),
        "ttft_ratio": summary([r["engine"]["ttft_s"] / r["mtmd_cli"]["ttft_s"] for r in rows]),
        "prompt_depth": depth, "tokens": n_tok, "rounds": rows,
    }
    # reuse + variants, in-process
    images = [image] + [image.with_name(f"page-{i}.png") for i in (1, 2)]
    cmd = [sys.executable, "-m", "bench.inproc", "--model", str(model), "--mmproj", str(mmproj), "--images",
           *map(str, images), "--variant-tokens", str(n_tok), "--runs", "2", "--threads", str(THREADS),
           "--gpu-layers", "-1" if gpu else "0"]
    m = run_measured(cmd, env=env, cwd=REPO)
    if m.rc == 0:
        raw = json.loads(m.stdout.strip().splitlines()[-1])
        cold = [c["ttft_s"] for c in raw["cold"]]
        warm = [c["ttft_s"] for c in raw["reuse"]]
        one = [x["wall_s"] for x in raw["variants"]["one"]]
        three = [x["wall_s"] for x in raw["variants"]["three"]]
        out["reuse"] = {"cold_ttft_s": summary(cold), "reuse_ttft_s": summary(warm),
                        "ratio": summary([w / c for w, c in zip(warm, cold, strict=True)])}
        out["variants"] = {"one_wall_s": summary(one), "three_wall_s": summary(three),
                           "ratio": summary([t / o for o, t in zip(one, three, strict=True)])}
    else:
        out["inproc_error"] = m.stderr.strip()[-800:]
    out["replay"] = replay(env, model, mmproj, gpu=gpu)
    out["median_engine_decode"] = median([r["engine"]["tokens_per_s_corrected"] for r in rows])
    return out


def replay(env: dict[str, str], model: Path, mmproj: Path, *, gpu: bool, pages: int = 3,
           tokens: int = 300) -> dict[str, Any]:
    """Speculative decoding by replay (bench/replay.py), 8 drafts on the GPU, with and without the
    image-text source. The corpus screenshots' OCR comes precomputed (``pack`` copies
    bench/cache/ocr-pages/pages.json here): this machine needs no OCR engine."""
    out_json = Path(os.environ.get("OUT") or "/tmp") / "gpu-replay.json"
    ocr_dir = PACK_DIR / "ocr-pages"
    cmd = [sys.executable, "-m", "bench.replay", "--model", str(model), "--mmproj", str(mmproj),
           "--gpu-layers", "-1" if gpu else "0", "--draft-max", "8" if gpu else "0", "--pages", str(pages),
           "--tokens", str(tokens), "--threads", str(THREADS), "--json", str(out_json)]
    if (ocr_dir / "pages.json").is_file():
        cmd += ["--ocr", "--ocr-dir", str(ocr_dir)]
    m = run_measured(cmd, env=env, cwd=REPO)
    if m.rc != 0:
        return {"error": m.stderr.strip()[-800:]}
    data: dict[str, Any] = json.loads(out_json.read_text())
    data.pop("predicted_whole_corpus", None)  # keep the summary short; the file has it all
    return data


# -------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> int:
    shapes = REAL if args.size == "7b" else TINY
    work = args.work
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"size": args.size, "gpu": gpu_name(), "cuda": not args.cpu, "steps_s": {}}
    say(f"GPU: {result['gpu']}")

    t = time.perf_counter()
    if args.lib_dir and args.tools_dir:
        lib_dir, tools_dir, src, build_proc = args.lib_dir, args.tools_dir, None, None
        src = unpack_source(work, args.sdist)
    else:
        src = unpack_source(work, args.sdist)
        build = work / "build"
        build_proc = start_build(src, build, cuda=not args.cpu, fa=args.fa, log=work / "build.log")
        lib_dir = tools_dir = build / "bin"
        say(f"building llama.cpp ({'CUDA, native arch' if not args.cpu else 'CPU'}) in the background; "
            f"log {work / 'build.log'}")
    result["steps_s"]["unpack"] = round(time.perf_counter() - t, 1)

    site = python_site(work, src)
    sys.path.insert(0, str(site))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    env["LLAMA_CPP_LIB_PATH"] = str(lib_dir)
    env["MTMD_CPP_LIB"] = str(lib_dir)
    os.environ["LLAMA_CPP_LIB_PATH"] = str(lib_dir)
    os.environ["MTMD_CPP_LIB"] = str(lib_dir)

    t = time.perf_counter()
    template = args.template or PACK_DIR / "template"
    say(f"writing the random {args.size} F16 pair with gguf-py (template metadata: {template})")
    f16, mmproj = write_pair(work, shapes, template)
    result["steps_s"]["write_f16"] = round(time.perf_counter() - t, 1)
    result["f16_bytes"] = f16.stat().st_size
    result["mmproj_bytes"] = mmproj.stat().st_size

    if build_proc is not None:
        t = time.perf_counter()
        rc = build_proc.wait()
        result["steps_s"]["build_wait_after_write"] = round(time.perf_counter() - t, 1)
        if rc != 0:
            tail = (work / "build.log").read_text(errors="replace").splitlines()[-30:]
            print("\n".join(tail), file=sys.stderr)
            raise SystemExit("the llama.cpp build failed (log above)")
        result["steps_s"]["build_total"] = round(time.perf_counter() - T0 - result["steps_s"]["unpack"], 1)
    t = time.perf_counter()
    model = work / "bench-Q4_K_M.gguf"
    quantize(f16, model, os.cpu_count() or 4)
    f16.unlink()
    result["steps_s"]["quantize"] = round(time.perf_counter() - t, 1)
    result["model_bytes"] = model.stat().st_size
    say(f"Q4_K_M: {model.stat().st_size / 1e9:.2f} GB; measuring")

    from bench.images import webpage

    image = work / "page-0.png"
    size = shapes["image"]
    for i in range(3):
        from PIL import Image

        img = webpage(i)
        side = max(img.size)
        sq = Image.new("RGB", (side, side), (122, 116, 104))
        sq.paste(img, (0, (side - img.size[1]) // 2))
        sq.resize((size, size), Image.Resampling.BICUBIC).save(work / f"page-{i}.png")
    t = time.perf_counter()
    result["measure"] = measure(env, model, mmproj, Path(tools_dir), image, gpu=not args.cpu, rounds=args.rounds,
                                n_tok=args.tokens)
    result["steps_s"]["measure"] = round(time.perf_counter() - t, 1)
    bw = gpu_bandwidth()
    if bw:
        from bench.bandwidth import weight_bytes_per_token

        wb = weight_bytes_per_token(model)["weights_read_per_token"]
        result["gpu_read_bandwidth_bytes_per_s"] = bw
        result["decode_ceiling_tokens_per_s"] = bw / wb
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result["nvidia_smi"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False,
                                              timeout=20).stdout
    result["total_s"] = round(time.perf_counter() - T0, 1)
    print_summary(result)
    out = Path(os.environ["OUT"]) / "gpu-bench.json" if os.environ.get("OUT") else work / "gpu-bench.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    say(f"JSON: {out}")
    return 0


def print_summary(r: dict[str, Any]) -> None:
    m = r.get("measure", {})

    def med(key: str, sub: str | None = None) -> Any:
        d = m.get(key, {}) if sub is None else m.get(key, {}).get(sub, {})
        return d.get("median") if isinstance(d, dict) else None

    lines = [
        "=" * 78,
        f"Web2Code GPU benchmark: {r['gpu']} ({'CUDA' if r['cuda'] else 'CPU dry run'}), size {r['size']}",
        f"steps (s): {r['steps_s']}; total {r.get('total_s')} s",
        f"Q4_K_M model {r.get('model_bytes', 0) / 1e9:.2f} GB, mmproj {r.get('mmproj_bytes', 0) / 1e9:.2f} GB",
        f"decode tok/s: engine {med('engine_tokens_per_s')} vs llama-bench tg {med('llama_bench_tg_depth0')} "
        f"(depth 0) / {med('llama_bench_tg_same_depth')} (depth {m.get('prompt_depth')}); ratios "
        f"{med('decode_ratio_depth0')} / {med('decode_ratio_same_depth')} (target >= 0.97)",
        f"time to first token: engine {med('engine_ttft_s')} s vs llama-mtmd-cli {med('mtmd_ttft_s')} s; ratio "
        f"{med('ttft_ratio')} (target <= 1.05)",
        f"reuse vs cold: {med('reuse', 'ratio')} (target <= 0.10); three variants vs one: "
        f"{med('variants', 'ratio')} (target <= 1.6)",
        f"replay, {m.get('replay', {}).get('draft_max')} drafts: n-gram {m.get('replay', {}).get('total_speedup')}x, "
        f"with the image text {m.get('replay', {}).get('ocr_total_speedup')}x; per source "
        f"{m.get('replay', {}).get('ocr_sources')}",
    ]
    if r.get("decode_ceiling_tokens_per_s"):
        eng = m.get("median_engine_decode") or 0.0
        lines.append(f"memory-bandwidth ceiling: {r['decode_ceiling_tokens_per_s']:.0f} tok/s "
                     f"({r['gpu_read_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s read); engine at "
                     f"{eng / r['decode_ceiling_tokens_per_s'] * 100:.0f}% of it "
                     "(published llama.cpp 7-8B Q4_K_M on H100 PCIe: ~145 tok/s)")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("pack", help="(here) write bench/cache/gpu: slim source, template metadata, wheels")
    p.add_argument("--template-pair", type=Path, default=REPO / "bench/cache/tiny/pair",
                   help="a converted pair folder (default: the harness's tiny pair)")
    p.add_argument("--sdist", type=Path, default=None)
    r = sub.add_parser("run", help="(on the GPU machine) build, write the pair, measure")
    r.add_argument("--size", choices=("7b", "tiny"), default="7b")
    r.add_argument("--work", type=Path, default=Path("/tmp/w2c-gpu"))
    r.add_argument("--keep", action="store_true", help="keep an existing work folder")
    r.add_argument("--cpu", action="store_true", help="dry run: build without CUDA, measure on the CPU")
    r.add_argument("--fa", action="store_true", help="also compile the flash-attention CUDA kernels (slower build)")
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--tokens", type=int, default=128)
    r.add_argument("--sdist", type=Path, default=None)
    r.add_argument("--template", type=Path, default=None)
    r.add_argument("--lib-dir", type=Path, default=None, help="skip the build: llama.cpp shared libraries here")
    r.add_argument("--tools-dir", type=Path, default=None, help="skip the build: llama-bench, llama-mtmd-cli here")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        pack(args.template_pair, args.sdist)
        return 0
    if args.cmd is None:
        args = ap.parse_args(["run", *(argv or sys.argv[1:])])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
