"""GGUF export for llama.cpp: f32/f16/bf16 written with `gguf`, every other type by llama.cpp's quantizer.

One file, `<model>-<TYPE>.gguf`, holds the weights, the hyperparameters and the tokenizer; llama.cpp
needs nothing else. Quantized types are made from an f32 GGUF (one rounding step, not two) by
`llama_model_quantize`; the intermediate file is removed. Quantization needs row lengths that are
multiples of 32 (256 for K-quants and IQ4_XS to avoid per-tensor fallbacks, which the manifest lists).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import FLOAT32, HALF, INT2, INT3, INT4, INT6_5, INT8, Exporter, ExportOptions, Source, Target

if TYPE_CHECKING:
    from .gguf_write import GgufFile

BOTH, DECODERS = ("llama", "bert"), ("llama",)

# llama.cpp type name -> drift bounds. Types that need an importance matrix (IQ2_*, IQ3_*, IQ1_*) are left out.
QUANT_TYPES = {
    "Q8_0": INT8, "Q6_K": INT6_5, "Q5_K_M": INT6_5, "Q5_K_S": INT6_5, "Q5_0": INT6_5, "Q5_1": INT6_5,
    "Q4_K_M": INT4, "Q4_K_S": INT4, "Q4_0": INT4, "Q4_1": INT4, "IQ4_NL": INT4, "IQ4_XS": INT4,
    "Q3_K_L": INT3, "Q3_K_M": INT3, "Q3_K_S": INT3, "Q2_K": INT2,
}
ALIASES = {"Q8_0": ("gguf-q8",), "Q4_K_M": ("gguf-q4",)}
FLOATS = ("f32", "f16", "bf16")


def gguf_filename(source: Source, target: Target) -> str:
    """`<model folder>-<TYPE>.gguf`, e.g. default-Q4_K_M.gguf."""
    return f"{source.folder.name}-{target.precision.upper()}.gguf"


def write_float(source: Source, path: Path, precision: str) -> "GgufFile":
    """A float GGUF of `source` at `path`, by its family's writer; returns the closed `GgufFile`."""
    from .gguf_write import float_type

    if source.spec.family == "llama":
        from .gguf_llama import write_llama as write
    else:
        from .gguf_bert import write_bert as write
    return write(source, path, float_type(precision))


class GgufExporter(Exporter, format="gguf"):
    targets = (
        Target.make("gguf", "f32", BOTH, FLOAT32),
        Target.make("gguf", "f16", BOTH, HALF),
        Target.make("gguf", "bf16", DECODERS, HALF),
        *(Target.make("gguf", name, BOTH if name == "Q8_0" else DECODERS, bounds, ALIASES.get(name, ()))
          for name, bounds in QUANT_TYPES.items()),
    )
    packages = ("gguf", "llama_cpp_python")

    def write(self, source: Source, target: Target, out: Path, options: ExportOptions) -> dict:
        from .gguf_quant import check_rows, quant_type, quantize, row_lengths, tensor_report

        path = Path(out) / gguf_filename(source, target)
        if target.precision in FLOATS:
            write_float(source, path, target.precision)
            qt = None
        else:
            qt = quant_type(target.precision)
            tmp = Path(out) / f".{path.stem}-F32.gguf"
            try:
                written = write_float(source, tmp, "f32")
                check_rows(row_lengths(written.shapes), qt, options.allow_drift)
                quantize(tmp, path, qt, options.threads)
            finally:
                tmp.unlink(missing_ok=True)
        return {"gguf_file": path.name, **tensor_report(path, qt), "weight_bytes": path.stat().st_size}
