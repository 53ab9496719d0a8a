"""The project's packaging facts stay consistent."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "llama.cpp" / "build_wheel.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_wheel", BUILD)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_llama_cpp_python_pin_matches_the_patched_build() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("llama-cpp-python"))
    assert pin == f"llama-cpp-python=={_build_module().LLAMA_CPP_PYTHON_VERSION}"


def test_installed_llama_cpp_python_is_the_pinned_release() -> None:
    import llama_cpp

    assert llama_cpp.__version__ == _build_module().LLAMA_CPP_PYTHON_VERSION


def test_installed_package_adds_no_generic_top_level_names(tmp_path: Path) -> None:
    # Build the real wheel and look at what it would put into site-packages.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("web2code_desktop-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"web2code"}
    assert "web2code/app/engine/clsprobe.py" in names
    assert "web2code/converters/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        scripts = zf.read(entry_points).decode()
    assert "web2code = web2code.app.cli:main" in scripts
    assert "web2code-convert = web2code.converters.cli:main" in scripts


def test_version_is_defined_once_and_reported() -> None:
    from web2code.app import __version__

    out = subprocess.run([sys.executable, "-m", "web2code.app", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"web2code {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_patch_series_applies_and_is_idempotent(tmp_path: Path) -> None:
    mod = _build_module()
    target = tmp_path / "tools" / "mtmd" / "models"
    target.mkdir(parents=True)
    original = (
        "    // concat class_embeddings and patch_embeddings\n"
        "    if (model.class_embedding) {\n"
        "        inp = ggml_concat(ctx0, inp, model.class_embedding, 1);\n"
        "    }\n")
    # Rebuild the patched file's context from the patch itself so the test does
    # not depend on the sdist: the '-' and ' ' lines are the upstream text.
    patch = next(iter(mod.patches())).read_text()
    hunk = patch[patch.index("@@"):]
    old = "".join(ln[1:] + "\n" for ln in hunk.splitlines()[1:] if ln[:1] in (" ", "-"))
    assert original.splitlines()[-2] in old
    (target / "llava.cpp").write_text(old)
    assert mod.apply_patches(tmp_path) == [f"{p.name}: applied" for p in mod.patches()]
    patched = (target / "llava.cpp").read_text()
    assert "ggml_concat(ctx0, model.class_embedding, inp, 1)" in patched
    # Second run: already present (as once upstream ships the fix) -> no-op.
    assert mod.apply_patches(tmp_path) == [f"{p.name}: already present, skipped" for p in mod.patches()]
    assert (target / "llava.cpp").read_text() == patched


def test_patch_that_no_longer_applies_refuses_to_build(tmp_path: Path) -> None:
    mod = _build_module()
    target = tmp_path / "tools" / "mtmd" / "models"
    target.mkdir(parents=True)
    (target / "llava.cpp").write_text("// upstream rewrote this file\n")
    with pytest.raises(mod.BuildError, match="no longer applies"):
        mod.apply_patches(tmp_path)


def test_every_source_package_is_listed_for_installation() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    roots = {"app": "web2code.app", "converters": "web2code.converters", "resources": "web2code.resources"}
    found = set()
    for folder, name in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed
