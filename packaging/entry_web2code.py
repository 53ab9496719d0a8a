"""Entry point of the bundle's ``web2code`` executable (PyInstaller script; not part of the package).

Besides the ordinary command line (``web2code.app.cli:main``) the frozen
executable has to stand in for ``python -m ...`` wherever the application
starts a child process with ``sys.executable``:

* ``--engine-worker``: the engine's worker process (``worker_command()`` in
  app/engine/worker.py starts ``[sys.executable, "--engine-worker"]`` when frozen);
* ``-m web2code.app.engine.worker`` and ``-m web2code.converters``: the same
  children as started from a source checkout (the model manager runs the
  converter as ``sys.executable -m web2code.converters ...``);
* ``--convert ...``: the converter, also reachable as the sibling ``web2code-convert``;
* ``--self-test ...``: handled here until the CLI has the flag, then passed to the CLI.

A process started under the name ``web2code-convert`` (a copy or link of this
executable) runs the converter, so one executable can serve both.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _convert(argv: list[str]) -> int:
    from web2code.converters.cli import main

    return int(main(argv) or 0)


def _cli_knows(flag: str) -> bool:
    from web2code.app.cli import build_parser

    return any(flag in a.option_strings for a in build_parser()._actions)


def dispatch(argv: list[str]) -> int:
    if Path(sys.argv[0]).name.startswith("web2code-convert"):
        return _convert(argv)
    head = argv[:1]
    if head == ["--engine-worker"] or argv[:2] == ["-m", "web2code.app.engine.worker"]:
        from web2code.app.engine.worker import main

        return int(main() or 0)
    if argv[:2] == ["-m", "web2code.converters"] or argv[:2] == ["-m", "web2code.converters.cli"]:
        return _convert(argv[2:])
    if head == ["--convert"]:
        return _convert(argv[1:])
    if argv[:2] in (["-m", "web2code.app"], ["-m", "web2code.app.cli"]):
        argv = argv[2:]
    if head == ["-m"]:
        print(f"error: this executable cannot run module {argv[1] if len(argv) > 1 else ''!r}", file=sys.stderr)
        return 2
    if head == ["--self-test"] and not _cli_knows("--self-test"):
        from web2code.app.selftest import main as self_test

        return self_test(argv[1:])
    from web2code.app.cli import main

    return int(main(argv) or 0)


if __name__ == "__main__":
    sys.exit(dispatch(sys.argv[1:]))
