"""The export compiler: one module per format (`onnx`, `openvino`, `gguf`), a target registry,
and verification of every artifact against the PyTorch reference.

    from roots_edge.exporters import export, load_source
    manifest = export(load_source("my-model"), "gguf-q4", "out/gguf-q4")
"""
from .base import Bound, Exporter, ExportOptions, Source, Target, all_targets, get_target, target_names
from .driver import MANIFEST, export, load_source, read_manifest, reusable, verification_table

__all__ = ["Bound", "Exporter", "ExportOptions", "Source", "Target", "all_targets", "get_target", "target_names",
           "MANIFEST", "export", "load_source", "read_manifest", "reusable", "verification_table"]
