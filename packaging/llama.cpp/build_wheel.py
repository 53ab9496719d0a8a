"""Build (or reuse) our patched llama-cpp-python wheel.

llama-cpp-python vendors a llama.cpp whose llava vision graph puts the CLIP
class token after the patches (CONVERSION.md §4). We build the pinned release
from its source distribution with the patch series in ``patches/`` applied and
keep the wheel in a cache keyed by everything that changes the binary (release,
patches, CMAKE_ARGS, Python tag, platform), so reinstalls and CI reruns do not
spend ~7 minutes compiling again.

Usage: ``python build_wheel.py [--print-key] [--tools DIR] [--server]``; prints
the wheel path on the last line of stdout. Errors are one line on stderr, exit
status 2.

With ``--tools DIR`` it also builds llama.cpp's own ``llama-bench`` and
``llama-mtmd-cli`` from the same patched source into DIR (for ``bench/``).

With ``--server`` it builds llama.cpp's ``llama-server`` from the same patched
source instead (only that CMake target, not the wheel), caches it next to the
wheels under the same key, and prints its path: the integration tests serve
our GGUF pair with it (``./dev.sh test`` builds it once per key).

With ``CMAKE_ARGS="-DGGML_VULKAN=on"`` the machine is set up for Vulkan first
(``vulkan.py``: packages, and newer headers where the system's are too old).

Runs on the standard library only: it is called before the project installs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

#: The llama-cpp-python release we build. pyproject.toml pins the same version
#: (a unit test keeps the two equal).
LLAMA_CPP_PYTHON_VERSION = "0.3.36"

HERE = Path(__file__).resolve().parent
PATCH_DIR = HERE / "patches"
#: Paths inside the sdist that the patches (written against llama.cpp's own
#: tree, so they could be sent upstream as they are) apply to.
VENDOR_SUBDIR = Path("vendor") / "llama.cpp"


class BuildError(Exception):
    """A problem the user must fix; printed as one line."""


def cache_dir() -> Path:
    env = os.environ.get("WEB2CODE_WHEEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "web2code" / "wheels"


def patches() -> list[Path]:
    return sorted(PATCH_DIR.glob("*.patch"))


def build_key() -> str:
    h = hashlib.sha256()
    h.update(f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}\n".encode())
    for p in patches():
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(b"CMAKE_ARGS=" + os.environ.get("CMAKE_ARGS", "").encode() + b"\n")
    h.update(f"{sys.implementation.name}{sys.version_info[0]}{sys.version_info[1]}\n".encode())
    h.update(f"{sysconfig.get_platform()} {platform.machine()}\n".encode())
    return h.hexdigest()[:16]


def run(cmd: list[str], cwd: Path | None = None, log: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if log is None:
        return subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, check=False, env=env)
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, cwd=cwd, text=True, stdout=fh, stderr=subprocess.STDOUT, check=False, env=env)


def backend_cmake_args(log: Path | None, *, build: bool = True) -> list[str]:
    """Set the machine up for the GPU backend CMAKE_ARGS asks for; extra CMake arguments it needs.

    Only Vulkan needs anything (``vulkan.py``). The build key stays on the
    user's CMAKE_ARGS: these extras only say where the same inputs are.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("w2c_vulkan", HERE / "vulkan.py")
    assert spec is not None and spec.loader is not None
    vulkan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vulkan)
    try:
        args: list[str] = vulkan.cmake_args(cache_dir() / "vulkan", log, build=build)
    except vulkan.VulkanSetupError as exc:
        raise BuildError(str(exc)) from None
    return args


def fetch_sdist(dest: Path) -> Path:
    """The pinned sdist, from the cache or from the package index."""
    cached = cache_dir() / "sdist" / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if cached.is_file():
        return cached
    tmp = Path(tempfile.mkdtemp(prefix="sdist.", dir=dest))
    # pip prepares the sdist's metadata in an isolated build environment (scikit-build-core).
    proc = run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                "-d", str(tmp), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"])
    found = list(tmp.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        last = [ln for ln in lines if ln.startswith("ERROR")][-1:] or lines[-1:] or ["no output"]
        raise BuildError(
            f"could not download llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source "
            f"(is the network or a package index reachable?): {last[0]}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = cached.with_suffix(".part")
    shutil.copyfile(found[0], part)
    part.replace(cached)
    return cached


def git_apply(args: list[str], cwd: Path) -> bool:
    return run(["git", "apply", *args], cwd=cwd).returncode == 0


def apply_patches(llama_dir: Path) -> list[str]:
    """Apply the series; idempotent; refuses a patch that no longer applies.

    A patch whose reverse applies is already in the tree (upstream merged it,
    or we ran before) and is skipped, so the series becomes a no-op once
    upstream contains the fixes.
    """
    if shutil.which("git") is None:
        raise BuildError("git is needed to apply our llama.cpp patches: "
                         "install git (Debian: apt-get install git)")
    report = []
    for p in patches():
        if git_apply(["--check", "-R", str(p)], llama_dir):
            report.append(f"{p.name}: already present, skipped")
        elif git_apply(["--check", str(p)], llama_dir):
            if not git_apply([str(p)], llama_dir):
                raise BuildError(f"patch {p.name} passed its check but failed to apply")
            report.append(f"{p.name}: applied")
        else:
            raise BuildError(
                f"patch {p.name} no longer applies to llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s "
                f"llama.cpp: refresh it in {PATCH_DIR.name}/ (or drop it if upstream fixed the bug)")
    return report


def check_compiler() -> None:
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    cxx = os.environ.get("CXX") or next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if not cc or not cxx or not shutil.which(cc.split()[0]) or not shutil.which(cxx.split()[0]):
        raise BuildError("a C/C++ compiler is needed to build llama.cpp "
                         "(Debian/Ubuntu: apt-get install build-essential; macOS: xcode-select --install)")


def prepare_source(work: Path, log: Path) -> Path:
    sdist = fetch_sdist(work)
    with tarfile.open(sdist) as tf:
        tf.extractall(work, filter="data")  # no links or absolute paths out of work/
    src = next(work.glob("llama_cpp_python-*/"))
    for line in apply_patches(src / VENDOR_SUBDIR):
        print(line, file=sys.stderr)
        with log.open("a") as fh:
            fh.write(line + "\n")
    return src


def build_wheel(log: Path) -> Path:
    key = build_key()
    target_dir = cache_dir() / key
    existing = sorted(target_dir.glob("llama_cpp_python-*.whl"))
    cache_dir().mkdir(parents=True, exist_ok=True)
    extra = backend_cmake_args(log, build=not existing)
    if existing:
        return existing[0]
    check_compiler()
    env = dict(os.environ, CMAKE_ARGS=" ".join([os.environ.get("CMAKE_ARGS", ""), *extra]).strip())
    with tempfile.TemporaryDirectory(prefix="build.", dir=cache_dir()) as tmp:
        work = Path(tmp)
        src = prepare_source(work, log)
        out = work / "out"
        env_parallel = os.environ.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        print(f"building llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} with {env_parallel} jobs "
              f"(CMAKE_ARGS={os.environ.get('CMAKE_ARGS', '')!r}); log: {log}", file=sys.stderr)
        proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(src)], log=log, env=env)
        wheels = list(out.glob("llama_cpp_python-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise BuildError(f"building llama-cpp-python failed; see the last lines of {log}")
        # Publish atomically: a crash leaves no half wheel in the cache.
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache_dir()))
        shutil.move(str(wheels[0]), staging / wheels[0].name)
        try:
            staging.replace(target_dir)
        except OSError:  # another process published the same key first
            shutil.rmtree(staging, ignore_errors=True)
    return sorted(target_dir.glob("llama_cpp_python-*.whl"))[0]


def _cmake_targets(work: Path, targets: tuple[str, ...], log: Path, *options: str) -> dict[str, Path]:
    """Configure the patched llama.cpp in ``work`` and build only ``targets``; their executables."""
    check_compiler()
    if shutil.which("cmake") is None:
        raise BuildError("cmake is needed to build llama.cpp's tools (Debian: apt-get install cmake)")
    src = prepare_source(work, log) / VENDOR_SUBDIR
    build = work / "build"
    extra = [*os.environ.get("CMAKE_ARGS", "").split(), *backend_cmake_args(log)]
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    if run(["cmake", "-S", str(src), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF", *options, *extra], log=log).returncode != 0:
        raise BuildError(f"configuring llama.cpp failed; see {log}")
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
    if run(["cmake", "--build", str(build), "-j", jobs, "--target", *targets], log=log).returncode != 0:
        raise BuildError(f"building llama.cpp's {', '.join(targets)} failed; see {log}")
    out = {}
    for name in targets:
        exe = build / "bin" / name  # not rglob: tools/<name>/ is a source folder of the same name
        if not exe.is_file():
            raise BuildError(f"the llama.cpp build produced no {exe}")
        out[name] = exe
    return out


def build_tools(dest: Path, log: Path) -> list[Path]:
    """llama-bench and llama-mtmd-cli from the same patched source (bench anchor)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="tools.", dir=dest) as tmp:
        for name, exe in _cmake_targets(Path(tmp), ("llama-bench", "llama-mtmd-cli"), log,
                                        "-DLLAMA_BUILD_SERVER=OFF").items():
            shutil.copy2(exe, dest / name)
            out.append(dest / name)
    return out


#: llama.cpp's OpenAI-compatible server, built from the wheel's patched source.
SERVER = "llama-server"


def server_path() -> Path:
    """Where ``llama-server`` for this build key is cached (it may not be built yet).

    Same key as the wheel: the same release, patches and CMAKE_ARGS give the
    same ggml kernels, so the server computes what our engine computes.
    """
    return cache_dir() / "tools" / build_key() / SERVER


def build_server(log: Path) -> Path:
    """``llama-server`` from the patched source, built once per key (only that target)."""
    target = server_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    print(f"building {SERVER} from llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s patched llama.cpp "
          f"(once per build key); log: {log}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="server.", dir=cache_dir()) as tmp:
        exe = _cmake_targets(Path(tmp), (SERVER,), log, "-DLLAMA_BUILD_SERVER=ON",
                             # no web UI: it would be fetched from the network or built with npm
                             "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                             "-DLLAMA_OPENSSL=OFF")[SERVER]
        # Publish atomically: a crash leaves no half binary under the cached name.
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{SERVER}.", dir=target.parent)
        os.close(fd)
        part = Path(name)
        try:
            shutil.copy2(exe, part)  # with the executable bits
            part.replace(target)
        finally:
            part.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print-key", action="store_true", help="print the cache key and exit")
    ap.add_argument("--tools", type=Path, metavar="DIR",
                    help="also build llama-bench and llama-mtmd-cli into DIR")
    ap.add_argument("--server", action="store_true",
                    help=f"build (or reuse) {SERVER} instead of the wheel and print its path")
    ap.add_argument("--log", type=Path, default=None, help="build log (default: in the cache folder)")
    args = ap.parse_args(argv)
    if args.print_key:
        print(build_key())
        return 0
    log = args.log or cache_dir() / "build.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        if args.tools:
            for exe in build_tools(args.tools, log):
                print(exe)
            return 0
        if args.server:
            print(build_server(log))
            return 0
        print(build_wheel(log))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
