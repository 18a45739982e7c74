"""The ONNX Runtime backend over exported artifacts: the runtime API's verbs, damaged artifacts, and a
torch-free runtime import."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from artifacts import PROMPTS, prompt_ids as _ids
from conftest import run_python

pytest.importorskip("onnxruntime")


def test_runtime_api_verbs(llama, llama_onnx):
    """`load()` gives the shared runtime API: reset/forward keep the cache, tokenize keeps the BOS."""
    from roots_edge.runtimes import load
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    path = llama_onnx["fp32"][0]
    backend = OnnxRuntimeBackend(path / "model.onnx", device="cpu")                     # the file works too
    ids = _ids(llama, PROMPTS[1])
    assert backend.tokenize(PROMPTS[1]) == ids[0].tolist()
    backend.reset()
    first = backend.forward(ids)                                                        # (V,)
    second = backend.forward(np.array([int(first.argmax())]))
    full = backend.logits(np.c_[ids, [[int(first.argmax())]]])                         # (T+1, V)
    assert np.abs(first - full[-2]).max() < 1e-4 and np.abs(second - full[-1]).max() < 1e-4
    info = backend.info()
    assert (info["format"], info["precision"], info["task"], info["device"]) == ("onnx", "fp32", "causal-lm", "cpu")
    assert info["file_size"] == (path / "model.onnx").stat().st_size
    model = load(path, device="cpu")
    assert model.generate_ids(ids[0], 20, ignore_eos=True) == backend.greedy(ids, 20, stop_at_eos=False)


def test_damaged_artifacts_raise_a_clear_error(llama_onnx, tmp_path):
    from roots_edge.runtimes.base import RuntimeLoadError
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    src = llama_onnx["fp32"][0]
    with pytest.raises(RuntimeLoadError, match="no model.onnx"):
        OnnxRuntimeBackend(tmp_path)
    for name, keep_manifest in (("with-manifest", True), ("bare", False)):
        art = tmp_path / name
        shutil.copytree(src, art)
        if not keep_manifest:
            (art / "manifest.json").unlink()
        data = (art / "model.onnx").read_bytes()
        (art / "model.onnx").write_bytes(data[: len(data) // 2])
        with pytest.raises(RuntimeLoadError, match="truncated"):
            OnnxRuntimeBackend(art)
    (tmp_path / "bare" / "model.onnx").write_bytes(b"")
    with pytest.raises(RuntimeLoadError, match="empty"):
        OnnxRuntimeBackend(tmp_path / "bare")
    # a folder whose only graph has another name loads (optimum's `model_quantized.onnx`); two such graphs: named
    other = tmp_path / "other-name"
    shutil.copytree(src, other)
    (other / "manifest.json").unlink()
    (other / "model.onnx").rename(other / "model_quantized.onnx")
    assert OnnxRuntimeBackend(other).model_path.name == "model_quantized.onnx"
    shutil.copy(other / "model_quantized.onnx", other / "decoder.onnx")
    with pytest.raises(RuntimeLoadError, match=r"2 ONNX graphs \(decoder.onnx, model_quantized.onnx\)"):
        OnnxRuntimeBackend(other)


def test_runtime_never_imports_torch_and_exporter_imports_lazily(llama_onnx):
    code = ("import sys, numpy as np\n"
            "import roots_edge.exporters.onnx\n"
            "assert not {'onnx', 'onnxruntime', 'torch'} & set(sys.modules), 'exporter import is not lazy'\n"
            "from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend\n"
            f"b = OnnxRuntimeBackend({str(llama_onnx['int4'][0])!r})\n"
            "print(b.greedy(np.array([[0, 5, 6]]), 3, stop_at_eos=False))\n")
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    expected = OnnxRuntimeBackend(llama_onnx['int4'][0]).greedy(np.array([[0, 5, 6]]), 3, stop_at_eos=False)
    assert run_python(code).strip() == str(expected) and len(expected) == 3


def test_task_comes_from_the_manifest_and_must_match_the_model_file(llama_onnx, tmp_path):
    import json

    import roots_edge
    from roots_edge.core.errors import RuntimeLoadError

    folder = shutil.copytree(llama_onnx["fp32"][0], tmp_path / "art")
    assert roots_edge.load(folder, device="cpu").info()["task"] == "causal-lm"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["source"]["task"] = "classification"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RuntimeLoadError, match="manifest.json says the model is a classification model but the "
                                               "model file is a causal-lm model"):
        roots_edge.load(folder, device="cpu")
    (folder / "manifest.json").unlink()           # a foreign artifact: the graph's KV inputs say what it is
    assert roots_edge.load(folder, device="cpu").info()["task"] == "causal-lm"
    config = json.loads((folder / "config.json").read_text())
    del config["max_position_embeddings"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeLoadError, match="gives no context length"):
        roots_edge.load(folder, device="cpu")
