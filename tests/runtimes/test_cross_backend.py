"""One API over every backend: the f32 artifacts of one model give the same token ids, greedy text,
seeded samples and classifier labels on PyTorch, ONNX Runtime, OpenVINO and llama.cpp."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import SENTIMENT_HELDOUT, export_all
from roots_edge.exporters import load_source
from roots_edge.runtimes import load

F32 = ("onnx-fp32", "openvino-fp32", "gguf-f32")
PROMPTS = ("Return the", "Raise ValueError if", "The default")


@pytest.fixture(scope="module")
def decoders(tiny_llama, texts_jsonl, tmp_path_factory):
    return _f32_artifacts(tiny_llama, texts_jsonl, tmp_path_factory.mktemp("xb-dec"))


@pytest.fixture(scope="module")
def classifiers(tiny_bert_classifier, texts_jsonl, tmp_path_factory):
    return _f32_artifacts(tiny_bert_classifier, texts_jsonl, tmp_path_factory.mktemp("xb-clf"))


def _f32_artifacts(model: Path, texts: Path, root: Path) -> dict[str, Path]:
    """"torch" -> the model folder, and every f32 target -> its artifact folder."""
    made = export_all(load_source(model, calibration=texts), F32, root)
    return {"torch": model} | {t: folder for t, (folder, _) in made.items()}


def test_same_tokens_and_greedy_text_everywhere(decoders):
    models = {name: load(p, device="cpu", exact=True) for name, p in decoders.items()}
    for prompt in PROMPTS:
        ids = {n: m.tokenize(prompt) for n, m in models.items()}
        assert len({tuple(v) for v in ids.values()}) == 1, ids
        out = {n: m.generate_ids(ids["torch"], 40, ignore_eos=True) for n, m in models.items()}
        assert all(v == out["torch"] for v in out.values()), out
        text = {n: m.generate(prompt, 40) for n, m in models.items()}
        assert len(set(text.values())) == 1, text
    infos = {n: m.info() for n, m in models.items()}
    assert {i["format"] for i in infos.values()} == {"torch", "onnx", "openvino", "gguf"}
    assert all(i["context_length"] == 128 and i["device"] == "cpu" for i in infos.values()), infos


def test_one_sampler_same_seeded_samples(decoders):
    samples = {n: load(p, device="cpu", exact=True).generate("The", 24, temperature=0.9, top_p=0.95, seed=11)
               for n, p in decoders.items()}
    assert len(set(samples.values())) == 1, samples
    assert samples["torch"] != load(decoders["torch"], device="cpu").generate("The", 24)  # really sampled


def test_classifier_labels_equal_everywhere(classifiers):
    texts = [t for t, _ in SENTIMENT_HELDOUT]
    out = {n: load(p, device="cpu").classify(texts) for n, p in classifiers.items()}
    ref = out["torch"]
    for name, preds in out.items():
        assert [p["label"] for p in preds] == [p["label"] for p in ref], name
        assert np.allclose([p["score"] for p in preds], [p["score"] for p in ref], atol=1e-3), name


def test_parallel_threads_give_serial_results(decoders):
    model = load(decoders["onnx-fp32"], device="cpu")
    expected = [model.generate(p, 20) for p in PROMPTS]
    results, errors = {}, []

    def work(i):
        try:
            results[i] = model.generate(PROMPTS[i % 3], 20)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(results[i] == expected[i % 3] for i in range(9))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_memory_stays_flat_over_thousands_of_calls(classifiers, decoders):
    clf = load(classifiers["onnx-fp32"], device="cpu")
    gguf = load(decoders["gguf-f32"], device="cpu")
    for _ in range(200):
        clf.classify("A fine film.")
        gguf.generate_ids([0, 5, 9], 2)
    before = _rss_mb()
    for _ in range(2000):
        clf.classify("A fine film.")
        gguf.generate_ids([0, 5, 9], 2)
    assert _rss_mb() - before < 25


TORCH_FREE = r"""
import builtins, json, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] in ("torch", "transformers"):
        raise ImportError(f"blocked import of {name}: runtimes must run without torch")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
from roots_edge.runtimes import load
out = {}
for name, path in json.loads(sys.argv[1]).items():
    m = load(path, device="cpu")
    out[name] = m.generate_ids(m.tokenize("Return the"), 16, ignore_eos=True) if m.info()["task"] == "causal-lm" \
        else [p["label"] for p in m.classify(["A wonderful film.", "An awful film."])]
import runpy
sys.argv = ["desktop_chat.py", json.loads(sys.argv[1])["gguf-f32"], "--headless", "-n", "8"]
runpy.run_path(sys.argv[0] if False else EXAMPLE, run_name="__main__")
print(json.dumps(out))
assert "torch" not in sys.modules and "transformers" not in sys.modules
"""


def test_artifacts_run_with_torch_absent(decoders, classifiers):
    example = Path(__file__).parents[2] / "examples" / "desktop_chat.py"
    paths = {t: str(decoders[t]) for t in F32} | {f"clf-{t}": str(classifiers[t]) for t in F32}
    code = TORCH_FREE.replace("EXAMPLE", repr(str(example)))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    ref = load(decoders["torch"], device="cpu")
    expected = ref.generate_ids(ref.tokenize("Return the"), 16, ignore_eos=True)
    assert all(out[t] == expected for t in F32), out
    torch_labels = [p["label"] for p in load(classifiers["torch"]).classify(["A wonderful film.", "An awful film."])]
    assert all(out[f"clf-{t}"] == torch_labels for t in F32)
    streamed = "\n".join(lines[:-1])
    greedy = ref.generate("Return the", 8).strip()
    assert greedy and greedy in streamed  # the example streamed the same greedy text
