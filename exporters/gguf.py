"""GGUF export for llama.cpp: f32/f16 written with `gguf`, every other type by llama.cpp's quantizer."""
from __future__ import annotations

from .base import FLOAT32, HALF, INT2, INT3, INT4, INT6_5, INT8, Exporter, Target

BOTH, DECODERS = ("llama", "bert"), ("llama",)

# llama.cpp type name -> drift bounds. Types that need an importance matrix (IQ2_*, IQ3_*, IQ1_*) are left out.
QUANT_TYPES = {
    "Q8_0": INT8, "Q6_K": INT6_5, "Q5_K_M": INT6_5, "Q5_K_S": INT6_5, "Q5_0": INT6_5, "Q5_1": INT6_5,
    "Q4_K_M": INT4, "Q4_K_S": INT4, "Q4_0": INT4, "Q4_1": INT4, "IQ4_NL": INT4, "IQ4_XS": INT4,
    "Q3_K_L": INT3, "Q3_K_M": INT3, "Q3_K_S": INT3, "Q2_K": INT2,
}
ALIASES = {"Q8_0": ("gguf-q8",), "Q4_K_M": ("gguf-q4",)}


class GgufExporter(Exporter, format="gguf"):
    targets = (
        Target.make("gguf", "f32", BOTH, FLOAT32),
        Target.make("gguf", "f16", BOTH, HALF),
        Target.make("gguf", "bf16", DECODERS, HALF),
        *(Target.make("gguf", name, BOTH if name == "Q8_0" else DECODERS, bounds, ALIASES.get(name, ()))
          for name, bounds in QUANT_TYPES.items()),
    )
