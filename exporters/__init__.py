"""The export compiler: one module per format (`onnx`, `openvino`, `gguf`), a target registry,
and verification of every artifact against the PyTorch reference.

    from roots_edge.exporters import export, load_source, plan_exports, run_exports
    manifest = export(load_source("my-model"), "gguf-q4", "out/gguf-q4")

    # several targets: every one checked against the model's config (and its output) before torch loads it
    jobs = plan_exports(["onnx-int4", "gguf-q4"], check_folder(folder), "out", group_size=32, verify_texts=8)
    manifests = run_exports(load_source(folder), jobs)
"""
from roots_edge.exporters.base import Bound, Exporter, ExportOptions, Source, Target, all_targets, get_target, target_names
from roots_edge.exporters.driver import (MANIFEST, ExportJob, configure, export, export_job, load_source, plan_exports,
                                        read_manifest, reusable, run_exports, verification_table)
from roots_edge.exporters.quant import TENSOR_CLASSES, QuantConfig

__all__ = ["Bound", "Exporter", "ExportOptions", "Source", "Target", "all_targets", "get_target", "target_names",
           "MANIFEST", "QuantConfig", "TENSOR_CLASSES", "ExportJob", "configure", "export", "export_job", "load_source",
           "plan_exports", "read_manifest", "reusable", "run_exports", "verification_table"]
