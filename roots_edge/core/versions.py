"""Installed library versions: what manifests, model records and benchmark tables record. A leaf: imports
nothing of roots-edge, so every layer may use it."""
from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = ("numpy", "onnxruntime", "openvino", "llama_cpp_python", "torch", "transformers", "tokenizers")


def versions(names: tuple[str, ...] = LIBRARIES) -> dict:
    """Installed versions of `names` (import-style names; looked up as distributions), plus Python."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return out
