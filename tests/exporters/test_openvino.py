"""OpenVINO IR: stateful Llama decoders and BERT encoders, every target exported once and checked
against PyTorch, in OpenVINO itself, in openvino-genai, and through roots-edge's own backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SENTIMENT_HELDOUT, SENTIMENT_TRAIN, source_with_texts, torch_greedy

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")

from artifacts import GROUP, OV_PRECISIONS as PRECISIONS, PROMPTS  # noqa: E402


def _constants(xml: Path) -> list:
    model = ov.Core().read_model(str(xml))
    return [op for op in model.get_ops() if op.get_type_name() == "Constant"]


# ---------------------------------------------------------------------------------------------- decoders
def test_decoder_ir_is_stateful_with_genai_names(llama, llama_ir):
    folder, manifest = llama_ir["fp32"]
    model = ov.Core().read_model(str(folder / "openvino_model.xml"))
    assert [p.get_any_name() for p in model.inputs] == ["input_ids", "attention_mask", "position_ids", "beam_idx"]
    assert [p.get_any_name() for p in model.outputs] == ["logits"]
    assert model.input("beam_idx").get_element_type() == ov.Type.i32
    assert str(model.output("logits").get_partial_shape()) == f"[?,?,{llama.spec.vocab_size}]"
    ops = [op.get_type_name() for op in model.get_ops()]
    n_state = 2 * llama.spec.num_layers
    assert len(model.get_sinks()) == n_state
    assert ops.count("ReadValue") == ops.count("Assign") == n_state
    assert ops.count("ScaledDotProductAttention") == llama.spec.num_layers  # fused attention kept
    assert manifest["stateful"] is True and manifest["compression"] == {"method": "none", "float_weights": "f32"}
    names = {f["name"] for f in manifest["files"]}
    assert {"openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_tokenizer.bin",
            "openvino_detokenizer.xml", "openvino_detokenizer.bin", "tokenizer.json", "tokenizer_config.json",
            "config.json", "generation_config.json"} <= names
    assert set(manifest["versions"]) >= {"openvino", "nncf", "openvino_tokenizers"}


# Measured on the tiny Llama: fp32 ~3e-6, fp16 ~4e-3 (max |dlogit|); int8 KL ~3e-5, int4 (g32, AWQ) KL ~1e-3
DECODER_LIMITS = {"fp32": dict(max_logit_diff=1e-4, top1=1.0), "fp16": dict(max_logit_diff=0.05, top1=0.99),
                  "int8": dict(kl=5e-4, top1=0.98), "int4": dict(kl=1e-2, top1=0.93)}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_decoder_verification_metrics(llama_ir, precision):
    _, manifest = llama_ir[precision]
    v = manifest["verification"]
    assert v["passed"] is True and v["texts"] == 16
    metrics, limits = v["metrics"], DECODER_LIMITS[precision]
    assert metrics["n"] > 300
    for key, limit in limits.items():
        assert (metrics[key] >= limit) if key == "top1" else (metrics[key] <= limit), (key, metrics)


def test_decoder_sizes_follow_precision(llama, llama_ir):
    bits = {p: m["bits_per_weight"] for p, (_, m) in llama_ir.items()}
    assert 31.9 < bits["fp32"] < 32.2 and 15.9 < bits["fp16"] < 16.2
    assert 8.0 < bits["int8"] < 9.0            # u8 weights + per-channel f16 scales and zero points
    # the tied embedding stays 8-bit (NNCF's backup precision), and 40% of the matrices (ratio 0.6)
    assert bits["int4"] < 7.0 and bits["int4"] < bits["int8"] - 1
    n_params = sum(p.numel() for p in llama.model.parameters())
    for folder, m in llama_ir.values():  # bits per weight count the IR's .bin only, not the tokenizer files
        assert m["bits_per_weight"] == round(8 * (folder / "openvino_model.bin").stat().st_size / n_params, 3)


def test_int4_weights_are_really_4bit_in_groups(llama, llama_ir):
    folder, manifest = llama_ir["int4"]
    c = manifest["compression"]
    assert (c["mode"], c["group_size"], c["ratio"], c["awq"], c["scale_estimation"]) == \
        ("INT4_ASYM", GROUP, 0.6, True, True)
    assert c["calibration_items"] == 24        # 40 texts minus 16 kept for verification
    spec = llama.spec
    linear = spec.num_layers * (spec.hidden_size * (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_dim
                                + spec.num_heads * spec.head_dim * spec.hidden_size
                                + 3 * spec.hidden_size * spec.intermediate_size)
    weights = [op for op in _constants(folder / "openvino_model.xml")
               if op.get_output_element_type(0).get_type_name() == "u4" and op.get_output_shape(0)[-1] == GROUP]
    u4 = sum(int(np.prod(op.get_output_shape(0))) for op in weights)
    assert 0.5 * linear < u4 <= 0.6 * linear        # ratio 0.6: NNCF keeps the most sensitive matrices in u8
    assert manifest["weight_elements"]["u8"] >= spec.vocab_size * spec.hidden_size + (linear - u4)
    assert all(len(op.get_output_shape(0)) == 3 for op in weights)             # (out, in / group, group)
    assert manifest["weight_elements"]["u8"] >= spec.vocab_size * spec.hidden_size  # tied embedding, 8-bit


def test_int8_weights_are_8bit(llama, llama_ir):
    folder, manifest = llama_ir["int8"]
    assert manifest["compression"]["mode"] == "INT8_ASYM"
    u8 = [op.get_output_shape(0) for op in _constants(folder / "openvino_model.xml")
          if op.get_output_element_type(0).get_type_name() == "u8"]
    weights = sum(int(np.prod(s)) for s in u8 if s[-1] > 1)          # (out, in); zero points are (out, 1)
    assert weights == sum(p.numel() for n, p in llama.model.named_parameters() if "norm" not in n)
    assert "u4" not in manifest["weight_elements"]


def test_genai_pipeline_matches_torch(llama, llama_ir):
    og = pytest.importorskip("openvino_genai")
    folder = llama_ir["fp32"][0]
    pipe = og.LLMPipeline(str(folder), "CPU", INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
    config = og.GenerationConfig(max_new_tokens=32, do_sample=False)
    for prompt in PROMPTS:
        ids = llama.tokenizer(prompt, return_tensors="np")["input_ids"].astype(np.int64)
        expected = torch_greedy(llama, ids, 32)
        tokens = pipe.generate(ov.Tensor(ids), config).tokens[0]
        text = pipe.generate(prompt, config)
        assert list(tokens) == expected, prompt
        assert text == llama.tokenizer.decode(expected, skip_special_tokens=True), prompt


# ---------------------------------------------------------------------------------------------- encoders
def test_encoder_ir_inputs_outputs(bert, bert_ir):
    folder, manifest = bert_ir["fp32"]
    model = ov.Core().read_model(str(folder / "openvino_model.xml"))
    assert [p.get_any_name() for p in model.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(str(p.get_partial_shape()) == "[?,?]" for p in model.inputs)  # dynamic batch and sequence
    assert manifest["outputs"] == {"logits": "[?,2]"} and manifest["stateful"] is False
    assert (folder / "openvino_tokenizer.xml").is_file() and not (folder / "openvino_detokenizer.xml").exists()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_classifier_labels_agree_with_torch(bert, bert_ir, precision):
    from roots_edge.train.classifier import predict_proba
    from roots_edge.runtimes.openvino import OpenVinoBackend

    folder, manifest = bert_ir[precision]
    texts = [t for t, _ in SENTIMENT_TRAIN + SENTIMENT_HELDOUT]
    ref = predict_proba(bert.model, bert.tokenizer, texts)                          # (N, 2)
    logits = OpenVinoBackend(folder).classify_logits(texts)                          # (N, 2)
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    assert (ref.argmax(-1) == prob.argmax(-1)).mean() == 1.0
    drift = np.abs(ref - prob).max()
    assert drift < {"fp32": 1e-5, "fp16": 2e-3, "int8": 0.1, "int4": 0.1}[precision], drift
    assert manifest["verification"]["metrics"]["agreement"] == 1.0
    if precision == "int8":  # through the runtime API too: labels by name
        from roots_edge.runtimes import load

        preds = load(folder, device="cpu").classify([t for t, _ in SENTIMENT_HELDOUT])
        want = [bert.spec.labels[i] for i in ref[-len(SENTIMENT_HELDOUT):].argmax(-1)]
        assert [p["label"] for p in preds] == want


def test_encoder_int8_is_nncf_post_training_quantization(bert_ir):
    folder, manifest = bert_ir["int8"]
    c = manifest["compression"]
    assert c["method"] == "nncf.quantize" and c["model_type"] == "TRANSFORMER" and c["calibration_items"] == 22
    ops = [op.get_type_name() for op in ov.Core().read_model(str(folder / "openvino_model.xml")).get_ops()]
    assert ops.count("FakeQuantize") >= 8          # activations quantized, not only weights
    assert manifest["weight_elements"]["i8"] > 0.9 * sum(manifest["weight_elements"].values())


def test_encoder_int4_compresses_the_body_to_4bit(bert_ir):
    _, manifest = bert_ir["int4"]
    c = manifest["compression"]
    # AWQ matches decoder MLPs only, so it defaults off for BERT; scale estimation runs on calibration text
    assert (c["group_size"], c["awq"], c["scale_estimation"], c["calibration_items"]) == (GROUP, False, True, 22)
    layers, hidden, ffn = 2, 64, 128
    body = layers * (4 * hidden * hidden + 2 * hidden * ffn)
    assert c["ratio"] == 0.6 and 0.5 * body <= manifest["weight_elements"]["u4"] < body   # the most sensitive: u8


def test_embedder_matches_language_model_embed(tiny_bert_classifier, tmp_path):
    """A BertModel (no head) exports `last_hidden_state`; the backend mean-pools like `LanguageModel.embed`."""
    from transformers import BertForSequenceClassification

    from roots_edge.exporters import ExportOptions, export
    from roots_edge.model import LanguageModel
    from roots_edge.data.folder import save_folder
    from roots_edge.runtimes.openvino import OpenVinoBackend

    clf = LanguageModel.from_pretrained(tiny_bert_classifier)
    body = BertForSequenceClassification.from_pretrained(tiny_bert_classifier).bert
    body.config.architectures = ["BertModel"]
    folder = save_folder(body, clf.tokenizer, tmp_path / "embedder")
    texts = [t for t, _ in SENTIMENT_TRAIN]
    source = source_with_texts(folder, texts)
    manifest = export(source, "openvino-fp32", tmp_path / "ov", ExportOptions(), log=lambda *_: None)
    assert manifest["outputs"] == {"last_hidden_state": "[?,?,64]"}
    assert manifest["verification"]["metrics"]["min_cosine"] > 0.99999
    got = OpenVinoBackend(tmp_path / "ov").embed(texts)
    want = LanguageModel.from_pretrained(folder).embed(texts)
    np.testing.assert_allclose(got, want, atol=1e-5)


# ---------------------------------------------------------------------------------------------- errors
def test_group_size_that_does_not_divide_is_adjusted_or_refused():
    from roots_edge.core.errors import TargetError
    from roots_edge.exporters.openvino_compress import int4_group_size
    from roots_edge.core.spec import ModelSpec

    def spec(hidden, ffn):
        return ModelSpec("llama", "LlamaForCausalLM", "causal-lm", 512, hidden, ffn, 1, 4, 2, hidden // 4, 128, 1e-5)

    assert int4_group_size(spec(256, 768), 64) == (64, None)
    size, note = int4_group_size(spec(192, 576), 128)       # 128 does not divide 192: 96 does
    assert size == 96 and "[192, 576]" in note and "128" in note
    assert int4_group_size(spec(200, 600), -1) == (-1, None)  # per channel always fits
    with pytest.raises(TargetError, match="--group-size -1"):
        int4_group_size(spec(202, 606), 64)                    # widths 200, 202, 606: common divisor 2


