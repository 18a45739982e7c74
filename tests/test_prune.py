"""Structured pruning on tiny models: every axis removes exactly what it says, an identity prune changes no
logit, the ranking keeps what matters, and the pruned folders export with verification."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from roots_edge.core.errors import RecipeError, UnsupportedModelError
from roots_edge.model import LanguageModel
from roots_edge.train.prune import PruneConfig, measure, plan, prune_model
from roots_edge.core.spec import ModelSpec


def random_llama(tokenizer_folder, layers=3, heads=4, kv=2, hidden=64, ffn=128, family="llama"):
    """An untrained GQA decoder (head_dim 16) with a real tokenizer: pruning needs no training to be exact."""
    import transformers

    from roots_edge.data.folder import load_hf_tokenizer

    tok = load_hf_tokenizer(tokenizer_folder)
    kind = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
            "qwen3": ("Qwen3Config", "Qwen3ForCausalLM")}[family]
    cfg = getattr(transformers, kind[0])(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=hidden // heads, max_position_embeddings=128,
        tie_word_embeddings=False, architectures=[kind[1]], bos_token_id=0, eos_token_id=1, pad_token_id=2)
    torch.manual_seed(0)
    model = getattr(transformers, kind[1])(cfg).eval()
    return LanguageModel(model, tok, ModelSpec.from_hf_config(cfg.to_dict()))


@pytest.fixture(scope="module")
def texts(small_corpus):
    return small_corpus.train[:60]


@pytest.fixture(scope="module")
def ids():
    return torch.tensor([[5, 17, 99, 3, 42, 7, 250, 11, 64, 8, 301, 2]])


def logits(lm, ids):
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def test_identity_prune_changes_no_logit(tiny_llama, texts, ids):
    lm = LanguageModel.from_pretrained(tiny_llama)
    for cfg in (PruneConfig(), PruneConfig(layers=list(range(lm.spec.num_layers)))):
        same = lm.prune(cfg, texts, progress=False)
        assert torch.equal(logits(same, ids), logits(lm, ids))
        assert same.info()["parameters"] == lm.info()["parameters"]


def test_ffn_prune_equals_zeroing_the_removed_channels(tiny_llama, texts, ids):
    lm = random_llama(tiny_llama)
    small = lm.prune(PruneConfig(ffn=0.5), texts, progress=False)
    kept = small.record["pruned"]["kept"]["ffn"]
    assert small.spec.intermediate_size == kept["kept"] == 64
    for layer in lm.model.model.layers:                          # (in, F) columns of the removed channels
        assert tuple(layer.mlp.down_proj.weight.shape) == (64, 128)
    masked = random_llama(tiny_llama)
    p = plan(lm.model, lm.spec, PruneConfig(ffn=0.5), measure(lm.model, lm.tokenizer, lm.spec, texts, False))
    for layer, keep in zip(masked.model.model.layers, p.ffn):
        drop = sorted(set(range(128)) - set(keep))
        layer.mlp.down_proj.weight.data[:, drop] = 0
    assert torch.allclose(logits(small, ids), logits(masked, ids), atol=1e-5)
    assert tuple(small.model.model.layers[0].mlp.gate_proj.weight.shape) == (64, 64)


def test_head_and_group_prune_equals_zeroing_the_removed_heads(tiny_llama, texts, ids):
    lm = random_llama(tiny_llama, heads=8, kv=4, hidden=64)        # head_dim 8, two query heads per group
    cfg = PruneConfig(heads=0.25, kv_heads=0.5)                    # 2 groups of 1 query head
    stats = measure(lm.model, lm.tokenizer, lm.spec, texts, False)
    p = plan(lm.model, lm.spec, cfg, stats)
    small = lm.prune(cfg, texts, progress=False)
    assert (small.spec.num_heads, small.spec.num_kv_heads, small.spec.head_dim) == (2, 2, 8)
    attn = small.model.model.layers[0].self_attn
    assert tuple(attn.q_proj.weight.shape) == (16, 64) and tuple(attn.k_proj.weight.shape) == (16, 64)
    assert tuple(attn.o_proj.weight.shape) == (64, 16)
    for heads, groups in zip(p.heads, p.kv_groups):
        assert len(groups) == 2 and [h // 2 for h in heads] == groups   # each kept head sits in a kept group
    masked = random_llama(tiny_llama, heads=8, kv=4, hidden=64)
    for layer, heads in zip(masked.model.model.layers, p.heads):
        drop = [h * 8 + j for h in range(8) if h not in heads for j in range(8)]
        layer.self_attn.o_proj.weight.data[:, drop] = 0
    assert torch.allclose(logits(small, ids), logits(masked, ids), atol=1e-5)


def test_ranking_keeps_the_heads_channels_and_layers_that_matter(tiny_llama, texts):
    lm = random_llama(tiny_llama, layers=4)
    layer = lm.model.model.layers[1]
    layer.self_attn.o_proj.weight.data[:, 16:32] *= 20             # head 1 of layer 1 dominates
    layer.mlp.down_proj.weight.data[:, 77] *= 50                    # so does FFN channel 77
    lm.model.model.layers[2].mlp.down_proj.weight.data *= 30        # layer 2 turns the residual stream most
    lm.model.model.layers[2].self_attn.o_proj.weight.data *= 30
    for norm in (l.input_layernorm for l in lm.model.model.layers):
        norm.weight.data[9] = 8.0                                   # hidden channel 9 carries the most energy
    stats = measure(lm.model, lm.tokenizer, lm.spec, texts, False)
    widths = plan(lm.model, lm.spec, PruneConfig(heads=0.5, ffn=0.25, hidden=0.5), stats)
    assert widths.layers == [0, 1, 2, 3]
    assert 1 in widths.heads[1] and 77 in widths.ffn[1] and len(widths.ffn[1]) == 32
    assert 9 in widths.hidden and len(widths.hidden) == 32
    depth = plan(lm.model, lm.spec, PruneConfig(layers=2), stats)
    assert 2 in depth.layers and len(depth.layers) == 2
    assert stats["block_importance"][2] == max(stats["block_importance"])


def test_hidden_and_layer_prune_shapes_and_runs(tiny_llama, texts, ids):
    lm = random_llama(tiny_llama, layers=3, hidden=64, ffn=128)
    small = lm.prune(PruneConfig(hidden=0.5, layers=[0, 2], ffn=0.75, multiple_of=32), texts, progress=False)
    s = small.spec
    assert (s.hidden_size, s.num_layers, s.intermediate_size, s.head_dim) == (32, 2, 96, 16)
    emb = small.model.model.embed_tokens.weight
    assert tuple(emb.shape) == (len(lm.tokenizer), 32)
    assert tuple(small.model.lm_head.weight.shape) == (len(lm.tokenizer), 32)
    assert tuple(small.model.model.layers[1].self_attn.q_proj.weight.shape) == (64, 32)
    assert tuple(small.model.model.norm.weight.shape) == (32,)
    kept = small.record["pruned"]["kept"]
    assert kept["layers"]["kept"] == [0, 2] and kept["hidden"] == {"kept": 32, "of": 64}
    out = logits(small, ids)
    assert out.shape == (1, ids.shape[1], len(lm.tokenizer)) and torch.isfinite(out).all()


def test_multiple_of_rounds_widths_down(tiny_llama, texts):
    lm = random_llama(tiny_llama, hidden=64, ffn=128)
    small = lm.prune(PruneConfig(ffn=0.6, hidden=0.9, multiple_of=32), texts, progress=False)
    assert small.spec.intermediate_size == 64 and small.spec.hidden_size == 32


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_families_with_biases_and_qk_norms(tiny_llama, texts, ids, family):
    lm = random_llama(tiny_llama, family=family, heads=4, kv=2)
    small = lm.prune(PruneConfig(heads=0.5, kv_heads=0.5, ffn=0.5, hidden=0.5), texts, progress=False)
    assert (small.spec.num_heads, small.spec.num_kv_heads, small.spec.hidden_size) == (2, 1, 32)
    assert torch.isfinite(logits(small, ids)).all()
    if family == "qwen2":
        assert tuple(small.model.model.layers[0].self_attn.q_proj.bias.shape) == (32,)


@pytest.mark.parametrize("cfg, message", [
    (PruneConfig(heads=0.0), "fraction to keep"),
    (PruneConfig(ffn=1.5), "fraction to keep"),
    (PruneConfig(layers=0), "at least one layer"),
    (PruneConfig(layers=[]), "at least one"),
    (PruneConfig(layers=[0, 7]), "do not exist"),
    (PruneConfig(layers=9), "only 3 layers"),
    (PruneConfig(heads=0.25), "fewer heads than"),           # 1 query head for 2 KV groups
    (PruneConfig(heads=0.75), "multiple of 2"),              # 3 query heads in 2 groups
    (PruneConfig(heads=1.0, kv_heads=0.5), "per group"),     # 4 heads in 1 group of 2
    (PruneConfig(multiple_of=0), "positive integer"),
])
def test_prunes_the_model_cannot_take_are_refused(tiny_llama, texts, cfg, message):
    lm = random_llama(tiny_llama)
    with pytest.raises(RecipeError, match=message):
        prune_model(lm.model, lm.tokenizer, lm.spec, cfg, texts)


def test_bert_prunes_ffn_and_layers_and_refuses_heads(tiny_bert_classifier):
    clf = LanguageModel.from_pretrained(tiny_bert_classifier)
    texts = ["A charming and funny film.", "The worst film I have seen.", "Great fun.", "Dull and slow."] * 4
    small = clf.prune(PruneConfig(ffn=0.5, layers=1), texts, progress=False)
    assert (small.spec.num_layers, small.spec.intermediate_size) == (1, 64)
    assert small.spec.labels == clf.spec.labels
    assert small.predict("A charming and funny film.")["label"] in clf.spec.labels
    with pytest.raises(UnsupportedModelError, match="head size"):
        clf.prune(PruneConfig(heads=0.5), texts)
    with pytest.raises(UnsupportedModelError, match="decoders"):
        clf.prune(PruneConfig(hidden=0.5), texts)
    same = clf.prune(PruneConfig(), texts, progress=False)
    enc = clf.tokenizer(texts[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(same.model(**enc).logits, clf.model(**enc).logits)


def test_pruned_model_exports_to_every_format_with_verification(tiny_llama, texts, tmp_path):
    lm = LanguageModel.from_pretrained(tiny_llama)
    small = lm.prune(PruneConfig(heads=0.5, ffn=0.5, hidden=0.5), texts, progress=False)
    folder = small.save_pretrained(tmp_path / "pruned")
    again = LanguageModel.from_pretrained(folder)
    record = json.loads((folder / "roots_edge.json").read_text())
    assert record["kind"] == "pruned" and record["pruned"]["parameters"]["after"] < record["pruned"]["parameters"]["before"]
    for target in ("gguf-f32", "onnx-fp32", "openvino-fp32"):
        manifest = again.export(target, tmp_path / target)
        assert manifest["verification"]["passed"] is True, (target, manifest["verification"])


def test_cli_prune_writes_a_folder_with_provenance(tiny_llama, tmp_path, texts):
    from roots_edge.cli import main

    data = tmp_path / "calib.txt"
    data.write_text("\n\n".join(texts))
    out = tmp_path / "small"
    res = CliRunner().invoke(main, ["prune", str(tiny_llama), "--ffn", "0.5", "--layers", "1",
                                    "--calibration", str(data), "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output
    record = json.loads((out / "roots_edge.json").read_text())
    assert record["pruned"]["config"]["ffn"] == 0.5 and record["pruned"]["calibration"]["tokens"] > 0
    bad = CliRunner().invoke(main, ["prune", str(tiny_llama), "--layers", "x,y", "-o", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "--layers" in bad.output


def test_gemma3_prunes_heads_ffn_and_layers(tiny_family, texts, ids):
    lm = LanguageModel.from_pretrained(tiny_family("gemma3"))
    same = lm.prune(PruneConfig(), texts, progress=False)
    assert torch.equal(logits(same, ids), logits(lm, ids))
    n = lm.spec.num_layers
    small = lm.prune(PruneConfig(ffn=0.5, layers=max(1, n - 1)), texts, progress=False)
    assert small.spec.num_layers == max(1, n - 1)
    assert len(small.model.config.layer_types) == small.spec.num_layers
    assert torch.isfinite(logits(small, ids)).all()
    with pytest.raises(UnsupportedModelError, match="sqrt"):
        lm.prune(PruneConfig(hidden=0.5), texts)
