"""The export compiler: one module per format (`onnx`, `openvino`, `gguf`), a target registry,
and verification of every artifact against the PyTorch reference.

    from roots_edge.exporters import export, load_source
    manifest = export(load_source("my-model"), "gguf-q4", "out/gguf-q4")
    target, options = configure("onnx-int4", group_size=32, classes={"output": "int8"}, verify_texts=8)
"""
from roots_edge.exporters.base import Bound, Exporter, ExportOptions, Source, Target, all_targets, get_target, target_names
from roots_edge.exporters.driver import MANIFEST, configure, export, load_source, read_manifest, reusable, verification_table
from roots_edge.exporters.quant import TENSOR_CLASSES, QuantConfig

__all__ = ["Bound", "Exporter", "ExportOptions", "Source", "Target", "all_targets", "get_target", "target_names",
           "MANIFEST", "QuantConfig", "TENSOR_CLASSES", "configure", "export", "load_source", "read_manifest",
           "reusable", "verification_table"]
