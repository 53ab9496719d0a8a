"""``web2code-convert``: the published checkpoint -> a verified GGUF pair that stock llama.cpp runs.

Exit status: 0 done, 1 ``--verify`` found the output beyond tolerance, 2 a
problem with the input or the environment (one ``error: ...`` line on stderr,
nothing written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .errors import ConvertError
from .keys import DEFAULT_REPO
from .quantize import VALID_TYPES


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
    p.add_argument("--vision-tower", metavar="SRC",
                   help="CLIP tower folder or repo id when the checkpoint lacks it "
                        "(default: the repo named by mm_vision_tower)")
    p.add_argument("--name", help="file-name stem of the outputs (default: the source's name)")
    p.add_argument("--verify", action="store_true",
                   help="compare the converted F32/F16 model with a float64 reference of the original")
    p.add_argument("--force", action="store_true", help="replace outputs already in OUTDIR")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--threads", type=int, default=0, help="threads for llama.cpp (default: all cores)")
    return p


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same clean-up path as Ctrl-C
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # imported late: `--help` and argument errors stay instant (torch takes seconds to load)
    from .convert import ConvertOptions, convert

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = convert(ConvertOptions(
            outdir=args.outdir, source=args.source, quants=args.quant or ["Q4_K_M"],
            vision_tower=args.vision_tower, name=args.name, force=args.force, verify=args.verify,
            threads=args.threads, log=log,
        ))
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

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
