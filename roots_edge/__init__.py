"""roots-edge: train, compress, export and run small transformer language models on edge devices.

Heavy libraries load lazily: `import roots_edge` imports neither torch nor any runtime.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["LanguageModel", "load", "__version__"]


def __getattr__(name: str):
    if name == "LanguageModel":
        from roots_edge.model import LanguageModel

        return LanguageModel
    if name == "load":
        from roots_edge.runtimes import load

        return load
    raise AttributeError(f"module 'roots_edge' has no attribute {name!r}")
