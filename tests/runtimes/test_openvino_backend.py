"""The OpenVINO backend over exported IR: greedy decode against PyTorch, `roots_edge.load`, broken
artifacts, and a torch-free runtime import."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from artifacts import PROMPTS
from conftest import run_python, torch_greedy

pytest.importorskip("openvino")


def test_backend_greedy_equals_torch_generate(llama, llama_ir):
    from roots_edge.runtimes.openvino import OpenVinoBackend

    backend = OpenVinoBackend(llama_ir["fp32"][0], threads=2)
    for prompt in PROMPTS:
        ids = llama.tokenizer(prompt, return_tensors="np")["input_ids"].astype(np.int64)
        assert backend.greedy(ids, 40) == torch_greedy(llama, ids, 40), prompt
    full = backend.logits(ids)                       # the state was reset: same as a fresh prefill
    assert full.shape == (ids.shape[1], llama.spec.vocab_size) and full.dtype == np.float32


def test_runtime_load_generates_like_torch(llama, llama_ir):
    """`roots_edge.runtimes.load` picks this backend from the folder; its decode loop (reset/forward)
    reproduces PyTorch's greedy text, and the int4 artifact reports what it is."""
    from roots_edge.runtimes import load

    model = load(llama_ir["fp32"][0], device="cpu")
    for prompt in PROMPTS:
        ids = llama.tokenizer(prompt, return_tensors="np")["input_ids"].astype(np.int64)
        expected = llama.tokenizer.decode(torch_greedy(llama, ids, 24), skip_special_tokens=True)
        assert model.generate(prompt, max_new_tokens=24) == expected, prompt
    info = load(llama_ir["int4"][0], device="cpu", threads=1).info()
    assert (info["format"], info["precision"], info["task"], info["stateful"]) == ("openvino", "int4", "causal-lm", True)
    assert info["file_size"] == (llama_ir["int4"][0] / "openvino_model.bin").stat().st_size


def test_broken_artifacts_raise_clear_errors(llama_ir, tmp_path):
    from roots_edge.runtimes.base import RuntimeLoadError
    from roots_edge.runtimes.openvino import OpenVinoBackend

    good = llama_ir["fp32"][0]
    truncated = shutil.copytree(good, tmp_path / "truncated")
    data = (truncated / "openvino_model.bin").read_bytes()
    (truncated / "openvino_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeLoadError, match="truncated"):
        OpenVinoBackend(truncated)
    (truncated / "manifest.json").unlink()          # without the manifest OpenVINO's own check still fires
    with pytest.raises(RuntimeLoadError, match="Incorrect weights|truncated"):
        OpenVinoBackend(truncated)
    missing = shutil.copytree(good, tmp_path / "missing")
    (missing / "openvino_model.xml").unlink()
    with pytest.raises(RuntimeLoadError, match="no openvino_model.xml"):
        OpenVinoBackend(missing)
    garbage = shutil.copytree(good, tmp_path / "garbage")
    (garbage / "openvino_model.xml").write_text("<net><layers>")
    with pytest.raises(RuntimeLoadError, match="corrupt"):
        OpenVinoBackend(garbage)
    with pytest.raises(RuntimeLoadError, match="not a folder"):
        OpenVinoBackend(tmp_path / "nowhere")


def test_runtime_never_imports_torch_and_exporter_import_is_cheap(llama_ir):
    folder = llama_ir["int4"][0]
    code = ("import sys, numpy as np\n"
            "import roots_edge.exporters.openvino\n"
            "assert 'openvino' not in sys.modules and 'torch' not in sys.modules\n"
            "from roots_edge.runtimes.openvino import OpenVinoBackend\n"
            f"b = OpenVinoBackend({str(folder)!r})\n"
            "print(b.greedy(np.array([[0, 5, 9]]), 5, stop_at_eos=False))\n")
    from roots_edge.runtimes.openvino import OpenVinoBackend

    expected = OpenVinoBackend(folder).greedy(np.array([[0, 5, 9]]), 5, stop_at_eos=False)
    assert run_python(code).strip() == str(expected) and len(expected) == 5
