import json

import pytest

from roots_edge.core.errors import CorruptModelError, ModelNotFoundError, NotAModelError, UnsupportedModelError
from roots_edge.data.folder import check_folder, resolve
from roots_edge.core.spec import read_spec


def test_minilm_spec(minilm_path):
    spec = read_spec(minilm_path)
    assert (spec.family, spec.task, spec.hidden_size, spec.num_layers) == ("bert", "embedding", 384, 6)


def test_tiny_llama_spec(tiny_llama):
    spec = check_folder(tiny_llama)
    assert spec.family == "llama" and spec.task == "causal-lm"
    assert (spec.hidden_size, spec.num_kv_heads, spec.head_dim, spec.vocab_size) == (64, 1, 32, 512)
    assert spec.tie_embeddings and spec.rope_theta == 10000.0


def test_unsupported_architecture_names_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError, match="llama: LlamaForCausalLM.*bert: BertModel"):
        read_spec(tmp_path)


def test_bad_folders(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve(tmp_path / "nope")
    with pytest.raises(NotAModelError, match="no config.json"):
        check_folder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(NotAModelError, match="not valid JSON"):
        check_folder(tmp_path)


def test_pickled_weights_are_refused(tmp_path, tiny_llama):
    (tmp_path / "config.json").write_text((tiny_llama / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(NotAModelError, match="never loaded"):
        check_folder(tmp_path)


def test_hub_id_needs_consent_and_fails_offline(monkeypatch):
    with pytest.raises(ModelNotFoundError, match="never downloads unless asked"):
        resolve("someone/some-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="offline mode"):
        resolve("someone/some-model", allow_download=True)


def test_truncated_weights_raise_clear_error(tmp_path, tiny_llama):
    import shutil

    from roots_edge.data.folder import load_torch

    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama, bad)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CorruptModelError, match="truncated or corrupt"):
        load_torch(bad)
    w.write_bytes(b"\x0e\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(CorruptModelError, match="corrupt safetensors header"):
        check_folder(bad)
