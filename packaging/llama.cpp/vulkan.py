"""What a Vulkan build of llama.cpp (``CMAKE_ARGS="-DGGML_VULKAN=on"``) needs, set up.

llama.cpp's Vulkan backend needs ``glslc`` (shaderc), the Vulkan loader and
headers new enough to have ``vk::LayerSettingEXT`` (VK_EXT_layer_settings,
header 1.3.261+), and the SPIR-V headers with their CMake package. Debian 12
ships 1.3.239, so there we fetch Debian 13's ``libvulkan-dev`` and
``spirv-headers`` with the normal package tools (``apt-get download`` under a
private sources list and state folder, so the system's apt configuration is
not touched), unpack them into the cache folder and give only their headers to
CMake; the loader stays the system's. Debian 13, Ubuntu 24.04+ and the Vulkan
SDK (Windows, macOS) have new enough headers already.

On Debian/Ubuntu the packages come from apt (as root; otherwise the error
names the command): ``glslc``, ``libvulkan-dev`` and ``spirv-headers`` to build,
``libvulkan1`` to run, and ``mesa-vulkan-drivers`` (Mesa's drivers for
AMD/Intel cards, and lavapipe, the software device the CI tests run on).

Called by ``build_wheel.py`` (standard library only, like it). By hand:
``python vulkan.py`` prints the extra CMake arguments, one per line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Where the newer headers come from when the system's are too old.
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: The newest declaration llama.cpp's ggml-vulkan.cpp needs from vulkan.hpp.
NEEDED_DECL = "struct LayerSettingEXT"

BUILD_PKGS = ("glslc", "libvulkan-dev", "spirv-headers")
#: Header-only packages taken from DEBIAN_SUITE when the system's headers are too old.
HEADER_PKGS = ("libvulkan-dev", "spirv-headers")
RUN_PKGS = ("libvulkan1",)
DRIVER_PKG = "mesa-vulkan-drivers"
ICD_DIRS = (Path("/usr/share/vulkan/icd.d"), Path("/etc/vulkan/icd.d"))


class VulkanSetupError(Exception):
    """A problem the user must fix; printed as one line."""


def enabled(cmake_args: str | None = None) -> bool:
    """True when ``CMAKE_ARGS`` turns the Vulkan backend on."""
    args = os.environ.get("CMAKE_ARGS", "") if cmake_args is None else cmake_args
    return re.search(r"-DGGML_VULKAN(?::BOOL)?=(on|1|true|yes|y)\b", args, re.IGNORECASE) is not None


def _log(log: Path | None, line: str) -> None:
    if log is not None:
        with log.open("a") as fh:
            fh.write(line + "\n")


def has_needed_headers(include: Path) -> bool:
    """Whether ``include/vulkan`` has a vulkan.hpp that declares what llama.cpp uses."""
    vk = include / "vulkan"
    if not (vk / "vulkan.hpp").is_file():
        return False
    # 1.3.2xx+ split vulkan.hpp; the struct lives in vulkan_structs.hpp there.
    return any(NEEDED_DECL in p.read_text(errors="replace") for p in vk.glob("vulkan*.hpp"))


def header_version(include: Path) -> str:
    core = include / "vulkan" / "vulkan_core.h"
    try:
        text = core.read_text(errors="replace")
    except OSError:
        return "none"
    patch = re.search(r"#define VK_HEADER_VERSION (\d+)", text)
    full = re.search(r"VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION\(0, (\d+), (\d+)", text)
    if patch and full:
        return f"{full.group(1)}.{full.group(2)}.{patch.group(1)}"
    return "unknown"


def _debian() -> bool:
    return shutil.which("dpkg-query") is not None and shutil.which("apt-get") is not None


def _installed(pkg: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False)
    return "install ok installed" in proc.stdout


def _apt_install(pkgs: list[str], log: Path | None) -> None:
    cmd = "apt-get install " + " ".join(pkgs)
    if os.geteuid() != 0:
        raise VulkanSetupError(f"the Vulkan build needs these Debian packages: {' '.join(pkgs)} (as root: {cmd})")
    print(f"installing Debian packages for Vulkan: {' '.join(pkgs)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs]):
        proc = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
        _log(log, f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise VulkanSetupError(f"{' '.join(args[:2])} failed: {last}")


def ensure_packages(*, build: bool, log: Path | None = None) -> None:
    """Install (as root) or name the Debian packages a Vulkan build needs; elsewhere check the tools."""
    if not _debian():
        if build and shutil.which("glslc") is None:
            raise VulkanSetupError("the Vulkan build needs glslc and the Vulkan headers: install the "
                                   "Vulkan SDK (https://vulkan.lunarg.com) or your distribution's "
                                   "glslc/shaderc and Vulkan headers packages")
        return
    want = [*(BUILD_PKGS if build else ()), *RUN_PKGS]
    if os.geteuid() == 0:
        want.append(DRIVER_PKG)  # root (CI, containers): the drivers, lavapipe included
    missing = [p for p in want if not _installed(p)]
    if missing:
        _apt_install(missing, log)
    if not any(d.is_dir() and any(d.glob("*.json")) for d in ICD_DIRS):
        print(f"warning: no Vulkan driver is installed; llama.cpp will run on the CPU "
              f"(AMD/Intel: apt-get install {DRIVER_PKG}; NVIDIA: the proprietary driver)", file=sys.stderr)


def _apt_options(root: Path) -> list[str]:
    """apt-get options for a private package database under ``root`` (the system's stays untouched)."""
    opts = {
        "Dir::Etc::SourceList": str(root / "sources.list"),
        "Dir::Etc::SourceParts": str(root / "sources.list.d"),
        "Dir::Etc::Preferences": str(root / "preferences"),
        "Dir::Etc::PreferencesParts": str(root / "preferences.d"),
        "Dir::State": str(root / "state"),
        "Dir::State::Lists": str(root / "state" / "lists"),
        "Dir::State::status": str(root / "state" / "status"),  # empty: nothing "installed" here
        "Dir::Cache": str(root / "cache"),
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "APT::Get::List-Cleanup": "0",
    }
    if os.geteuid() == 0:
        # apt drops to the _apt user to download, which cannot write into root's home.
        opts["APT::Sandbox::User"] = "root"
    return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]


def _spirv_config(prefix: Path) -> Path | None:
    found = sorted(prefix.glob("usr/share/cmake/SPIRV-Headers*/SPIRV-HeadersConfig.cmake"))
    return found[0].parent if found else None


def fetch_headers(cache: Path, log: Path | None = None) -> Path:
    """Debian 13's Vulkan and SPIR-V headers, fetched once into ``cache``; the prefix (``usr/``) they are in."""
    dest = cache / f"debian-{DEBIAN_SUITE}"
    if has_needed_headers(dest / "usr" / "include") and _spirv_config(dest) is not None:
        return dest / "usr"
    if not _debian() or shutil.which("dpkg-deb") is None:
        raise VulkanSetupError("the system's Vulkan headers are too old for llama.cpp (need 1.3.261+, "
                               "with vk::LayerSettingEXT): install newer ones or the Vulkan SDK")
    root = cache / "apt"
    for d in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "state" / "status").touch()
    (root / "preferences").touch()
    mirror = os.environ.get("WEB2CODE_DEBIAN_MIRROR", DEBIAN_MIRROR)
    signed = f"[signed-by={DEBIAN_KEYRING}] " if DEBIAN_KEYRING.is_file() else ""
    (root / "sources.list").write_text(f"deb {signed}{mirror} {DEBIAN_SUITE} main\n")
    opts = _apt_options(root)
    print(f"fetching Debian {DEBIAN_SUITE}'s Vulkan headers ({', '.join(HEADER_PKGS)}) into {dest}",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="vulkan.", dir=cache) as tmp:
        work = Path(tmp)
        for args in (["apt-get", *opts, "-qq", "update"], ["apt-get", *opts, "-qq", "download", *HEADER_PKGS]):
            proc = subprocess.run(args, cwd=work, capture_output=True, text=True, check=False)
            _log(log, f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise VulkanSetupError(f"could not fetch Debian {DEBIAN_SUITE}'s {' and '.join(HEADER_PKGS)} "
                                       f"(network or mirror {mirror} unreachable?): {last}")
        unpacked = work / "unpacked"
        debs = []
        for pkg in HEADER_PKGS:
            deb = next(work.glob(f"{pkg}_*.deb"), None)
            if deb is None:
                raise VulkanSetupError(f"apt-get download {pkg} from {DEBIAN_SUITE} produced no package")
            proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise VulkanSetupError(f"could not unpack {deb.name}: {proc.stderr.strip()}")
            debs.append(deb.name)
        if not has_needed_headers(unpacked / "usr" / "include") or _spirv_config(unpacked) is None:
            raise VulkanSetupError(f"{', '.join(debs)} have no usable Vulkan and SPIR-V headers")
        _log(log, f"Vulkan headers: {', '.join(debs)}")
        (unpacked / "SOURCE").write_text("\n".join(debs) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        unpacked.replace(dest)  # one rename: never a half-unpacked folder under the final name
    return dest / "usr"


def system_include() -> Path | None:
    """The Vulkan include folder a plain CMake ``find_package(Vulkan)`` would pick, if any."""
    sdk = os.environ.get("VULKAN_SDK")
    for base in ([Path(sdk) / "include"] if sdk else []) + [Path("/usr/include"), Path("/usr/local/include")]:
        if (base / "vulkan" / "vulkan.hpp").is_file():
            return base
    return None


def cmake_args(cache: Path, log: Path | None = None, *, build: bool = True) -> list[str]:
    """Extra CMake arguments for a Vulkan build ([] when Vulkan is off), after setting the machine up.

    ``WEB2CODE_VULKAN_INCLUDE`` names an include folder to use as it is.
    """
    if not enabled():
        return []
    ensure_packages(build=build, log=log)
    if not build:
        return []
    override = os.environ.get("WEB2CODE_VULKAN_INCLUDE")
    if override:
        return [f"-DVulkan_INCLUDE_DIR={override}"]
    inc = system_include()
    if inc is not None and has_needed_headers(inc):
        _log(log, f"Vulkan headers: the system's {header_version(inc)} in {inc}")
        return []
    if inc is not None:
        print(f"the system's Vulkan headers ({header_version(inc)}) are too old for llama.cpp; "
              f"using Debian {DEBIAN_SUITE}'s", file=sys.stderr)
    prefix = fetch_headers(cache, log)
    _log(log, f"Vulkan headers: {header_version(prefix / 'include')} in {prefix}")
    return [f"-DVulkan_INCLUDE_DIR={prefix / 'include'}", f"-DSPIRV-Headers_DIR={_spirv_config(prefix.parent)}"]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="folder for the fetched headers")
    args = ap.parse_args(argv)
    try:
        for a in cmake_args(args.cache):
            print(a)
    except VulkanSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
