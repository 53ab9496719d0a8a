"""Memory read bandwidth, and the decode ceiling it implies.

Decoding one token reads every weight once (the token embedding only one row)
plus the KV cache of the positions so far, so on a CPU

    decode ceiling (tokens/s) = measured read bandwidth / bytes read per token.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: reductions numpy runs without the GIL; the fastest one is the bandwidth (float sums are compute-bound here)
KERNELS = {
    "int64 max": lambda x: x.view(np.int64).max(),
    "uint8 max": lambda x: x.max(),
    "float64 sum": lambda x: x.view(np.float64).sum(),
}


def read_bandwidth(n_bytes: int = 1 << 30, threads: int = 2, repeats: int = 7) -> dict[str, Any]:
    """Bytes/s of reading a large array (far larger than the caches), split over 1 and ``threads`` threads.

    For each reduction kernel and thread count: the median and the best of ``repeats`` passes;
    ``bytes_per_s`` is the highest median (the memory, not the arithmetic, is then the limit).
    """
    a = np.ones(n_bytes, dtype=np.uint8)
    a.max()  # fault the pages in

    def one_pass(kernel: Any, n_threads: int) -> float:
        parts = np.array_split(a, n_threads)
        barrier = threading.Barrier(n_threads + 1)

        def work(x: np.ndarray) -> None:
            barrier.wait()
            kernel(x)

        ts = [threading.Thread(target=work, args=(p,)) for p in parts]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        return a.nbytes / (time.perf_counter() - t0)

    out: dict[str, Any] = {"array_bytes": a.nbytes, "method": "numpy reductions over a 1 GiB array", "kernels": {}}
    for name, kernel in KERNELS.items():
        for n in sorted({1, max(1, threads)}):
            rates = sorted(one_pass(kernel, n) for _ in range(repeats))
            out["kernels"][f"{name}, {n} thread{'s' if n > 1 else ''}"] = {
                "median_bytes_per_s": rates[len(rates) // 2], "best_bytes_per_s": rates[-1]}
    out["bytes_per_s"] = max(v["median_bytes_per_s"] for v in out["kernels"].values())
    return out


def weight_bytes_per_token(model: Path) -> dict[str, Any]:
    """Bytes of the model's tensors one decode step reads (all but the embedding table, plus one row of it)."""
    from gguf import GGUFReader

    r = GGUFReader(str(model))
    total = 0
    embd = 0
    embd_row = 0
    for t in r.tensors:
        nb = int(t.n_bytes)
        total += nb
        if t.name == "token_embd.weight":
            embd = nb
            n_rows = int(t.shape[-1]) if len(t.shape) > 1 else 1
            embd_row = nb // max(1, n_rows)
    n_layer = n_embd = 0
    for f in r.fields.values():
        if f.name.endswith(".block_count"):
            n_layer = int(f.parts[f.data[0]][0])
        elif f.name.endswith(".embedding_length"):
            n_embd = int(f.parts[f.data[0]][0])
    return {"file_tensor_bytes": total, "token_embd_bytes": embd,
            "weights_read_per_token": total - embd + embd_row, "n_layer": n_layer, "n_embd": n_embd}


def kv_bytes_per_token(n_layer: int, n_embd_kv: int, depth: int, bytes_per_value: int = 2) -> int:
    """K and V of ``depth`` positions read by one decode step (F16 cache)."""
    return 2 * n_layer * n_embd_kv * depth * bytes_per_value


def ceiling(bytes_per_s: float, bytes_per_token: float) -> float:
    return bytes_per_s / bytes_per_token if bytes_per_token > 0 else float("nan")
