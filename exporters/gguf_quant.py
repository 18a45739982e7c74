"""llama.cpp's own quantizer over a float GGUF, and a report of what each tensor became.

`llama_model_quantize` picks a per-tensor type mixture for each file type (Q4_K_M puts some V and
FFN-down matrices in Q6_K, the output matrix in Q6_K, ...). When a row length is not a multiple of a
type's block (256 for K-quants and IQ4_XS, 32 for the rest) it falls back per tensor (Q4_K -> Q5_0,
Q6_K -> Q8_0, ... and finally F16). The report lists every matrix whose type lies outside the
mixture the file type uses, so a "Q4_K_M" file that is really Q5_0 says so.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roots_edge.core.errors import TargetError
from roots_edge.core.capture import captured_stderr

from roots_edge.exporters.gguf_write import always_f32

K_QUANTS = frozenset({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
MIN_BLOCK = 32  # the smallest block of any llama.cpp quant type (Q4_0 ... Q8_0, IQ4_NL): the last fallback before F16


@dataclass(frozen=True)
class QuantType:
    """One llama.cpp file type (`LLAMA_FTYPE_MOSTLY_<name>`)."""

    name: str                 # "Q4_K_M"
    base: str                 # the ggml type most matrices get: "Q4_K"
    mixture: frozenset[str]   # every type llama.cpp's mixture rules may choose when rows divide

    @property
    def block(self) -> int:
        """Row lengths must be multiples of this for `base` to apply."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        return GGML_QUANT_SIZES[GGMLQuantizationType[self.base]][0]

    @property
    def ftype(self) -> int:
        import llama_cpp

        return getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{self.name}")


I_QUANTS = frozenset({"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS", "IQ4_NL"})


def quant_type(name: str) -> QuantType:
    # the ggml type most matrices get (llama-quant.cpp's default type per file type)
    base = {"Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K",
            "Q3_K_L": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_S": "Q3_K",
            "IQ3_M": "IQ3_S", "IQ3_XS": "IQ3_S", "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S"}.get(name, name)
    if base in K_QUANTS:
        mixture = K_QUANTS
    elif base.startswith(("IQ2", "IQ3")):
        mixture = K_QUANTS | I_QUANTS                # 2-3 bit i-quants lean on K-quants for V, output, ...
    elif base.startswith("IQ4"):
        mixture = frozenset({base, "Q5_K", "Q6_K"})   # IQ4_*: V / early FFN-down in Q5_K, output in Q6_K
    elif base == "Q8_0":
        mixture = frozenset({"Q8_0"})
    else:
        mixture = frozenset({base, "Q6_K"})           # legacy types: the output matrix goes to Q6_K
    return QuantType(name, base, mixture)


def quantizable(name: str, shape) -> bool:
    """Tensors llama.cpp's quantizer converts (it keeps 1-D, norms, BERT's position / token-type tables)."""
    return len(shape) >= 2 and not name.endswith("_norm.weight") and name not in always_f32()


def row_lengths(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """{tensor: row length} of the matrices the quantizer will convert, from their (out, in) shapes."""
    return {name: shape[-1] for name, shape in shapes.items() if quantizable(name, shape)}


def check_rows(rows: dict[str, int], qt: QuantType, allow_drift: bool) -> None:
    """Refuse a type whose blocks cannot tile the model's rows (the quantizer would leave them F16 or abort)."""
    bad = {n: r for n, r in rows.items() if r % MIN_BLOCK}
    if bad and not allow_drift:
        name, row = next(iter(bad.items()))
        raise TargetError(
            f"gguf-{qt.name} cannot quantize this model: {len(bad)} matrices (e.g. {name}) have rows of {row} "
            f"values, not a multiple of the {MIN_BLOCK}-value block every llama.cpp quant type needs "
            f"(the {qt.base} block is {qt.block}); llama.cpp would keep them F16. Use gguf-f16, or give the model "
            f"widths that are multiples of {MIN_BLOCK} (256 for K-quants). --allow-drift keeps such a file anyway.")
    if qt.block > MIN_BLOCK and rows and all(r % qt.block for r in rows.values()) and not allow_drift:
        raise TargetError(
            f"gguf-{qt.name} would not contain a single {qt.base} matrix: no row length of this model "
            f"({sorted(set(rows.values()))}) is a multiple of the {qt.base} block of {qt.block}, so llama.cpp "
            "would fall back on every tensor. Use a 32-block type (gguf-Q4_0, gguf-Q5_0, gguf-Q8_0) or "
            "pass --allow-drift.")


def quantize(src: Path, dst: Path, qt: QuantType, threads: int | None = None, *, token_embedding: int | None = None,
             output: int | None = None, importance: dict[str, np.ndarray] | None = None) -> None:
    """Run `llama_model_quantize(src -> dst)` for file type `qt` (and, when given, ggml types for the token
    embedding and the output tensor, and an importance matrix {tensor: per-channel weights} through the C
    API's `llama_model_imatrix_data` list); its log is kept for the error message."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = qt.ftype
    params.nthread = threads or os.cpu_count() or 1
    if token_embedding is not None:
        params.token_embedding_type = token_embedding
    if output is not None:
        params.output_tensor_type = output
    if importance:
        kept = {name.encode(): np.ascontiguousarray(v, dtype=np.float32) for name, v in importance.items()}
        entries = (llama_cpp.llama_model_imatrix_data * (len(kept) + 1))()   # ends with a null name
        for entry, (name, values) in zip(entries, kept.items()):
            entry.name, entry.size = name, values.size
            entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        params.imatrix = entries
    with captured_stderr() as log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        tail = "\n".join(line for line in "".join(log).splitlines()[-6:] if line.strip())
        raise TargetError(f"llama.cpp's quantizer could not make {qt.name} from {src.name} (code {rc}). "
                          f"Its log ends with:\n{tail}\nTry gguf-f16 or another quant type.")


FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
KERNEL_NEEDS_IMPORTANCE = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S"})   # ggml_quantize_requires_imatrix


@functools.cache
def _quantize_chunk():
    """`ggml_quantize_chunk` from the ggml library llama-cpp-python loads (reached through libllama)."""
    import ctypes

    import llama_cpp

    fn = llama_cpp.llama_cpp._lib.ggml_quantize_chunk
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_void_p]
    return fn


def requantize(f32: Path, path: Path, importance: dict[str, np.ndarray] | None = None) -> int:
    """Round every quantized tensor of llama.cpp's file `path` again, in place, from the f32 weights in `f32`,
    with llama.cpp's own kernel (`ggml_quantize_chunk`) and the type llama.cpp chose for that tensor; where
    `importance` has the tensor, its rounding error is weighted per input channel by it. Without importance
    the bytes are llama.cpp's own (the tests check this per type). Returns the number of tensors weighted."""
    from gguf import GGUFReader

    quantize_chunk = _quantize_chunk()
    source = {t.name: t for t in GGUFReader(f32).tensors}
    target = GGUFReader(path, "r+")
    weighted = 0
    for t in target.tensors:
        if t.tensor_type.name in FLOAT_TYPES:
            continue
        w = np.ascontiguousarray(source[t.name].data, dtype=np.float32)    # (rows, n_per_row)
        n_per_row = w.shape[-1]
        imatrix = None if importance is None else importance.get(t.name)
        if imatrix is None and t.tensor_type.name in KERNEL_NEEDS_IMPORTANCE:   # ggml would abort the process
            raise TargetError(f"{t.name} is {t.tensor_type.name}, which llama.cpp's kernel rounds only with an "
                              "importance matrix, and none was measured for it")
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
            if imatrix.shape != (n_per_row,):
                raise TargetError(f"the importance of {t.name} has {imatrix.size} channels, its rows {n_per_row}")
            weighted += 1
        out = np.empty(int(t.n_bytes), dtype=np.uint8)
        written = quantize_chunk(int(t.tensor_type), w.ctypes.data, out.ctypes.data, 0, w.size // n_per_row,
                                 n_per_row, None if imatrix is None else imatrix.ctypes.data)
        if written != out.size:
            raise TargetError(f"llama.cpp's kernel wrote {written} bytes for {t.name} ({t.tensor_type.name}), "
                              f"the file holds {out.size}")
        t.data.reshape(-1)[:] = out
    target.data.flush()
    del target
    return weighted


def tensor_report(path: Path, qt: QuantType | None, weighted: set[str] | frozenset = frozenset()) -> dict:
    """{"tensor_types": {type: count}, "fallbacks": {tensor: type}, "tensors_weighted": how many of the names in
    `weighted` the file holds in a quantized type} of a GGUF file (from the runtime's header walk: gguf-py's
    reader takes seconds on a 49k-token vocabulary)."""
    from gguf import GGMLQuantizationType

    from roots_edge.formats.gguf import read_header

    counts: dict[str, int] = {}
    fallbacks: dict[str, str] = {}
    hits = 0
    for name, qtype, dims in read_header(path)["index"]:
        kind = GGMLQuantizationType(qtype).name
        counts[kind] = counts.get(kind, 0) + 1
        if qt is not None and quantizable(name, dims) and kind not in qt.mixture:
            fallbacks[name] = kind
        hits += name in weighted and kind not in FLOAT_TYPES
    return {"tensor_types": dict(sorted(counts.items())), "fallbacks": fallbacks, "tensors_weighted": hits}
