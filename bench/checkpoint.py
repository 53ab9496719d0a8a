"""The random checkpoint of a size, generated once into bench/cache/<size>/checkpoint and reused.

``python -m bench.checkpoint --size 7b`` writes it (in a child of bench.run, so
torch's memory goes away with it). A ``.complete.json`` marker records the
configuration; a folder without it (an interrupted run) is regenerated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .sizes import SIZES, Size

MARKER = ".complete.json"


def marker_data(size: Size) -> dict[str, Any]:
    return {"size": size.name, "config": size.config, "n_shards": size.n_shards,
            "max_shard_bytes": size.max_shard_bytes, "dtype": "bfloat16", "fmt": "bin", "seed": 0}


def is_complete(dest: Path, size: Size) -> bool:
    try:
        return bool(json.loads((dest / MARKER).read_text()) == json.loads(json.dumps(marker_data(size))))
    except (OSError, ValueError):
        return False


def input_bytes(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.iterdir() if p.is_file() and p.name != MARKER)


def generate(dest: Path, size: Size) -> float:
    """Write the checkpoint (replacing an incomplete one); returns the seconds it took."""
    import torch

    from web2code.converters.synthetic import write_checkpoint

    if dest.exists():
        shutil.rmtree(dest)
    t0 = time.perf_counter()
    write_checkpoint(dest, **size.checkpoint_config(), dtype=torch.bfloat16, fmt="bin", seed=0,
                     n_shards=size.n_shards, max_shard_bytes=size.max_shard_bytes)
    took = time.perf_counter() - t0
    (dest / MARKER).write_text(json.dumps(marker_data(size), indent=2) + "\n")
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--dest", type=Path, required=True)
    args = ap.parse_args(argv)
    took = generate(args.dest, SIZES[args.size])
    print(json.dumps({"seconds": took, "bytes": input_bytes(args.dest)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
