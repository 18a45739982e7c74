"""Encoders as ONNX: BERT (classifier or embedder) and Llama sequence classifiers, no cache.

    inputs   input_ids (B, T) i64, attention_mask (B, T) i64, token_type_ids (B, T) i64 (BERT only)
    outputs  logits (B, C) f32 (classifiers) or last_hidden_state (B, T, H) f32 (embedders)

Static int8 (`ExportOptions.static_int8`) calibrates activation ranges on the calibration texts through a
`CalibrationDataReader` that tokenizes them exactly as the runtime does (`ENCODER_MAX_TOKENS`). BERT's
feed-forward output projections stay float: their input (after GELU) has outliers that one per-tensor
int8 range cannot hold. On all-MiniLM-L6-v2 the smallest embedding cosine against PyTorch was 0.929 with
them quantized and 0.988 without (dynamic int8: 0.989).
"""
from __future__ import annotations

from pathlib import Path

from roots_edge.formats.onnx import LOGITS

from roots_edge.exporters.calibration import encoder_items, encoder_names
from roots_edge.exporters.onnx_trace import trace_to_onnx
from roots_edge.exporters.wrappers import encoder_wrapper

CALIBRATION_TEXTS = 64  # enough activations for stable MinMax ranges on a small encoder; a few seconds


def export_encoder(model, spec, path: Path, opset: int) -> None:
    """Trace a float32 encoder into `path`, with dynamic batch and sequence."""
    import torch

    inputs, outputs = encoder_names(spec)
    b, t = 2, 7
    ids = torch.randint(0, spec.vocab_size, (b, t))                                     # (B, T)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0                                                                      # a padded row
    example = (ids, mask, *([torch.zeros(b, t, dtype=torch.long)] if len(inputs) == 3 else []))
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[outputs[0]] = {0: "batch"} if outputs[0] == LOGITS else {0: "batch", 1: "sequence"}
    trace_to_onnx(encoder_wrapper(model, spec), model, example, path, inputs, outputs, axes, opset)


def static_int8_exclusions(model, spec) -> list[str]:
    """Names of the MatMuls left in float by static int8: BERT's `layer.N.output.dense` (FFN down projection)."""
    if spec.family != "bert":
        return []
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name]


class TextCalibration:
    """An `onnxruntime.quantization.CalibrationDataReader` (by its `get_next` protocol) over texts, one text
    per batch (`calibration.encoder_items`)."""

    def __init__(self, tokenizer, spec, texts: list[str], limit: int = CALIBRATION_TEXTS):
        self.items = encoder_items(tokenizer, spec, [t for t in texts if t.strip()][:limit])
        self._it = iter(self.items)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def __iter__(self):
        return iter(self.items)

    def rewind(self) -> None:
        self._it = iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
