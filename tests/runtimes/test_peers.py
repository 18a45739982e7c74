"""Artifacts made by another tool load in our runtime: optimum's ONNX exports (run in its own venv,
since optimum pins an older transformers) of our decoder and of the real MiniLM."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from roots_edge.runtimes import load

OPTIMUM = os.environ.get("ROOTS_EDGE_OPTIMUM_CLI")
pytestmark = pytest.mark.skipif(not OPTIMUM, reason="set ROOTS_EDGE_OPTIMUM_CLI (make test does) to run")


def _optimum_export(model, task, out):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([OPTIMUM, "export", "onnx", "--model", str(model), "--task", task, str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_optimum_decoder_export_generates_like_ours(tiny_llama, tmp_path):
    out = _optimum_export(tiny_llama, "text-generation-with-past", tmp_path / "opt-llama")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # optimum may not re-save our tokenizer
        if not (out / name).exists():
            shutil.copy(tiny_llama / name, out / name)
    theirs, ref = load(out, device="cpu"), load(tiny_llama, device="cpu")
    assert theirs.info()["format"] == "onnx" and theirs.info()["task"] == "causal-lm"
    ids = ref.tokenize("Return the")
    assert theirs.generate_ids(ids, 32, ignore_eos=True) == ref.generate_ids(ids, 32, ignore_eos=True)
    assert np.abs(theirs.logits(ids) - ref.logits(ids)).max() < 1e-3


def test_optimum_minilm_export_embeds_like_pytorch(minilm_path, tmp_path):
    out = _optimum_export(minilm_path, "feature-extraction", tmp_path / "opt-minilm")
    texts = ["A wonderful film.", "The function returns None.", "Ünïcödé and emoji 🎉"]
    theirs, ref = load(out, device="cpu").embed(texts), load(minilm_path, device="cpu").embed(texts)
    assert ((theirs * ref).sum(-1) > 0.9999).all()


def test_optimum_quantized_minilm_loads_from_its_own_file_name(minilm_path, tmp_path):
    """optimum's quantizer writes `model_quantized.onnx`: the folder loads as it is."""
    out = _optimum_export(minilm_path, "feature-extraction", tmp_path / "opt-minilm")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([OPTIMUM, "onnxruntime", "quantize", "--onnx_model", str(out), "--avx2", "--per_channel",
                           "-o", str(tmp_path / "opt-int8")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "opt-int8" / "model_quantized.onnx").is_file()
    texts = ["A wonderful film.", "The function returns None."]
    theirs, ref = load(tmp_path / "opt-int8", device="cpu").embed(texts), load(minilm_path, device="cpu").embed(texts)
    assert ((theirs * ref).sum(-1) > 0.98).all()
