"""Devices: the one place that maps `cpu | gpu | apple | auto` to each backend's own settings."""
from __future__ import annotations

import platform
from dataclasses import dataclass

from roots_edge.core.errors import DeviceError

DEVICES = ("cpu", "gpu", "apple", "auto")
AUTO_ORDER = ("gpu", "apple", "cpu")  # best first

# ONNX Runtime execution providers per device, best first
ORT_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "gpu": ("CUDAExecutionProvider", "DmlExecutionProvider", "ROCMExecutionProvider", "OpenVINOExecutionProvider"),
    "apple": ("CoreMLExecutionProvider",),
}


@dataclass(frozen=True)
class Placement:
    device: str                   # cpu, gpu or apple
    backend: str                  # onnxruntime, openvino, llamacpp, torch
    setting: str                  # what the backend is given: provider name, OV device, torch device, ...


def present(backend: str) -> dict[str, str]:
    """device -> backend setting, for what this machine and this build of the backend offer."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        return {dev: next(p for p in provs if p in have) for dev, provs in ORT_PROVIDERS.items()
                if any(p in have for p in provs)}
    if backend == "openvino":
        import openvino as ov

        devs = ov.Core().available_devices
        out = {"cpu": "CPU"}
        gpus = [d for d in devs if d.startswith("GPU")]
        if gpus:
            out["gpu"] = gpus[0]
        return out
    if backend == "llamacpp":
        import llama_cpp

        out = {"cpu": "n_gpu_layers=0"}
        if llama_cpp.llama_supports_gpu_offload():
            is_apple = platform.system() == "Darwin" and platform.machine() == "arm64"
            out["apple" if is_apple else "gpu"] = "n_gpu_layers=-1"
        return out
    if backend == "torch":
        import torch

        out = {"cpu": "cpu"}
        if torch.cuda.is_available():
            out["gpu"] = "cuda"
        elif hasattr(torch, "xpu") and torch.xpu.is_available():
            out["gpu"] = "xpu"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            out["apple"] = "mps"
        return out
    raise DeviceError(f"unknown backend {backend!r}")


def choose(backend: str, requested: str, offered: dict[str, str]) -> Placement:
    """Pure decision logic (tested with made-up `offered` maps)."""
    if requested not in DEVICES:
        raise DeviceError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    if requested == "auto":
        requested = next(d for d in AUTO_ORDER if d in offered)
    if requested not in offered:
        raise DeviceError(f"device {requested!r} is not available to {backend} on this machine; "
                          f"present: {', '.join(f'{d} ({s})' for d, s in offered.items())}")
    setting = offered[requested]
    return Placement(requested, backend, setting)


def place(backend: str, requested: str = "auto") -> Placement:
    return choose(backend, requested, present(backend))
