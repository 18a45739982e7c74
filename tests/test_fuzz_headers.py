"""Property-based tests of the two header readers that run before any native loader (issue 14): a GGUF or
safetensors file whose header was mutated (wrong lengths and counts, flipped bytes, truncation, well-formed JSON
with wrong values) gets a clear error or a correct load, never another exception."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from roots_edge.core.errors import CorruptModelError  # noqa: E402
from roots_edge.data.folder import verify_safetensors  # noqa: E402
from roots_edge.runtimes.base import RuntimeLoadError  # noqa: E402
from roots_edge.runtimes.llamacpp import read_header  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# lengths a corrupt file might hold: just past the end, huge, sign-bit set, all ones
LENGTHS = st.one_of(st.integers(0, 1 << 20), st.sampled_from([1 << 32, 1 << 40, 1 << 62, (1 << 63) + 5,
                                                              (1 << 64) - 1]))


def _mutants(data: bytes, header_end: int):
    """Mutations of `data` that touch its header (the first `header_end` bytes) or cut the file."""
    at = st.integers(0, max(0, header_end - 1))
    overwrite_u64 = st.tuples(st.just("u64"), at, LENGTHS)
    overwrite_u32 = st.tuples(st.just("u32"), at, st.integers(0, (1 << 32) - 1))
    flip = st.tuples(st.just("flip"), at, st.integers(1, 255))
    cut = st.tuples(st.just("cut"), st.integers(0, len(data) - 1), st.just(0))
    return st.lists(st.one_of(overwrite_u64, overwrite_u32, flip, cut), min_size=1, max_size=4)


def _apply(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        if op == "cut":
            del buf[pos:]
        elif op == "flip" and pos < len(buf):
            buf[pos] ^= value
        elif op in ("u64", "u32"):
            raw = struct.pack("<Q" if op == "u64" else "<I", value)
            buf[pos:pos + len(raw)] = raw[: max(0, len(buf) - pos)]
    return bytes(buf)


# ------------------------------------------------------------------------------------------------ GGUF
class _Sized(tuple):
    """(file bytes, header end) that hypothesis names in a failure report by size, not by its 3 MB of bytes."""

    def __repr__(self) -> str:
        return f"<{len(self[0]):,} bytes, header {self[1]:,}>"


@pytest.fixture(scope="module")
def gguf_bytes(llama_exports) -> tuple[bytes, int]:
    """A real GGUF (the tiny Llama exported as f32: 512-token vocabulary, merges, every key our exporter writes)
    and where its tensor data starts."""
    path = next(llama_exports["gguf-f32"][0].glob("*.gguf"))
    data = path.read_bytes()
    from roots_edge.formats.gguf import _Cursor, _walk

    start, _, _ = _walk(_Cursor(data, len(data)), path, "")
    return _Sized((data, start))


@FUZZ
@given(data=st.data())
def test_gguf_header_mutants_load_or_fail_clearly(gguf_bytes, tmp_path, data):
    good, header_end = gguf_bytes
    ops = data.draw(_mutants(good, header_end))
    path = tmp_path / "mutant.gguf"
    path.write_bytes(_apply(good, ops))
    try:
        header = read_header(path)
    except RuntimeLoadError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    if int.from_bytes(path.read_bytes()[4:8], "little") not in SUPPORTED_VERSIONS:
        return          # a gap: read_header passes any version >= 2 (test_gguf_unsupported_version_is_refused)
    want = _as_gguf_py_reads_it(path)
    assert {k: header[k] for k in want} == want


SUPPORTED_VERSIONS = (2, 3)   # gguf-py's READER_SUPPORTED_VERSIONS; llama.cpp's gguf.cpp refuses 1 and > 3 as well


def _lenient_str(obj, encoding=None):
    """`str` for gguf-py's reader: its names and strings as llama.cpp takes them (bytes, unchecked as UTF-8), shown
    with U+FFFD for a bad byte; gguf-py itself decodes them strictly."""
    return obj.decode(encoding, "replace") if encoding else str(obj)


def _as_gguf_py_reads_it(path: Path) -> dict:
    """What `read_header` should return for `path`, from gguf-py's GGUFReader: the tensor index, counts and data
    extent, and the keys read_header keeps (string and unsigned 32/64-bit values; others are None to it)."""
    from unittest import mock

    from gguf import GGUFValueType, gguf_reader

    with mock.patch.object(gguf_reader, "str", _lenient_str, create=True):
        reader = gguf_reader.GGUFReader(path)
        fields = {k: f.contents() for k, f in reader.fields.items()
                  if f.types in ([GGUFValueType.STRING], [GGUFValueType.UINT32], [GGUFValueType.UINT64])}
    tensors = reader.tensors
    size = path.stat().st_size
    assert all(t.data_offset + t.n_bytes <= size for t in tensors)           # every tensor's data is in the file
    arch = fields.get("general.architecture")
    dim = lambda key: fields.get(f"{arch}.{key}")                           # noqa: E731
    heads = dim("attention.head_count") or 1
    return {"architecture": arch, "file_type": fields.get("general.file_type"), "tensors": len(tensors),
            "elements": sum(int(t.n_elements) for t in tensors),
            "index": [(t.name, int(t.tensor_type), tuple(int(d) for d in t.shape)) for t in tensors],
            "tensor_bytes": max((t.data_offset - reader.data_offset + t.n_bytes for t in tensors), default=0),
            "bytes": size, "chat_template": fields.get("tokenizer.chat_template"),
            "context_length": dim("context_length"), "layers": dim("block_count") or 0,
            "kv_heads": dim("attention.head_count_kv") or heads,
            "head_dim": dim("attention.key_length") or (dim("embedding_length") or 0) // heads,
            "sliding_window": dim("attention.sliding_window") or 0,
            "sliding_pattern": dim("attention.sliding_window_pattern") or 0}


def test_the_reference_reads_the_unmutated_file(gguf_bytes, tmp_path):
    """The comparison above on the file as written: gguf-py and read_header agree, on the values it was made with."""
    path = tmp_path / "good.gguf"
    path.write_bytes(gguf_bytes[0])
    want, header = _as_gguf_py_reads_it(path), read_header(path)
    assert {k: header[k] for k in want} == want
    assert (want["architecture"], want["tensors"], want["layers"], want["kv_heads"], want["head_dim"],
            want["context_length"]) == ("llama", 11, 1, 2, 64, 128)


def test_gguf_unsupported_version_is_refused(gguf_bytes, tmp_path):
    path = tmp_path / "v68.gguf"
    path.write_bytes(gguf_bytes[0][:4] + struct.pack("<I", 68) + gguf_bytes[0][8:])
    with pytest.raises(RuntimeLoadError, match="version"):
        read_header(path)


def test_gguf_lengths_from_the_file_are_bounded(gguf_bytes, tmp_path):
    """The reproduction from the issue: a string length of 2^40 in the first key is an error, not a MemoryError."""
    good, _ = gguf_bytes
    for length in (1 << 40, (1 << 64) - 1):
        path = tmp_path / "long.gguf"
        path.write_bytes(good[:24] + struct.pack("<Q", length) + good[32:])   # magic, version, counts, key length
        with pytest.raises(RuntimeLoadError, match="truncated or corrupt"):
            read_header(path)


# ------------------------------------------------------------------------------------------ safetensors
@pytest.fixture(scope="module")
def safetensors_bytes(tmp_path_factory) -> tuple[bytes, int]:
    from safetensors.numpy import save_file

    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    rng = np.random.default_rng(0)
    save_file({"embed.weight": rng.standard_normal((16, 8)).astype(np.float32),
               "norm.weight": np.ones(8, np.float16), "ids": np.arange(5, dtype=np.int64)}, str(path),
              metadata={"format": "pt"})
    data = path.read_bytes()
    return data, 8 + int.from_bytes(data[:8], "little")


def _clear_error_or_correct_load(path: Path) -> None:
    """A one-line CorruptModelError naming the file, or a file the real reader opens tensor by tensor."""
    from safetensors.numpy import load_file

    try:
        verify_safetensors(path)
    except CorruptModelError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    load_file(str(path))


@FUZZ
@given(data=st.data())
def test_safetensors_byte_mutants_load_or_fail_clearly(safetensors_bytes, tmp_path, data):
    good, header_end = safetensors_bytes
    path = tmp_path / "mutant.safetensors"
    path.write_bytes(_apply(good, data.draw(_mutants(good, header_end))))
    _clear_error_or_correct_load(path)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=3), max_leaves=6)


@FUZZ
@given(data=st.data())
def test_safetensors_json_mutants_load_or_fail_clearly(safetensors_bytes, tmp_path, data):
    """Well-formed JSON with wrong values: a tensor entry, field or offset replaced by any JSON value."""
    good, header_end = safetensors_bytes
    header = json.loads(good[8:header_end])
    name = data.draw(st.sampled_from(sorted(header)))
    field = data.draw(st.sampled_from([None, "dtype", "shape", "data_offsets"]))
    value = data.draw(JSON_VALUES | st.lists(st.integers(-5, 1 << 20), max_size=3))
    if field is None or name == "__metadata__":
        header[name] = value
    else:
        header[name][field] = value
    raw = json.dumps(header).encode()
    path = tmp_path / "mutant.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + good[header_end:])
    _clear_error_or_correct_load(path)
