"""What every float GGUF we write shares: the storage-type rule, tensor naming and the file's framing.

The storage rule follows llama.cpp's `convert_hf_to_gguf.py`: in an f16/bf16 file, 2-D `.weight`
matrices take the file's type; 1-D tensors, `*_norm.weight`, biases, position and token-type
embeddings stay f32 (llama.cpp's quantizer never touches those either).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roots_edge.core.errors import UnsupportedModelError


@dataclass(frozen=True)
class FloatType:
    """One float GGUF file type: the tensor storage type and the `general.file_type` it declares."""

    name: str        # "F32", "F16", "BF16": the suffix of the file name
    qtype: int       # gguf.GGMLQuantizationType
    file_type: int   # gguf.LlamaFileType


def float_type(precision: str) -> FloatType:
    """The float type of a target precision ("f32", "f16", "bf16")."""
    from gguf import GGMLQuantizationType as Q, LlamaFileType as F

    table = {"f32": (Q.F32, F.ALL_F32), "f16": (Q.F16, F.MOSTLY_F16), "bf16": (Q.BF16, F.MOSTLY_BF16)}
    qtype, file_type = table[precision.lower()]
    return FloatType(precision.upper(), qtype, file_type)


def tensor_name(kind, bid: int | None = None, suffix: str = "weight") -> str:
    """The GGUF name of a `gguf.MODEL_TENSOR`, e.g. (ATTN_Q, 0) -> "blk.0.attn_q.weight"."""
    from gguf import TENSOR_NAMES

    base = TENSOR_NAMES[kind].format(bid=bid) if bid is not None else TENSOR_NAMES[kind]
    return f"{base}.{suffix}"


def always_f32() -> frozenset[str]:
    """2-D weights llama.cpp keeps in f32 whatever the file type (BERT's position and token-type tables)."""
    from gguf import MODEL_TENSOR

    return frozenset({tensor_name(MODEL_TENSOR.POS_EMBD), tensor_name(MODEL_TENSOR.TOKEN_TYPES)})


def storage_qtype(name: str, array: np.ndarray, ftype: FloatType) -> int:
    from gguf import GGMLQuantizationType

    if array.ndim <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") or name in always_f32():
        return GGMLQuantizationType.F32
    return ftype.qtype


class TensorMapper:
    """Hugging Face parameter names -> GGUF names, through gguf-py's own `TensorNameMap`."""

    def __init__(self, arch, n_blocks: int):
        from gguf import get_tensor_name_map

        self.map = get_tensor_name_map(arch, n_blocks)

    def __call__(self, hf_name: str) -> str:
        name = self.map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModelError(f"the parameter {hf_name!r} has no llama.cpp counterpart; GGUF export "
                                        "supports the standard Llama and BERT layouts only")
        return name


class GgufFile:
    """A GGUF file being written: metadata through `writer.add_*`, tensors through `add`."""

    def __init__(self, path: Path, arch, ftype: FloatType):
        from gguf import MODEL_ARCH_NAMES, GGUFWriter

        self.path, self.ftype = Path(path), ftype
        self.shapes: dict[str, tuple[int, ...]] = {}  # PyTorch layout: a matrix's row length is shape[-1]
        self.writer = GGUFWriter(str(path), MODEL_ARCH_NAMES[arch])
        self.writer.add_file_type(ftype.file_type)

    def add_shape(self, spec, name: str) -> None:
        """The hyperparameters every architecture writes the same way (name, context, widths, heads)."""
        w = self.writer
        w.add_name(name)
        w.add_context_length(spec.context_length)
        w.add_embedding_length(spec.hidden_size)
        w.add_feed_forward_length(spec.intermediate_size)
        w.add_block_count(spec.num_layers)
        w.add_head_count(spec.num_heads)

    def add(self, name: str, array: np.ndarray) -> None:
        """Store one tensor (numpy, PyTorch layout (out, in)) under the storage rule."""
        from gguf import GGMLQuantizationType, quants

        self.shapes[name] = tuple(array.shape)
        qtype = GGMLQuantizationType(storage_qtype(name, array, self.ftype))
        data = quants.quantize(np.ascontiguousarray(array, dtype=np.float32), qtype)  # bf16: raw bytes
        self.writer.add_tensor(name, data, raw_dtype=qtype)  # the writer turns byte shapes into element shapes

    def close(self) -> "GgufFile":
        from gguf import GGML_QUANT_VERSION

        self.writer.add_quantization_version(GGML_QUANT_VERSION)
        self.writer.write_header_to_file()
        self.writer.write_kv_data_to_file()
        self.writer.write_tensors_to_file()
        self.writer.close()
        return self


def tokenizer_json(tokenizer) -> dict:
    """The parsed `tokenizer.json` of a transformers fast tokenizer."""
    import json

    return json.loads(tokenizer.backend_tokenizer.to_str())


def token_table(tokenizer, n_vocab: int) -> tuple[list[str], list[int]]:
    """(pieces, gguf.TokenType per id) the way llama.cpp's converter lists a vocabulary.

    Special added tokens are CONTROL, other added tokens USER_DEFINED; ids the tokenizer lacks
    (a model vocabulary padded past the tokenizer's) become "[PAD<i>]" USER_DEFINED entries.
    """
    from gguf import TokenType

    vocab = {i: piece for piece, i in tokenizer.get_vocab().items()}
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    pieces, types = [], []
    for i in range(n_vocab):
        if i not in vocab:
            pieces.append(f"[PAD{i}]")
            types.append(TokenType.USER_DEFINED)
        elif i in added:
            pieces.append(vocab[i])
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            pieces.append(vocab[i])
            types.append(TokenType.NORMAL)
    return pieces, [int(t) for t in types]
