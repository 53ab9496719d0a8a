"""GPU offload, proven on whatever GPU device the llama.cpp build sees (in CI: Vulkan on Mesa's lavapipe).

Every layer and the CLIP projector run on the device and give what the CPU
gives: the same greedy ids (on the steps whose top token wins by a clear
margin), and embeddings and logits within the tolerances below. llama.cpp's own
log proves the work went to the device (without ``GGML_VK_VISIBLE_DEVICES=0``
llama.cpp skips lavapipe, and everything would silently pass on the CPU).

The CPU reference runs in a child process with ``WEB2CODE_TEST_CPU_PYTHON``
(the CPU build's venv, set by ``./dev.sh test-vulkan``) or else this build with
no layer offloaded and Vulkan's software device hidden. Skipped, with the
reason, when this build sees no GPU device.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import TinyPair

REPO = Path(__file__).resolve().parents[2]

#: Relative L2 error of the image embeddings (Vulkan's CLIP computes in f16 where the CPU uses f32).
EMB_RTOL = 1e-2
#: Largest absolute difference of any logit, over every generated step.
LOGIT_ATOL = 2e-2
#: Greedy ids must be equal on every step whose CPU top-2 gap is at least this (>> LOGIT_ATOL):
#: closer calls may flip on any device, and prove nothing.
CLEAR_MARGIN = 0.1
#: ... and at least this many steps must be that clear, or the comparison says nothing.
MIN_CLEAR_STEPS = 8
TOKENS = 24

#: lavapipe is a CPU-type Vulkan device, which llama.cpp skips unless it is named.
GPU_ENV = {"GGML_VK_VISIBLE_DEVICES": os.environ.get("GGML_VK_VISIBLE_DEVICES", "0")}


@dataclass
class Run:
    data: dict[str, Any]
    logits: np.ndarray | None = None
    emb: np.ndarray | None = None
    offset: np.ndarray | None = None

    log: str = ""

    def offloaded(self) -> tuple[int, int]:
        """What llama.cpp said it offloaded of the pair's model (the loader's line with the most layers:
        the engine's class-token probe loads a one-layer model on the CPU as well)."""
        found = [(int(a), int(b)) for a, b in re.findall(r"offloaded (\d+)/(\d+) layers to GPU", self.log)]
        assert found, f"no offload line in llama.cpp's log:\n{self.log[-3000:]}"
        return max(found, key=lambda ab: ab[1])


def _probe(model: Path, mmproj: Path, out: Path, *args: str, python: str = sys.executable,
           env: dict[str, str] | None = None, hide_gpu: bool = False) -> Run:
    full = {**os.environ, **(env or {})}
    if hide_gpu:
        full.pop("GGML_VK_VISIBLE_DEVICES", None)
    full["WEB2CODE_LLAMA_LOG"] = "1"  # all of llama.cpp's log on stderr
    cmd = [python, "-m", "tests.integration.offload_probe", "--model", str(model), "--mmproj", str(mmproj),
           "--tokens", str(TOKENS), "--out", str(out), *args]
    # Cold, lavapipe compiles its shaders first (minutes on 2 cores); Mesa's shader cache makes it seconds.
    proc = subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, f"probe failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    data = json.loads((out / "result.json").read_text())
    if "error" in data:
        return Run(data, log=proc.stderr)
    return Run(data, np.load(out / "logits.npy"), np.load(out / "embeddings.npy"), np.load(out / "offset.npy"),
               log=proc.stderr)


@pytest.fixture(scope="module")
def gpu_device() -> str:
    proc = subprocess.run([sys.executable, "-c", "import json; from tests.offload import gpu_devices; "
                           "print(json.dumps(gpu_devices()))"], cwd=REPO, env={**os.environ, **GPU_ENV},
                          capture_output=True, text=True, timeout=120, check=False)
    devices = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
    if not devices:
        pytest.skip("this llama.cpp build sees no GPU device (the offload tests need a GPU build, e.g. "
                    "CMAKE_ARGS=-DGGML_VULKAN=on; on Mesa's software Vulkan: GGML_VK_VISIBLE_DEVICES=0)")
    return str(devices[0])


class Runs:
    """Probe results, each computed once per module (a lavapipe run costs seconds to minutes)."""

    def __init__(self, root: Path, tp: TinyPair) -> None:
        self.root = root
        self.tp = tp
        self._cache: dict[tuple[Any, ...], Run] = {}

    def get(self, quant: str, *args: str, cpu: bool = False, env: dict[str, str] | None = None) -> Run:
        key = (quant, args, cpu, tuple(sorted((env or {}).items())))
        if key not in self._cache:
            model = self.tp.model if quant == "F32" else self.tp.q8
            out = self.root / f"run{len(self._cache)}"
            if cpu:
                run = _probe(model, self.tp.mmproj, out, "--gpu-layers", "0", "--no-vision-gpu", *args,
                             python=os.environ.get("WEB2CODE_TEST_CPU_PYTHON") or sys.executable, hide_gpu=True)
            else:
                run = _probe(model, self.tp.mmproj, out, *args, env={**GPU_ENV, **(env or {})})
            self._cache[key] = run
        return self._cache[key]


@pytest.fixture(scope="module")
def runs(gpu_device: str, tiny_pair: TinyPair, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("offload"), tiny_pair)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def _clear_steps(cpu: Run) -> int:
    """How many leading steps the CPU's top token wins by at least CLEAR_MARGIN (after the logit offset)."""
    assert cpu.logits is not None and cpu.offset is not None
    adjusted = np.sort(cpu.logits.astype(np.float64) + cpu.offset, axis=1)
    gaps = adjusted[:, -1] - adjusted[:, -2]
    close = np.flatnonzero(gaps < CLEAR_MARGIN)
    return int(close[0]) if close.size else len(gaps)


@pytest.mark.parametrize(("quant", "kv"), [("F32", ["--kv-f32"]), ("Q8_0", [])], ids=["F32-kvF32", "Q8_0-kvF16"])
def test_everything_offloaded_computes_what_the_cpu_computes(runs: Runs, gpu_device: str, quant: str,
                                                             kv: list[str]) -> None:
    cpu = runs.get(quant, *kv, cpu=True)
    gpu = runs.get(quant, "--gpu-layers", "999", *kv)
    assert "error" not in cpu.data and "error" not in gpu.data, (cpu.data.get("error"), gpu.data.get("error"))
    # The CPU reference really ran on the CPU, the other run really on the device: llama.cpp says so.
    assert cpu.data["offloaded"] == 0 and cpu.data["devices"] == ["CPU"]
    assert "CLIP using CPU backend" in cpu.log
    done, total = gpu.offloaded()
    assert done == total == gpu.data["offloaded"] > 0
    assert any(d.startswith(gpu_device) for d in gpu.data["devices"]), gpu.data["devices"]
    assert f"CLIP using {gpu_device} backend" in gpu.log

    assert gpu.emb is not None and cpu.emb is not None and gpu.logits is not None and cpu.logits is not None
    emb_err = _rel(gpu.emb, cpu.emb)
    n = min(len(gpu.data["ids"]), len(cpu.data["ids"]))
    logit_err = float(np.max(np.abs(gpu.logits[:n].astype(np.float64) - cpu.logits[:n])))
    print(f"\n{quant}: embeddings {emb_err:.2e} relative (tolerance {EMB_RTOL:g}), "
          f"logits {logit_err:.2e} absolute (tolerance {LOGIT_ATOL:g})")
    assert emb_err <= EMB_RTOL
    assert logit_err <= LOGIT_ATOL
    clear = _clear_steps(cpu)
    assert clear >= MIN_CLEAR_STEPS, f"only {clear} steps win by {CLEAR_MARGIN}: this pair proves nothing"
    assert gpu.data["ids"][:clear] == cpu.data["ids"][:clear]


def test_no_vision_gpu_keeps_clip_on_the_cpu(runs: Runs, gpu_device: str) -> None:
    cpu = runs.get("F32", "--kv-f32", cpu=True)
    run = runs.get("F32", "--gpu-layers", "999", "--kv-f32", "--no-vision-gpu")
    assert "CLIP using CPU backend" in run.log
    assert f"CLIP using {gpu_device}" not in run.log
    done, total = run.offloaded()
    assert done == total > 0  # the text model stays on the device
    assert run.emb is not None and cpu.emb is not None
    assert _rel(run.emb, cpu.emb) <= 1e-5  # the same CPU CLIP graph
    clear = _clear_steps(cpu)
    assert run.data["ids"][:clear] == cpu.data["ids"][:clear]


def _mib(pattern: str, log: str) -> list[float]:
    return [float(m) for m in re.findall(pattern, log)]


def test_auto_puts_every_layer_on_a_device_with_room_and_fits_what_it_reports(runs: Runs, gpu_device: str) -> None:
    run = runs.get("F32", "--gpu-layers", "auto")
    done, total = run.offloaded()
    assert done == total == run.data["offloaded"] > 0
    free = _mib(rf"using device {gpu_device} \(.*\) - (\d+) MiB free", run.log)
    used = _mib(rf"{gpu_device} (?:model|KV) buffer size =\s+([\d.]+) MiB", run.log)
    assert free and used, run.log[-3000:]
    assert sum(used) <= free[0]
    assert not run.data["warnings"]


#: A device whose buffers cannot hold the tiny model's largest tensor (the token embeddings):
#: lavapipe has the machine's RAM, so a small device is simulated with Vulkan's own limits.
SMALL_DEVICE = {"GGML_VK_FORCE_MAX_BUFFER_SIZE": "65536", "GGML_VK_FORCE_MAX_ALLOCATION_SIZE": "65536"}


def test_auto_on_a_device_too_small_falls_back_to_the_cpu_with_a_clear_message(runs: Runs) -> None:
    cpu = runs.get("F32", "--kv-f32", cpu=True)
    run = runs.get("F32", "--gpu-layers", "auto", "--kv-f32", env=SMALL_DEVICE)
    assert "error" not in run.data, run.data.get("error")
    assert run.data["offloaded"] == 0 and run.data["devices"] == ["CPU"]
    assert any("running on the CPU" in w for w in run.data["warnings"]), run.data["warnings"]
    assert run.data["ids"] == cpu.data["ids"]
    assert run.emb is not None and cpu.emb is not None
    assert _rel(run.emb, cpu.emb) <= 1e-5  # the projector fell back to the CPU as well


def test_explicit_layers_on_a_device_too_small_is_a_one_line_error(gpu_device: str, tiny_pair: TinyPair,
                                                                   tmp_path: Path) -> None:
    page = tmp_path / "page.png"
    Image.new("RGB", (64, 64), "white").save(page)
    proc = subprocess.run([sys.executable, "-m", "web2code.app", "generate", str(page), "--model",
                           str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj), "--gpu-layers", "999",
                           "--max-tokens", "4"], cwd=REPO, env={**os.environ, **GPU_ENV, **SMALL_DEVICE},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode in (1, 2), proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    assert lines and lines[-1].startswith("error: "), proc.stderr[-2000:]
