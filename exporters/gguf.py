"""GGUF export for llama.cpp: f32/f16/bf16 written with `gguf`, every other type by llama.cpp's quantizer.

One file, `<model>-<TYPE>.gguf`, holds the weights, the hyperparameters and the tokenizer; llama.cpp
needs nothing else. Quantized types are made from an f32 GGUF (one rounding step, not two) by
`llama_model_quantize`; the intermediate file is removed. Quantization needs row lengths that are
multiples of 32 (256 for K-quants and IQ4_XS to avoid per-tensor fallbacks, which the manifest lists).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from roots_edge.core.errors import TargetError
from roots_edge.core.spec import DECODER_FAMILIES, ENCODER_FAMILIES

from roots_edge.exporters.base import FLOAT32, HALF, INT2, INT3, INT4, INT6_5, INT8, Exporter, ExportOptions, Source, Target
from roots_edge.exporters.imatrix import MAX_TOKENS
from roots_edge.exporters.quant import QuantConfig, Unsupported

if TYPE_CHECKING:
    from roots_edge.exporters.gguf_write import GgufFile

DECODERS, BOTH = DECODER_FAMILIES, DECODER_FAMILIES + ENCODER_FAMILIES

# llama.cpp type name -> drift bounds (IQ1_* left out: unusable on models of this size even with an importance matrix)
QUANT_TYPES = {
    "Q8_0": INT8, "Q6_K": INT6_5, "Q5_K_M": INT6_5, "Q5_K_S": INT6_5, "Q5_0": INT6_5, "Q5_1": INT6_5,
    "Q4_K_M": INT4, "Q4_K_S": INT4, "Q4_0": INT4, "Q4_1": INT4, "IQ4_NL": INT4, "IQ4_XS": INT4,
    "Q3_K_L": INT3, "Q3_K_M": INT3, "Q3_K_S": INT3, "IQ3_M": INT3, "IQ3_S": INT3, "IQ3_XS": INT3, "IQ3_XXS": INT3,
    "Q2_K": INT2, "IQ2_M": INT2, "IQ2_S": INT2, "IQ2_XS": INT2, "IQ2_XXS": INT2,
}
ALIASES = {"Q8_0": ("gguf-q8",), "Q4_K_M": ("gguf-q4",)}
# file types whose mixture llama.cpp only builds with an importance matrix (it refuses them without one)
NEEDS_IMPORTANCE = frozenset({"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS"})
FLOATS = ("f32", "f16", "bf16")


def gguf_filename(source: Source, target: Target) -> str:
    """`<model folder>-<TYPE>.gguf`, e.g. default-Q4_K_M.gguf."""
    return f"{source.folder.name}-{target.precision.upper()}.gguf"


def write_float(source: Source, path: Path, precision: str) -> "GgufFile":
    """A float GGUF of `source` at `path`, by its family's writer; returns the closed `GgufFile`."""
    from roots_edge.exporters.gguf_write import float_type

    if source.spec.is_decoder:
        from roots_edge.exporters.gguf_decoder import write_decoder as write
    else:
        from roots_edge.exporters.gguf_bert import write_bert as write
    return write(source, path, float_type(precision))


# generic precisions of a tensor class -> the ggml type llama.cpp stores it in
GGML_NAMES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16", "int8": "Q8_0", "int6": "Q6_K", "int5": "Q5_K",
              "int4": "Q4_K"}
EDGE_TYPES = (*GGML_NAMES, "Q8_0", "Q6_K", "Q5_K", "Q5_0", "Q4_K", "Q4_0", "F16", "F32")


def ggml_type(precision: str) -> int:
    """The ggml type number of an embedding / output precision ("int8" or a ggml name such as "Q6_K")."""
    from gguf import GGMLQuantizationType

    if precision not in EDGE_TYPES and precision.upper() not in EDGE_TYPES:
        raise TargetError(f"{precision!r} is not a GGUF tensor type llama.cpp takes for embeddings or output; "
                          f"give one of {', '.join(EDGE_TYPES)}")
    return int(GGMLQuantizationType[GGML_NAMES.get(precision, precision.upper())])


def _edge(quant: QuantConfig, cls: str) -> int | None:
    return ggml_type(quant.classes[cls]) if cls in quant.classes else None


def spec_rows(spec) -> list[tuple[str, int]]:
    """The row lengths (input widths) of the matrices llama.cpp's quantizer converts, read off the config:
    embeddings, q/k/v, FFN up/gate and every head take `hidden`; attention output `heads x head_dim`; FFN down
    `intermediate`."""
    return [("hidden", spec.hidden_size), ("attention output", spec.num_heads * spec.head_dim),
            ("ffn down", spec.intermediate_size)]


class GgufExporter(Exporter, format="gguf"):
    targets = (
        Target.make("gguf", "f32", BOTH, FLOAT32),
        Target.make("gguf", "f16", BOTH, HALF),
        Target.make("gguf", "bf16", DECODERS, HALF),
        *(Target.make("gguf", name, BOTH if bounds in (INT8, INT6_5, INT4) else DECODERS, bounds, ALIASES.get(name, ()))
          for name, bounds in QUANT_TYPES.items()),
    )
    packages = ("gguf", "llama_cpp_python")
    revision = 2  # 2: types below Q8_0 rounded with an importance matrix by default

    def resolve(self, quant: QuantConfig, spec, options: ExportOptions) -> QuantConfig:
        Unsupported.method(quant, "gguf", ("rtn", "imatrix"))
        Unsupported.group_size(quant, "gguf", "each llama.cpp type has its own block")
        if quant.precision in FLOATS:
            Unsupported.check(quant, "gguf", {})
            return quant.with_(method="none")
        if quant.method == "imatrix" and options.data_free:
            raise TargetError("--method imatrix measures the calibration text; it cannot run with --no-calibration")
        if quant.precision in NEEDS_IMPORTANCE and (options.data_free or quant.method == "rtn"):
            raise TargetError(f"llama.cpp builds gguf-{quant.precision} only with an importance matrix; drop "
                              "--no-calibration / --method rtn, or choose a type that rounds without one "
                              "(Q3_K_M, Q2_K)")
        # an importance matrix weights every type's rounding but Q8_0's (its kernel takes none)
        aware = quant.precision != "Q8_0" and spec.is_decoder and not options.data_free
        method = quant.method or ("imatrix" if aware else "rtn")
        # llama.cpp's quantizer takes a type for the token embedding and one for the output tensor; the
        # other matrices follow the file type's own mixture (Q4_K_M puts some V / FFN-down rows in Q6_K)
        for cls in ("embeddings", "output"):
            if cls in quant.classes:
                ggml_type(quant.classes[cls])          # a clear error for a name llama.cpp does not take here
        quant = replace(quant, classes={c: p if p in GGML_NAMES else p.upper() for c, p in quant.classes.items()})
        Unsupported.check(quant, "gguf", {"embeddings": EDGE_TYPES, "output": EDGE_TYPES})
        if method == "imatrix" and (quant.precision == "Q8_0" or not spec.is_decoder):
            raise TargetError("--method imatrix applies to decoders' 2- to 6-bit types such as gguf-q4: llama.cpp's "
                              "Q8_0 kernel takes no importance matrix, and encoders have none measured yet")
        from roots_edge.exporters.gguf_quant import check_rows, quant_type

        # from the config, before any weight is read: the same rows the written file's matrices will have
        check_rows(dict(spec_rows(spec)), quant_type(quant.precision), options.allow_drift)
        return replace(quant, method=method, group_size=None, activations="float")

    def write(self, source: Source, target: Target, out: Path, options: ExportOptions) -> dict:
        from roots_edge.exporters.gguf_quant import check_rows, quant_type, quantize, row_lengths, tensor_report

        path = Path(out) / gguf_filename(source, target)
        extra: dict = {}
        importance = None
        if target.precision in FLOATS:
            write_float(source, path, target.precision)
            qt = None
        else:
            qt = quant_type(target.precision)
            tmp = Path(out) / f".{path.stem}-F32.gguf"
            try:
                written = write_float(source, tmp, "f32")
                check_rows(row_lengths(written.shapes), qt, options.allow_drift)
                # llama.cpp's quantizer picks each tensor's type (Q4_K_M's Q6_K rows, fallbacks) and rounds it,
                # weighting each tensor's rounding error by the importance matrix where one was measured
                # (the same bytes as our own ggml_quantize_chunk pass, `requantize`: tested per type)
                edges = {"token_embedding": _edge(target.quant, "embeddings"), "output": _edge(target.quant, "output")}
                importance = self.importance(source, options.calibration, options.calibration_tokens) \
                    if target.quant.method == "imatrix" else None
                quantize(tmp, path, qt, options.threads, **edges,
                         importance=None if importance is None else importance.values)
            finally:
                tmp.unlink(missing_ok=True)
        report = tensor_report(path, qt, frozenset(importance.values) if importance is not None else frozenset())
        weighted = report.pop("tensors_weighted")
        if importance is not None:
            extra["importance"] = {**importance.describe(), "tensors_weighted": weighted,
                                   "applied_by": "llama_model_quantize"}
        return {"gguf_file": path.name, **report, **extra}

    @staticmethod
    def importance(source: Source, texts: list[str], max_tokens: int = MAX_TOKENS):
        """The importance matrix of `source` on `texts`, measured once per export run."""
        from roots_edge.exporters.gguf_write import TensorMapper
        from roots_edge.exporters.imatrix import importance_matrix

        def measure():
            import gguf

            mapper = TensorMapper(gguf.MODEL_ARCH[source.spec.traits.gguf_arch.upper()], source.spec.num_layers)
            return importance_matrix(source, texts, mapper, max_tokens)

        return source.cached(("imatrix", tuple(texts), max_tokens), measure)
