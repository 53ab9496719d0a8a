"""Only the adapter (app/engine/llama/) calls llama-cpp-python: no llama.cpp call sequence lives anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADAPTER = REPO / "app" / "engine" / "llama"
#: Not our code: llama.cpp's own source that bench.anchors and bench/gpu unpack to build its tools.
THIRD_PARTY = (REPO / "bench" / "tools", REPO / "bench" / "cache")


def _llama_imports(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names
                  if n == "llama_cpp" or n.startswith("llama_cpp.")]
    return found


def test_nothing_outside_the_adapter_imports_llama_cpp() -> None:
    offenders = []
    for folder in ("app", "converters", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if ADAPTER in path.parents or any(t in path.parents for t in THIRD_PARTY):
                continue
            offenders += _llama_imports(path)
    assert offenders == [], "call llama.cpp through web2code.app.engine.llama:\n" + "\n".join(offenders)


def test_the_check_sees_an_import_where_there_is_one(tmp_path: Path) -> None:
    bad = tmp_path / "module.py"
    bad.write_text("def f():\n    from llama_cpp import mtmd_cpp\n    import llama_cpp.llama_cpp\n", encoding="utf-8")
    assert len(_llama_imports(bad, tmp_path)) == 2
