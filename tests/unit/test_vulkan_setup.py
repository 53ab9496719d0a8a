"""The Vulkan build's set-up (packaging/llama.cpp/vulkan.py): what it decides, without network or root."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"w2c_{name}", REPO / "packaging" / "llama.cpp" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("args", "on"), [
    ("-DGGML_VULKAN=on", True), ("-DGGML_VULKAN=ON -DGGML_NATIVE=OFF", True), ("-DGGML_VULKAN:BOOL=1", True),
    ("", False), ("-DGGML_VULKAN=off", False), ("-DGGML_CUDA=on", False), ("-DGGML_VULKAN_DEBUG=on", False)])
def test_vulkan_is_on_only_when_cmake_args_say_so(args: str, on: bool) -> None:
    assert _load("vulkan").enabled(args) is on


def _headers(root: Path, decl: str, version: str = "239") -> Path:
    vk = root / "vulkan"
    vk.mkdir(parents=True)
    (vk / "vulkan.hpp").write_text('#include "vulkan_structs.hpp"\n')
    (vk / "vulkan_structs.hpp").write_text(f"namespace vk {{ {decl} {{}}; }}\n")
    (vk / "vulkan_core.h").write_text(f"#define VK_HEADER_VERSION {version}\n"
                                      "#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, 1, 3, "
                                      "VK_HEADER_VERSION)\n")
    return root


def test_headers_without_layer_settings_are_too_old(tmp_path: Path) -> None:
    vulkan = _load("vulkan")
    old = _headers(tmp_path / "old", "struct PhysicalDeviceFeatures")
    new = _headers(tmp_path / "new", "struct LayerSettingEXT", "309")
    assert not vulkan.has_needed_headers(old)
    assert vulkan.has_needed_headers(new)
    assert vulkan.header_version(old) == "1.3.239"
    assert not vulkan.has_needed_headers(tmp_path / "none")


def test_cpu_build_needs_no_vulkan_set_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CMAKE_ARGS", "")
    assert _load("vulkan").cmake_args(tmp_path) == []
    assert not list(tmp_path.iterdir())  # nothing fetched, nothing installed


def test_the_private_apt_database_stays_in_its_folder(tmp_path: Path) -> None:
    opts = _load("vulkan")._apt_options(tmp_path)
    values = dict(o.split("=", 1) for o in opts[1::2])
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::State::status",
                "Dir::Cache", "Dir::Etc::Preferences"):
        assert values[key].startswith(str(tmp_path)), key


def test_the_vulkan_wheel_is_cached_apart_from_the_cpu_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    build = _load("build_wheel")
    monkeypatch.setenv("CMAKE_ARGS", "")
    cpu = build.build_key()
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_VULKAN=on")
    assert build.build_key() != cpu


def test_device_names_with_parentheses_are_read_whole() -> None:
    from web2code.app.engine.llama.model import _parse_devices

    lines = ["llama_prepare_model_devices: using device Vulkan0 (llvmpipe (LLVM 15.0.6, 256 bits)) (unknown id) "
             "- 2048 MiB free",
             "llama_prepare_model_devices: using device CUDA0 (NVIDIA H200) (0000:01:00.0) - 140000 MiB free",
             "load_tensors: offloaded 3/3 layers to GPU"]
    assert _parse_devices(lines) == (("Vulkan0 (llvmpipe (LLVM 15.0.6, 256 bits))", "CUDA0 (NVIDIA H200)"), 3)
    assert _parse_devices([]) == (("CPU",), 0)
