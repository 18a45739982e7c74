"""The llama.cpp backend over exported GGUF files: incremental decode against a full prefill, damaged files,
and a torch-free runtime import."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from artifacts import gguf_file as _gguf  # noqa: E402
from conftest import run_python  # noqa: E402
from roots_edge.runtimes.base import RuntimeLoadError  # noqa: E402
from roots_edge.runtimes.llamacpp import LlamaCppBackend  # noqa: E402


def test_backend_forward_matches_full_prefill(llama_exports):
    backend = LlamaCppBackend(llama_exports["gguf-f32"][0], device="cpu")
    ids = np.array([backend.tokenize("Return the number of items in the list.")])
    full = backend.logits(ids)                                   # (T, V)
    backend.reset()
    first = backend.forward(ids[0, :5])
    steps = [backend.forward(ids[0, i:i + 1]) for i in range(5, ids.shape[1])]
    np.testing.assert_allclose(np.stack([first, *steps]), full[4:], atol=1e-4)
    assert full.shape == (ids.shape[1], 512) and full.dtype == np.float32
    info = backend.info()
    assert (info["precision"], info["task"], info["context_length"]) == ("F32", "causal-lm", 128)


def test_damaged_files_raise_clear_errors(llama_exports, tmp_path):
    good = _gguf(llama_exports["gguf-f16"][0]).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(RuntimeLoadError, match="truncated"):
        LlamaCppBackend(cut)
    head_only = tmp_path / "head.gguf"
    head_only.write_bytes(good[:100])
    with pytest.raises(RuntimeLoadError, match="truncated or corrupt"):
        LlamaCppBackend(head_only)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(RuntimeLoadError, match="not a GGUF file"):
        LlamaCppBackend(junk)
    with pytest.raises(RuntimeLoadError, match="does not exist"):
        LlamaCppBackend(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeLoadError, match="holds 0 .gguf files"):
        LlamaCppBackend(tmp_path / "empty")


def test_runtime_never_imports_torch_and_exporter_imports_lazily(llama_exports):
    path = _gguf(llama_exports["gguf-q8"][0])
    code = ("import sys, numpy as np\n"
            "import roots_edge.exporters.gguf\n"
            "assert not {'gguf', 'llama_cpp', 'torch'} & set(sys.modules), 'heavy import'\n"
            "from roots_edge.runtimes.llamacpp import LlamaCppBackend\n"
            f"b = LlamaCppBackend({str(path)!r}, device='cpu')\n"
            "x = b.logits(np.array([b.tokenize('Return the value')]))\n"
            "print(x.shape)\n")
    assert run_python(code).strip() == "(4, 512)"


def test_context_sizes_the_kv_cache_and_is_checked(llama_exports):
    import roots_edge

    folder = llama_exports["gguf-q8"][0]
    small = roots_edge.load(folder, device="cpu", context=64).info()
    assert (small["context_length"], small["max_context"]) == (64, 128)
    kv = small["kv_cache"]
    assert kv["type"] == "f16" and kv["tokens"] == 256            # llama.cpp rounds n_ctx up to a multiple of 256
    assert kv["bytes"] == 256 * kv["bytes_per_token"]
    # 1 layer, 2 KV heads of 64: keys and values in f16 per token
    assert kv["bytes_per_token"] == 2 * 1 * 2 * 64 * 2
    exact = roots_edge.load(folder, device="cpu", exact=True).info()
    assert exact["context_length"] == 128 and exact["kv_cache"]["type"] == "f32"     # default: min(2048, 128)
    assert exact["kv_cache"]["bytes_per_token"] == 2 * kv["bytes_per_token"]
    with pytest.raises(RuntimeLoadError, match="context 4,096 is more than .* trained for \\(128 tokens\\)"):
        roots_edge.load(folder, device="cpu", context=4096)
    with pytest.raises(RuntimeLoadError, match="positive number of tokens"):
        roots_edge.load(folder, device="cpu", context=0)
    from roots_edge.core.errors import ContextOverflowError

    with pytest.raises(ContextOverflowError, match="context holds 64.*--context N; this model allows up to 128"):
        roots_edge.load(folder, device="cpu", context=64).generate("word " * 80, 4)


def test_context_applies_to_every_backend(llama_exports, llama_onnx, llama_ir):
    import roots_edge

    for folder in (llama_onnx["fp32"][0], llama_ir["fp32"][0]):
        info = roots_edge.load(folder, device="cpu", context=32).info()
        assert info["context_length"] == 32 and info["kv_cache"]["bytes"] == 32 * info["kv_cache"]["bytes_per_token"]
    ov = roots_edge.load(llama_ir["fp32"][0], device="cpu").info()["kv_cache"]
    assert ov["type"] in ("u8", "f16", "bf16", "f32")   # the CPU plugin's own default
    assert roots_edge.load(llama_ir["fp32"][0], device="cpu", exact=True).info()["kv_cache"]["type"] == "f32"
