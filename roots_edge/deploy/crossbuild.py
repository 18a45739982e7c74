"""llama.cpp for devices that have no llama-cpp-python wheel: cross-compiled here, packed as a wheel.

llama-cpp-python ships only an sdist, so `pip install` on a Raspberry Pi compiles llama.cpp there (tens of minutes,
a compiler and CMake on the device). Instead we build its shared libraries on this machine with the aarch64
cross-compiler, from the llama.cpp sources the sdist vendors (so the C library and the Python bindings are the same
release), tuned for the device's CPU, and pack them with the sdist's Python package into an ordinary wheel. pip
installs that wheel offline and checks its hash like any other; `llama_cpp` finds the libraries in its own `lib/`.

Builds are cached by (llama-cpp-python version, target architecture), so only the first bundle pays (~6 min).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from roots_edge.core.errors import RootsEdgeError
from roots_edge.core.paths import atomic_dir, atomic_file, home

# Debian's cross toolchain (gcc 12, glibc 2.36: the same as Debian / Raspberry Pi OS bookworm on the device).
CROSS = {"aarch64": ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++")}
CROSS_PACKAGES = "gcc-aarch64-linux-gnu g++-aarch64-linux-gnu cmake"


class CrossBuildError(RootsEdgeError):
    """llama.cpp could not be built for the requested device."""


def cache_root() -> Path:
    return home() / "llama-cpp"


def sdist(version: str) -> Path:
    """llama-cpp-python's source distribution (from the package registry, cached)."""
    root = cache_root()
    path = root / f"llama_cpp_python-{version}.tar.gz"
    if path.is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-sdist-") as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                               f"llama-cpp-python=={version}", "-d", tmp], capture_output=True, text=True)
        found = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not found:
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no sdist"]
            raise CrossBuildError(f"could not download the llama-cpp-python {version} sdist from the package "
                                  f"registry: {reason[0]}")
        os.replace(found[0], path)
    return path


def _unpacked(version: str, dest: Path | None = None) -> Path:
    """The sdist unpacked (cached; or into `dest`: llama-cpp-python's CMake install also writes the libraries
    into its own source tree, so every build gets a fresh copy)."""
    src = dest or cache_root() / f"llama_cpp_python-{version}"
    if (src / "PKG-INFO").is_file():
        return src
    with atomic_dir(src) as tmp:
        with tarfile.open(sdist(version)) as tar:
            tar.extractall(tmp, filter="data")
        inner = Path(tmp) / f"llama_cpp_python-{version}"
        for child in inner.iterdir():
            os.replace(child, Path(tmp) / child.name)
        inner.rmdir()
    return src


def _toolchain(machine: str) -> tuple[str, str]:
    cc, cxx = CROSS[machine]
    missing = [tool for tool in (cc, cxx, "cmake") if shutil.which(tool) is None]
    if missing:
        raise CrossBuildError(f"building llama.cpp for {machine} needs {', '.join(missing)}; install them with "
                              f"`apt-get install {CROSS_PACKAGES}` (Debian/Ubuntu), or bundle without GGUF artifacts")
    return cc, cxx


def build_libraries(version: str, machine: str, arch: str, *, jobs: int | None = None, log=print) -> Path:
    """Shared libraries of llama.cpp (ggml, llama) for `machine` with `-march=<arch>`; returns their folder (cached)."""
    if machine not in CROSS:
        raise CrossBuildError(f"no cross-compiler for {machine} here; llama.cpp can be cross-built for: "
                              f"{', '.join(CROSS)}")
    out = cache_root() / f"lib-{version}-{machine}-{arch.replace('+', '_')}"
    if (out / "libllama.so").is_file():
        return out
    cc, cxx = _toolchain(machine)
    build = cache_root() / f"build-{version}-{machine}-{arch.replace('+', '_')}"
    shutil.rmtree(build, ignore_errors=True)
    src = _unpacked(version, build / "src")
    # The same options llama-cpp-python's own CMakeLists sets, without the multimodal library (imported lazily, only
    # by vision chat handlers) and without OpenMP (ggml's own thread pool; one system library fewer on the device).
    configure = ["cmake", "-S", str(src), "-B", str(build / "cmake"), "-DCMAKE_BUILD_TYPE=Release",
                 "-DCMAKE_SYSTEM_NAME=Linux", f"-DCMAKE_SYSTEM_PROCESSOR={machine}",
                 f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}",
                 f"-DCMAKE_INSTALL_PREFIX={build / 'install'}", f"-DSKBUILD_PLATLIB_DIR={build / 'install'}",
                 "-DLLAVA_BUILD=OFF", "-DGGML_NATIVE=OFF", f"-DGGML_CPU_ARM_ARCH={arch}", "-DGGML_OPENMP=OFF",
                 "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
                 "-DLLAMA_BUILD_SERVER=OFF"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    steps = [configure, ["cmake", "--build", str(build / "cmake"), "-j", str(jobs or os.cpu_count() or 2)],
             ["cmake", "--install", str(build / "cmake")]]
    log(f"cross-compiling llama.cpp {version} for {machine} ({arch}); once, cached in {out}")
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise CrossBuildError(f"llama.cpp cross-build failed at `{' '.join(cmd[:3])}`:\n{tail}")
    collect_libraries(build / "install" / "llama_cpp" / "lib", out)
    shutil.rmtree(build, ignore_errors=True)
    return out


def collect_libraries(libs: Path, out: Path) -> None:
    """Copy the shared libraries of a llama.cpp install to `out` under the names they are loaded by: `libX.so`
    (what llama_cpp opens) and the SONAME `libX.so.0` (what the other libraries link to)."""
    links = [p for p in libs.glob("*.so*") if p.is_symlink()]
    real = [p for p in libs.glob("*.so*") if not p.is_symlink()]
    if not any(p.name.startswith("libllama.so") for p in real):
        raise CrossBuildError(f"the llama.cpp build installed no libllama.so in {libs}")
    with atomic_dir(out) as tmp:
        for lib in real:
            for link in links:
                if link.resolve() == lib.resolve():
                    shutil.copy2(lib, Path(tmp) / link.name)


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def build_wheel(version: str, machine: str, arch: str, *, log=print) -> Path:
    """A `llama_cpp_python-<version>-py3-none-linux_<machine>.whl`: the sdist's Python package with the cross-built
    libraries in `llama_cpp/lib/` (cached beside the libraries)."""
    libs = build_libraries(version, machine, arch, log=log)
    src = _unpacked(version)
    files = [(p.relative_to(src).as_posix(), p.read_bytes()) for p in sorted((src / "llama_cpp").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.parent.name != "lib"]
    files += [(f"llama_cpp/lib/{lib.name}", lib.read_bytes()) for lib in sorted(libs.iterdir())]
    dest = cache_root() / "wheels" / f"{machine}-{arch.replace('+', '_')}"
    return _pack_wheel(dest, version, f"py3-none-linux_{machine}", files, (src / "PKG-INFO").read_bytes(),
                       f"cross-built for {machine} {arch}")


def wheel_from_installed(version: str) -> Path:
    """This machine's own llama-cpp-python (x86-64 Linux: built at the AVX2 level by `make setup`) as a wheel."""
    import llama_cpp

    dist = importlib.metadata.distribution("llama-cpp-python")
    if dist.version != version:
        raise CrossBuildError(f"llama-cpp-python {dist.version} is installed, {version} was asked for")
    pkg = Path(llama_cpp.__file__).parent
    files = [(f"llama_cpp/{p.relative_to(pkg).as_posix()}", p.read_bytes()) for p in sorted(pkg.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts]
    machine = os.uname().machine
    return _pack_wheel(cache_root() / "wheels" / f"{machine}-installed", version, f"py3-none-linux_{machine}", files,
                       dist.read_text("METADATA").encode(), "packed from this machine's install")


def _pack_wheel(dest: Path, version: str, tag: str, files: list[tuple[str, bytes]], meta: bytes,
                how: str) -> Path:
    dist = f"llama_cpp_python-{version}"
    info = f"{dist}.dist-info"
    files = files + [(f"{info}/METADATA", meta),
                     (f"{info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: roots-edge ({how})\n"
                                        f"Root-Is-Purelib: false\nTag: {tag}\n").encode())]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files:
        writer.writerow(_record_line(name, data))
    writer.writerow([f"{info}/RECORD", "", ""])
    path = dest / f"{dist}-{tag}.whl"
    with atomic_file(path) as tmp:
        # Fixed timestamps: the same inputs give the same wheel, so its hash in a bundle's lock stays put.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files + [(f"{info}/RECORD", record.getvalue().encode())]:
                entry = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                entry.external_attr = (0o755 if ".so" in name else 0o644) << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(entry, data)
    return path
