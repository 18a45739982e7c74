"""Every backend keeps `Backend`'s contract (runtimes/base.py): the attributes it sets when it loads, the verbs
of its task with the shapes and dtypes the runtime relies on, and `info()`'s keys. One parametrised test per
kind of model, over the four backends on the same tiny models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roots_edge.runtimes import load
from roots_edge.runtimes.base import Backend

DECODERS = {"torch": lambda f: Path(f["tiny_llama"]), "gguf": lambda f: f["llama_exports"]["gguf-f32"][0],
            "onnx": lambda f: f["llama_onnx"]["fp32"][0], "openvino": lambda f: f["llama_ir"]["fp32"][0]}
CLASSIFIERS = {"torch": lambda f: Path(f["tiny_bert_classifier"]), "gguf": lambda f: f["bert_exports"]["gguf-f32"][0],
               "onnx": lambda f: f["bert_onnx"]["fp32"][0], "openvino": lambda f: f["bert_ir"]["fp32"][0]}


@pytest.fixture(scope="module")
def folders(request):
    names = ("tiny_llama", "llama_exports", "llama_onnx", "llama_ir", "tiny_bert_classifier", "bert_exports",
             "bert_onnx", "bert_ir")
    return {name: request.getfixturevalue(name) for name in names}


def keeps_the_attributes(backend, fmt: str) -> None:
    assert backend.format == fmt and type(backend) is Backend.registry[fmt]
    for name, kind in Backend.ATTRIBUTES.items():
        assert isinstance(getattr(backend, name), kind), (fmt, name, getattr(backend, name, None))
    assert 0 < backend.context_length <= backend.max_context, fmt
    info = backend.info()
    assert set(Backend.INFO_KEYS) <= set(info), (fmt, set(Backend.INFO_KEYS) - set(info))
    assert (info["format"], info["task"], info["labels"]) == (fmt, backend.task, backend.labels)


@pytest.mark.parametrize("fmt", list(DECODERS))
def test_decoders_keep_the_contract(folders, fmt):
    backend = load(DECODERS[fmt](folders), device="cpu").backend
    keeps_the_attributes(backend, fmt)
    assert backend.task == "causal-lm" and backend.labels == [] and backend.eos_ids
    ids = backend.tokenize("Return the value")
    full = backend.logits(np.asarray([ids], dtype=np.int64))
    assert full.dtype == np.float32 and full.shape[0] == len(ids)
    backend.reset()
    first = backend.forward(np.asarray(ids, dtype=np.int64))
    step = backend.forward(np.asarray([int(first.argmax())], dtype=np.int64))
    assert first.shape == step.shape == (full.shape[1],) and first.dtype == np.float32
    np.testing.assert_allclose(first, full[-1], atol=2e-3)      # the KV path and the full prefill agree
    assert isinstance(backend.detokenize(ids), str) and backend.chat_facts() is not None
    with pytest.raises(NotImplementedError):
        backend.classify_logits(["a text"])


@pytest.mark.parametrize("fmt", list(CLASSIFIERS))
def test_classifiers_keep_the_contract(folders, fmt):
    backend = load(CLASSIFIERS[fmt](folders), device="cpu").backend
    keeps_the_attributes(backend, fmt)
    assert backend.task == "classification" and backend.labels == ["negative", "positive"]
    scores = np.asarray(backend.classify_logits(["A wonderful film.", "Dull and far too long."]))
    assert scores.shape == (2, 2) and np.isfinite(scores).all()
    for decoder_verb in (backend.reset, lambda: backend.logits(np.asarray([[1, 2]], dtype=np.int64))):
        with pytest.raises(NotImplementedError):
            decoder_verb()


def test_every_registered_backend_is_covered():
    assert set(Backend.registry) == set(DECODERS) == set(CLASSIFIERS)


@pytest.mark.parametrize("fmt", list(DECODERS))
def test_each_format_declares_its_facts_and_claims_its_own_artifacts(folders, fmt):
    """Detection, weight files and install hints come from the backend class's `facts`, and they describe what
    the exporters really write: the format claims its artifact (and no other format's), and its weight files
    are the bulk of the artifact."""
    import importlib

    from roots_edge.runtimes import backends, detect_format, facts

    assert list(backends()) == ["gguf", "openvino", "onnx", "torch"]        # detection order
    path = DECODERS[fmt](folders)
    cls = Backend.registry[fmt]
    assert cls.claims(path) and detect_format(path) == fmt
    assert [f for f, other in backends().items() if f != fmt and other.claims(path) and f != "torch"] == []
    f = facts(fmt)
    weights = f.weight_files(path)
    assert weights and all(w.exists() for w in weights)
    total = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    assert 0.5 * total < f.weight_bytes(path) <= total, (fmt, [w.name for w in weights])
    for module in f.libraries:                    # the libraries named in "pip install roots-edge[extra]" exist
        importlib.import_module(module)
    if fmt != "torch":
        assert f.run_extra and f.distribution and f.version_key


def test_a_new_format_is_one_backend_class(tmp_path):
    """The registry is all a consumer reads: a backend class declared elsewhere is detected, and its weights
    counted, without touching runtimes/__init__.py, deploy or the bench (here one for a made-up `.toy` file)."""
    from roots_edge.runtimes import detect_format
    from roots_edge.runtimes.bench import weight_bytes
    from roots_edge.runtimes.base import FormatFacts

    class ToyBackend(Backend, format="toy"):
        facts = FormatFacts(module="toy", suffix=".toy", markers=("*.toy",), weights=("*.toy",), libraries=("toy",),
                            extra="toy")

    try:
        (tmp_path / "m.toy").write_bytes(b"x" * 10)
        assert ToyBackend.claims(tmp_path / "m.toy") and ToyBackend.claims(tmp_path)
        assert detect_format(tmp_path) == detect_format(tmp_path / "m.toy") == "toy"
        assert weight_bytes(tmp_path) == 10
    finally:
        del Backend.registry["toy"]
