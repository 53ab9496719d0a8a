"""The offload switch: the same engine, CLI and worker tests on the CPU or offloaded to a GPU.

By default the tests run everything on the CPU (``n_gpu_layers=0``). With
``WEB2CODE_TEST_OFFLOAD=1`` they put every layer and the CLIP projector on the
GPU instead; CI does that with the Vulkan build on Mesa's software device
(lavapipe, selected with ``GGML_VK_VISIBLE_DEVICES=0``). Tests take their
options from :data:`OFFLOAD` (``EngineOptions(**OFFLOAD, ...)``).

Registered as a plugin in ``tests/conftest.py``: with the switch on, a session
whose llama.cpp has no GPU device stops at once, instead of passing silently
on the CPU.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

#: Every layer: llama.cpp clamps the count to the model's layers (+ the output layer).
ALL_LAYERS = 999

ENABLED = os.environ.get("WEB2CODE_TEST_OFFLOAD", "") not in ("", "0")

#: EngineOptions fields for the test run: on the CPU, or everything offloaded.
OFFLOAD: dict[str, Any] = {"n_gpu_layers": ALL_LAYERS, "vision_gpu": True} if ENABLED else {"n_gpu_layers": 0}


def gpu_devices() -> list[str]:
    """The GPU-type devices this llama.cpp build sees (``Vulkan0``, ``CUDA0``, ...), in this process."""
    import ctypes

    import llama_cpp

    lib: Any = llama_cpp.llama_cpp._lib  # ggml's device registry is exported by the same library
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    from web2code.app.engine.llama import log

    log.init()  # loads the backends
    names = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if lib.ggml_backend_dev_type(dev) in (1, 2):  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
            names.append(lib.ggml_backend_dev_name(dev).decode())
    return names


def pytest_sessionstart(session: pytest.Session) -> None:
    if ENABLED and not gpu_devices():
        raise pytest.UsageError(
            "WEB2CODE_TEST_OFFLOAD=1 but this llama.cpp sees no GPU device: install a GPU build "
            "(CMAKE_ARGS=-DGGML_VULKAN=on) and, for Mesa's software device, set GGML_VK_VISIBLE_DEVICES=0")
