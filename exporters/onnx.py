"""ONNX export (decoders with explicit KV cache; BERT encoders), verified with ONNX Runtime."""
from __future__ import annotations

from .base import FLOAT32, HALF, INT4, INT8, Exporter, Target

BOTH, DECODERS = ("llama", "bert"), ("llama",)


class OnnxExporter(Exporter, format="onnx"):
    targets = (
        Target.make("onnx", "fp32", BOTH, FLOAT32),
        Target.make("onnx", "fp16", DECODERS, HALF),
        Target.make("onnx", "int8", BOTH, INT8),
        Target.make("onnx", "int4", DECODERS, INT4),
    )
