"""What machine a benchmark ran on: CPU model and flags, cores, library versions, memory bandwidth."""
from __future__ import annotations

import functools
import os
import platform
import time

import numpy as np

from roots_edge.core.versions import versions

FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
         "amx_int8": "AMX-INT8", "f16c": "F16C", "fma": "FMA", "asimd": "NEON", "neon": "NEON",
         "asimddp": "NEON-DOTPROD", "sve": "SVE", "i8mm": "I8MM"}
# numpy's own run-time CPU detection (CPUID on x86, HWCAP on ARM) -> the names above
NUMPY_FLAGS = {"AVX2": "AVX2", "AVX512F": "AVX-512", "AVX512VNNI": "AVX512-VNNI", "F16C": "F16C", "FMA3": "FMA",
               "ASIMD": "NEON", "ASIMDDP": "NEON-DOTPROD", "SVE": "SVE"}


def cpuid_flags() -> set[str] | None:
    """The flags of `NUMPY_FLAGS` this process's CPU reports, as numpy detected them; None without numpy's table."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features  # numpy < 2
        except ImportError:
            return None
    return {name for key, name in NUMPY_FLAGS.items() if features.get(key)}


@functools.lru_cache(maxsize=1)
def _cpu_model_and_flags() -> tuple[str, tuple[str, ...]]:
    """Read once per process: every ONNX session's options depend on it (`runtimes.onnxruntime`)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags |= set(value.split())
    except OSError:
        pass
    named = {FLAGS[f] for f in flags if f in FLAGS}
    seen = cpuid_flags()
    if seen is not None:
        # /proc/cpuinfo describes the host; CPUID describes what this process (and ONNX Runtime's kernel
        # dispatch) sees. Where they disagree (an emulator, a masked VM), CPUID wins.
        named = named | seen if named & set(NUMPY_FLAGS.values()) == seen else seen
    return model, tuple(sorted(named))


def cpu_info() -> dict:
    model, flags = _cpu_model_and_flags()
    return {"model": model, "arch": platform.machine(), "flags": list(flags), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


# What ONNX Runtime's int8 GEMM kernels (MLAS) add u8 x s8 products with, by CPU class. Only one class
# saturates: x86 with AVX2 or AVX-512 but no VNNI sums each pair of products in int16 (vpmaddubsw), so
# 2 x 255 x 127 overflows; VNNI sums four products in int32; ARM NEON widens to 16 bits before adding.
INT8_KERNELS = {
    "x86-vnni": "u8 x s8 dot products summed in int32 (VNNI)",
    "x86-saturating": "u8 x s8 product pairs summed in saturating int16 (vpmaddubsw, no VNNI)",
    "x86-sse": "products widened to 16 bits before summing (no AVX2)",
    "arm64": "NEON, products widened before summing (UDOT/SDOT where present)",
    "other": "a CPU roots-edge has no int8 kernel facts for",
}


def int8_kernel_class(cpu: dict | None = None) -> str:
    """The key of `INT8_KERNELS` that describes `cpu` (default: this machine's `cpu_info()`)."""
    cpu = cpu or cpu_info()
    flags, arch = set(cpu.get("flags", ())), str(cpu.get("arch", "")).lower()
    if arch in ("x86_64", "amd64", "i386", "i686"):
        if flags & {"AVX512-VNNI", "AVX-VNNI"}:
            return "x86-vnni"
        return "x86-saturating" if flags & {"AVX2", "AVX-512"} else "x86-sse"
    return "arm64" if arch in ("aarch64", "arm64") else "other"


def verification_cpu() -> dict:
    """What a manifest records about the CPU an artifact was verified on."""
    cpu = cpu_info()
    return {"model": cpu["model"], "arch": cpu["arch"], "flags": cpu["flags"], "int8_kernels": int8_kernel_class(cpu)}


@functools.lru_cache(maxsize=None)
def memory_bandwidth(mb: int = 256, repeats: int = 5) -> float:
    """Best-of-`repeats` copy bandwidth in GB/s (bytes read + written), a large array on one thread."""
    src = np.ones(mb * (1 << 20) // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return round(2 * src.nbytes / best / 1e9, 2)


def describe(threads: int | None = None) -> dict:
    return {"cpu": cpu_info(), "threads": threads, "os": f"{platform.system()} {platform.release()}",
            "versions": versions(), "memory_bandwidth_gbs": memory_bandwidth()}
