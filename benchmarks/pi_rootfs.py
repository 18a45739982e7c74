"""An emulated Raspberry Pi: an arm64 Debian bookworm root filesystem run under qemu-user (`make pi-check`).

Raspberry Pi OS (64-bit) is Debian bookworm for arm64: the same glibc (2.36) and Python (3.11). The root filesystem
is the minimal Debian one plus `python3`, nothing else (no pip, no venv module, no compiler, no libgomp): a bundle
that installs here carries everything it needs. Built once with debootstrap (~6 min under emulation, needs the
Debian mirror), cached as a zstd tarball; every check unpacks a fresh copy (~5 s), so no state leaks between runs.

Needs root (chroot, mounts) and Debian's `qemu-user-static debootstrap zstd`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

MIRROR = os.environ.get("ROOTS_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
QEMU = "/usr/bin/qemu-aarch64-static"
BINFMT = Path("/proc/sys/fs/binfmt_misc")

# What /proc/cpuinfo says on a Pi (one core shown per processor line). ONNX Runtime reads it at import: under
# qemu-user the chroot would otherwise see the host's x86 cpuinfo, and onnxruntime crashes on it.
CPUINFO = {
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                            "dcpop asimddp"),
}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_binfmt() -> str:
    """The path the kernel runs aarch64 binaries with (registering qemu's handler if the kernel has none)."""
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        if not (BINFMT / "register").exists():
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    for line in entry.read_text().splitlines():
        if line.startswith("interpreter "):
            return line.split(" ", 1)[1].strip()
    raise RuntimeError(f"{entry} names no interpreter")


def install_qemu(root: Path, interpreter: str) -> None:
    """Put the static qemu where the kernel looks for it inside the chroot (binfmt without the F flag)."""
    for path in {"/usr/bin/qemu-aarch64-static", interpreter}:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        shutil.copy2(QEMU, dest)


def build_rootfs(tarball: Path, log=print) -> Path:
    """debootstrap an arm64 bookworm with python3 and pack it as `tarball` (once)."""
    if tarball.is_file():
        return tarball
    interpreter = ensure_binfmt()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".tmp-rootfs-") as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap {SUITE} arm64 from {MIRROR} (first stage)")
        run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3", SUITE, str(root),
             MIRROR], stdout=subprocess.DEVNULL)
        install_qemu(root, interpreter)
        log("debootstrap second stage under emulation (~6 min)")
        run(["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"], stdout=subprocess.DEVNULL)
        run(["chroot", str(root), "apt-get", "clean"])
        partial = Path(tmp) / "rootfs.tar.zst"
        run(["tar", "--zstd", "-cf", str(partial), "-C", str(root), "."])
        os.replace(partial, tarball)
    log(f"root filesystem {tarball} ({tarball.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    return tarball


@contextlib.contextmanager
def device(tarball: Path, cpu: str, workdir: Path):
    """A fresh copy of the root filesystem with /proc, /dev, /sys and a Pi's cpuinfo mounted; yields its path."""
    interpreter = ensure_binfmt()
    root = workdir / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    run(["tar", "--zstd", "-xf", str(tarball), "-C", str(root)])
    install_qemu(root, interpreter)
    part, features = CPUINFO[cpu]
    fake = workdir / "cpuinfo"
    fake.write_text("".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
                            f"CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: {part}\nCPU revision\t: 1\n\n"
                            for i in range(4)))
    mounts = []
    try:
        for args, target in ((["-t", "proc", "proc"], "proc"), (["--rbind", "/dev"], "dev"),
                             (["--rbind", "/sys"], "sys"), (["--bind", str(fake)], "proc/cpuinfo")):
            run(["mount", *args, str(root / target)])
            mounts.append(root / target)
            if target == "dev":
                run(["mount", "--make-rslave", str(root / target)])
        yield root
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-R", "-l", str(target)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def in_device(root: Path, cpu: str, script: str, *, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run a shell script inside the emulated device (a clean environment: no proxy, no pip configuration)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": cpu}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return subprocess.run([chroot, str(root), "/bin/sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout)


if __name__ == "__main__":
    from roots_edge.core.paths import home

    build_rootfs(home() / "pi" / f"rootfs-{SUITE}-arm64.tar.zst")
