"""GGUF, as both sides read it: the header walk (checked against the bytes that are really there, before any
native loader sees the file) and the few keys it keeps. The exporters use it to report what they wrote, the
llama.cpp backend before it opens a file, the importer before gguf-py reads one.

Imports no GGUF library at module level; the ggml block sizes come from the llama.cpp library that will read
the file (`_type_sizes`), so a type it removed is refused rather than mis-sized.
"""
from __future__ import annotations

import functools
import mmap
from pathlib import Path

from roots_edge.core.errors import RuntimeLoadError

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (gguf.GGUF_MAGIC as it lies on disk)


def find_gguf(path: str | Path) -> Path:
    """The .gguf file itself, or the single .gguf inside an artifact folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            names = ", ".join(p.name for p in files) or "none"
            raise RuntimeLoadError(f"{path} holds {len(files)} .gguf files ({names}); expected exactly one. "
                                   "Pass the .gguf file itself.")
        return files[0]
    if not path.exists():
        raise RuntimeLoadError(f"{path} does not exist: expected a .gguf file or a GGUF artifact folder")
    return path


class _Cursor:
    """Little-endian reads over the file's bytes (memory-mapped) that fail loudly past its end: no length
    read from the file is trusted before it is checked against the size."""

    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise EOFError(f"a field of {n:,} bytes at byte {self.pos:,} runs past the end of the file ({self.size:,})")
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise EOFError(f"a field of {n:,} bytes at byte {self.pos:,} runs past the end of the file ({self.size:,})")
        self.pos += n

    def uint(self, n: int = 8) -> int:
        return int.from_bytes(self.take(n), "little")

    def string(self) -> bytes:
        return self.take(self.uint())

    def skip_strings(self, count: int) -> None:
        """Step over `count` length-prefixed strings (a vocabulary: the header's one long loop)."""
        import struct

        read, buf, pos, last = struct.Struct("<Q").unpack_from, self.buf, self.pos, self.size - 8
        for _ in range(count):
            if pos > last:
                raise EOFError(f"a string array runs past the end of the file ({self.size:,} bytes)")
            pos += 8 + read(buf, pos)[0]
        if pos > self.size:
            raise EOFError(f"a string array runs past the end of the file ({self.size:,} bytes)")
        self.pos = pos


def _value(cur: _Cursor, vtype: int, keep: bool):
    """Read (keep) or step over (not keep) one metadata value of GGUF value type `vtype`."""
    V = ValueType
    widths = {V.UINT8: 1, V.INT8: 1, V.BOOL: 1, V.UINT16: 2, V.INT16: 2, V.UINT32: 4, V.INT32: 4,
              V.FLOAT32: 4, V.UINT64: 8, V.INT64: 8, V.FLOAT64: 8}
    if vtype == V.STRING:
        return cur.string().decode("utf-8", "replace") if keep else cur.skip(cur.uint())
    if vtype == V.ARRAY:
        item, count = cur.uint(4), cur.uint()
        if item in widths:
            return cur.skip(widths[item] * count)
        if count > cur.size:
            raise ValueError(f"an array of {count:,} items cannot fit a file of {cur.size:,} bytes")
        if item == V.STRING:
            return cur.skip_strings(count)
        for _ in range(count):
            _value(cur, item, False)
        return None
    if vtype not in widths:
        raise ValueError(f"unknown metadata value type {vtype}")
    raw = cur.take(widths[vtype])
    return int.from_bytes(raw, "little") if keep else None


MAX_DIMS = 4  # GGML_MAX_DIMS
# GGUF facts the header walk needs, without importing gguf-py (its import costs a tenth of a small model's load)
ARCHITECTURE, ALIGNMENT, FILE_TYPE = "general.architecture", "general.alignment", "general.file_type"
CHAT_TEMPLATE = "tokenizer.chat_template"
DEFAULT_ALIGNMENT = 32


class ValueType:
    """GGUF metadata value types (the file format's numbering)."""

    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)


@functools.cache
def _type_sizes() -> dict[int, tuple[int, int]]:
    """{ggml type: (elements per block, bytes per block)} from the llama.cpp library that will read the file,
    for the types it still knows (removed ones report a block of 0)."""
    import ctypes

    import llama_cpp

    lib = llama_cpp.llama_cpp._lib
    block, nbytes = lib.ggml_blck_size, lib.ggml_type_size
    block.restype, block.argtypes = ctypes.c_int64, [ctypes.c_int]
    nbytes.restype, nbytes.argtypes = ctypes.c_size_t, [ctypes.c_int]
    sizes = {t: (block(t), nbytes(t)) for t in range(llama_cpp.GGML_TYPE_COUNT)}
    return {t: bs for t, bs in sizes.items() if bs[0] > 0 and bs[1] > 0}
# `<architecture>.<key>` metadata the backend reads: the trained context and the KV cache's dimensions
DIMENSION_KEYS = (".context_length", ".block_count", ".attention.head_count", ".attention.head_count_kv",
                  ".attention.key_length", ".embedding_length", ".attention.sliding_window",
                  ".attention.sliding_window_pattern")
def _walk(cur: _Cursor, path: Path, hint: str) -> tuple[int, int, dict]:
    """(data start, end of the last tensor's data relative to it, metadata kept with "tensors": the count)."""
    sizes = _type_sizes()
    size, meta = cur.size, {}
    cur.pos = len(GGUF_MAGIC)
    try:
        version, n_tensors, n_kv = cur.uint(4), cur.uint(), cur.uint()
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version}: llama.cpp and gguf-py read versions 2 and 3")
        if n_tensors > size or n_kv > size:
            raise ValueError(f"implausible header (version {version}, {n_tensors} tensors, {n_kv} keys)")
        for _ in range(n_kv):
            key = cur.string().decode("utf-8", "replace")
            vtype = cur.uint(4)
            keep = key in (ARCHITECTURE, ALIGNMENT, FILE_TYPE, CHAT_TEMPLATE) or key.endswith(DIMENSION_KEYS)
            meta[key] = _value(cur, vtype, keep and vtype in (ValueType.STRING, ValueType.UINT32, ValueType.UINT64))
        end = elements = 0
        index = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.uint(4)
            if n_dims > MAX_DIMS:
                raise ValueError(f"a tensor with {n_dims:,} dimensions (ggml has at most {MAX_DIMS})")
            dims = [cur.uint() for _ in range(n_dims)]
            qtype, offset = cur.uint(4), cur.uint()
            if qtype not in sizes:
                raise ValueError(f"tensor type {qtype} is not a ggml type this llama.cpp knows")
            block, type_size = sizes[qtype]
            n = 1
            for d in dims:
                n *= d
            end = max(end, offset + n // block * type_size)
            elements += n
            index.append((name.decode("utf-8", "replace"), qtype, tuple(dims)))
        align = meta.get(ALIGNMENT) or DEFAULT_ALIGNMENT
        data_start = -(-cur.pos // align) * align
        meta["tensors"], meta["elements"], meta["index"] = n_tensors, elements, index
    except (EOFError, ValueError, KeyError) as exc:
        raise RuntimeLoadError(f"{path} is truncated or corrupt ({size:,} bytes: {exc}); {hint}") from None
    return data_start, end, meta


def read_header(path: Path) -> dict:
    """Check that `path` is a complete GGUF file; return {architecture, tensors, elements (weights in all tensors),
    tensor_bytes, bytes, context_length, layers, kv_heads, head_dim, ..., index: [(name, ggml type, dims
    innermost first)]}.

    llama.cpp can abort the whole process on some malformed files, so the header is walked here
    first (with gguf-py's constants; its `GGUFReader` is ~100x slower on a 30k-token vocabulary).
    """
    size = path.stat().st_size
    hint = "re-export it (roots-edge export ... --force)"
    with path.open("rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise RuntimeLoadError(f"{path} is not a GGUF file: it starts with {magic!r}, a GGUF file with "
                                   f"{GGUF_MAGIC!r}")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            data_start, end, meta = _walk(_Cursor(buf, size), path, hint)
    if data_start + end > size:
        raise RuntimeLoadError(f"{path} is truncated: its tensors need {data_start + end:,} bytes, the file has "
                               f"{size:,}; {hint}")
    arch = meta.get(ARCHITECTURE)
    dim = {suffix: meta.get(f"{arch}{suffix}") for suffix in DIMENSION_KEYS}
    heads = dim[".attention.head_count"] or 1
    return {"architecture": arch, "file_type": meta.get(FILE_TYPE), "tensors": meta["tensors"],
            "elements": meta["elements"], "index": meta["index"], "tensor_bytes": end, "bytes": size,
            "chat_template": meta.get(CHAT_TEMPLATE), "context_length": dim[".context_length"],
            "layers": dim[".block_count"] or 0,
            "kv_heads": dim[".attention.head_count_kv"] or heads,
            "head_dim": dim[".attention.key_length"] or (dim[".embedding_length"] or 0) // heads,
            "sliding_window": dim[".attention.sliding_window"] or 0,
            "sliding_pattern": dim[".attention.sliding_window_pattern"] or 0}


def precision_name(file_type: int | None) -> str:
    """`general.file_type` as llama.cpp names it: 15 -> "Q4_K_M", 0 -> "F32"."""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return "unknown"
