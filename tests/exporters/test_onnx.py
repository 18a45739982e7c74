"""ONNX: Llama decoders with an explicit KV cache and BERT encoders, every target exported once and
checked against PyTorch, in a plain ONNX Runtime session, in onnxruntime-genai, and through roots-edge's
own backend."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SENTIMENT_HELDOUT, source_with_texts, torch_greedy

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from artifacts import GROUP, PROMPTS, export_onnx as _export, prompt_ids as _ids  # noqa: E402


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path / "model.onnx")).graph.node]


# ---------------------------------------------------------------------------------------------- decoders
def test_decoder_graph_has_documented_io_and_dynamic_axes(llama, llama_onnx):
    path, manifest = llama_onnx["fp32"]
    sess = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    spec = llama.spec
    inputs = {i.name: i for i in sess.get_inputs()}
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert inputs["input_ids"].shape == ["batch", "sequence"] and inputs["input_ids"].type == "tensor(int64)"
    assert inputs["attention_mask"].shape == ["batch", "total_sequence"]
    for i in range(spec.num_layers):
        for kind in ("key", "value"):
            assert inputs[f"past_key_values.{i}.{kind}"].shape == ["batch", spec.num_kv_heads, "past_sequence",
                                                                   spec.head_dim]
    outputs = {o.name: o.shape for o in sess.get_outputs()}
    assert outputs["logits"] == ["batch", "sequence", spec.vocab_size]
    assert outputs["present.1.value"] == ["batch", spec.num_kv_heads, "total_sequence", spec.head_dim]
    assert len(outputs) == 1 + 2 * spec.num_layers
    assert manifest["opset"] == 18 and manifest["inputs"][0] == {"name": "input_ids", "type": "int64",
                                                                 "shape": ["batch", "sequence"]}
    assert {f["name"] for f in manifest["files"]} >= {"model.onnx", "genai_config.json", "tokenizer.json",
                                                      "tokenizer_config.json", "config.json", "generation_config.json"}
    assert not (path / "model.onnx_data").exists()


def test_fp32_prefill_decode_and_padding_match_pytorch(llama, llama_onnx):
    import torch

    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(llama_onnx["fp32"][0], threads=2)
    ids = _ids(llama, llama.heldout[0])[:, :40]                                            # (1, T)
    with torch.no_grad():
        ref = llama.model(input_ids=torch.from_numpy(ids)).logits[0].numpy()              # (T, V)
    assert np.abs(backend.logits(ids) - ref).max() < 1e-4                                  # empty past
    logits, cache = backend.decode_step(ids[:, :30], backend.empty_cache())               # non-empty past next
    steps = [logits]
    for t in range(30, ids.shape[1]):
        logits, cache = backend.decode_step(ids[:, t:t + 1], cache)
        steps.append(logits)
    assert cache[0].shape == (1, llama.spec.num_kv_heads, ids.shape[1], llama.spec.head_dim)
    assert np.abs(np.concatenate(steps) - ref).max() < 1e-4
    # a batch of two of different lengths, padded at the end (what GroupQueryAttention takes: each row's tokens
    # first, `attention_mask` counting them): the mask is a real input, not baked in from the trace's example
    batch = np.stack([ids[0, :35], np.r_[ids[0, :25], np.full(10, llama.spec.pad_token_id)]])  # (2, 35)
    mask = np.stack([np.ones(35, np.int64), np.r_[np.ones(25, np.int64), np.zeros(10, np.int64)]])
    pos = np.stack([np.arange(35), np.r_[np.arange(25), np.zeros(10, np.int64)]])
    feed = {"input_ids": batch, "attention_mask": mask, "position_ids": pos}
    empty = np.zeros((2, backend.kv_heads, 0, backend.head_dim), np.float32)                # (B, kv, 0, hd)
    feed.update({n: empty for n in backend.inputs if n.startswith("past_key_values.")})
    out = backend.session.run(["logits"], feed)[0]                                         # (2, 35, V)
    assert np.abs(out[0] - ref[:35]).max() < 1e-4
    assert np.abs(out[1, :25] - ref[:25]).max() < 1e-4
    ops = set(_ops(llama_onnx["fp32"][0]))
    assert "GroupQueryAttention" in ops and not ops & {"Softmax", "Expand"}               # one fused node per layer


def test_decode_loop_writes_one_shared_kv_buffer_in_place(llama, llama_onnx):
    """The runtime's loop binds one full-length buffer per key / value as both past and present
    (GroupQueryAttention writes in place): the same logits as growing the cache by concatenation."""
    from roots_edge.core.errors import ContextOverflowError
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    path = llama_onnx["int8"][0]
    assert json.loads((path / "genai_config.json").read_text())["search"]["past_present_share_buffer"] is True
    backend = OnnxRuntimeBackend(path, threads=2, context=64)
    ids = _ids(llama, llama.heldout[0])[0, :40]

    def loop():
        backend.reset()
        out = [backend.forward(ids[:30])]
        out += [backend.forward(ids[t:t + 1]) for t in range(30, 40)]
        return np.stack(out)                                                               # (11, V)

    assert backend.shared_kv
    shared, again = loop(), loop()                    # a reset reuses the buffers: stale positions are not read
    backend.shared_kv = False
    grown = loop()
    np.testing.assert_array_equal(shared, grown)
    np.testing.assert_array_equal(again, grown)
    backend.shared_kv = True
    backend.reset()
    backend.forward(ids[:40])
    with pytest.raises(ContextOverflowError, match="do not fit the context of 64"):
        backend.forward(np.r_[ids, ids][:25])


def test_greedy_kv_cache_loop_matches_pytorch_generate(llama, llama_onnx):
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(llama_onnx["fp32"][0])
    for prompt in PROMPTS:
        ids = _ids(llama, prompt)
        assert backend.greedy(ids, 40) == torch_greedy(llama, ids, 40)


def test_verification_metrics_per_precision(llama_onnx):
    met = {p: m["verification"]["metrics"] for p, (_, m) in llama_onnx.items()}
    assert all(m["verification"]["passed"] for _, m in llama_onnx.values())
    assert met["fp32"]["max_logit_diff"] < 1e-4 and met["fp32"]["top1"] == 1.0
    assert met["fp16"]["max_logit_diff"] < 0.05 and met["fp16"]["kl"] < 1e-5 and met["fp16"]["top1"] > 0.99
    assert met["int8"]["kl"] < 2e-3 and met["int8"]["top1"] > 0.95
    assert met["int4"]["kl"] < 2e-2 and met["int4"]["top1"] > 0.85
    assert met["int8"]["kl"] < met["int4"]["kl"]


def test_sizes_and_weight_formats(llama, llama_onnx):
    from onnx import numpy_helper

    n_params = sum(p.numel() for p in llama.model.parameters())                          # tied: counted once
    inits = {p: onnx.load(str(path / "model.onnx")).graph.initializer for p, (path, _) in llama_onnx.items()}
    fp32_bytes = sum(numpy_helper.to_array(t).nbytes for t in inits["fp32"])
    assert fp32_bytes == 4 * n_params          # the tied LM head is a Transpose of the embedding, not a copy
    head_bytes = 4 * llama.spec.vocab_size * llama.spec.hidden_size
    assert llama_onnx["fp32"][1]["conversion"]["shared_transposed_bytes"] == head_bytes
    fp16 = [t for t in inits["fp16"] if t.data_type == onnx.TensorProto.FLOAT16]
    assert sum(numpy_helper.to_array(t).nbytes for t in fp16) == 2 * n_params
    sess = ort.InferenceSession(str(llama_onnx["fp16"][0] / "model.onnx"))
    assert {i.type for i in sess.get_inputs() if "past" in i.name} == {"tensor(float)"}  # IO stays float32
    sizes = {p: m["files"] for p, (_, m) in llama_onnx.items()}
    weight = {p: next(f["bytes"] for f in files if f["name"] == "model.onnx") for p, files in sizes.items()}
    assert weight["int4"] < weight["int8"] < weight["fp16"] < weight["fp32"]


def test_int8_is_8bit_weight_blocks_with_the_tied_table_stored_once(llama, llama_onnx):
    from onnx import numpy_helper

    path, manifest = llama_onnx["int8"]
    model = onnx.load(str(path / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 7 * llama.spec.num_layers + 1                                  # q k v o gate up down; head
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nbits]
    assert {(a["bits"], a["block_size"], a["accuracy_level"]) for a in attrs} == {(8, 32, 4)}
    assert ops.count("GroupQueryAttention") == llama.spec.num_layers and "MatMul" not in ops   # attention: float
    assert not {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"} & set(ops)
    q = manifest["quantization"]
    assert q["method"] == "MatMulNBits" and q["bits"] == 8 and q["saturation_free"] and "tied_embeddings" in q
    # the tied embedding looks rows up in the LM head's own 8-bit table: every matrix is stored once
    gather = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    head = next(n for n in nbits if n.output[0].startswith("/model/lm_head") or "lm_head" in n.name)
    assert gather.input[0] == head.input[1]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    blocks = sum(inits[n.input[1]].size for n in nbits)
    assert blocks == sum(p.numel() for p in llama.model.parameters() if p.dim() == 2)   # hidden is a multiple of 32
    scales = {n.input[2] for n in nbits}
    floats = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
              and len(t.dims) == 2 and t.name not in scales]
    assert not floats                                                                  # no float matrix left


def test_int4_uses_matmulnbits_with_the_block_size(llama, llama_onnx):
    path, manifest = llama_onnx["int4"]
    model = onnx.load(str(path / "model.onnx"))
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 7 * llama.spec.num_layers + 1
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nbits]
    # the LM head (and the tied table it shares with the lookup), v and down projections in 8 bits, the rest in 4
    layers = llama.spec.num_layers
    assert sorted((a["bits"], a["block_size"], a["accuracy_level"]) for a in attrs) == \
        [(4, GROUP, 4)] * 5 * layers + [(8, GROUP, 4)] * (2 * layers + 1)
    gathers = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    assert len(gathers) == 1 and manifest["quantization"]["embeddings"] == "GatherBlockQuantized, 8 bits"
    assert manifest["quantization"]["block_size"] == GROUP and manifest["opset"] == 21
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21


def test_genai_runs_the_folder_with_pytorch_greedy_ids(llama, llama_onnx):
    og = pytest.importorskip("onnxruntime_genai")
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    def genai_greedy(folder: Path, ids: list[int], n: int) -> list[int]:
        model = og.Model(str(folder))
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + n, do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(ids)
        out = []
        while not gen.is_done():
            gen.generate_next_token()
            out.append(int(gen.get_next_tokens()[0]))
        return out

    fp32 = llama_onnx["fp32"][0]
    cfg = json.loads((fp32 / "genai_config.json").read_text())
    assert cfg["model"]["type"] == "llama" and cfg["model"]["context_length"] == llama.spec.context_length
    assert cfg["model"]["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    ids = _ids(llama, PROMPTS[0])
    # genai's tokenizer drops the TemplateProcessing BOS: callers prepend it (see manifest "genai")
    assert list(map(int, og.Tokenizer(og.Model(str(fp32))).encode(PROMPTS[0]))) == ids[0, 1:].tolist()
    assert llama_onnx["fp32"][1]["genai"]["prepend_bos_token_id"] == ids[0, 0]
    expected = torch_greedy(llama, ids, 30)
    got = genai_greedy(fp32, ids[0].tolist(), 30)
    assert got[:len(expected)] == expected
    # int4 in genai equals roots-edge's own loop over the same graph
    int4 = llama_onnx["int4"][0]
    assert genai_greedy(int4, ids[0].tolist(), 20)[:20] == OnnxRuntimeBackend(int4).greedy(ids, 20, stop_at_eos=False)


def test_options_onnx_cannot_use_are_refused_before_tracing(llama, tmp_path):
    from roots_edge.core.errors import TargetError
    from roots_edge.exporters import ExportOptions, export, get_target

    with pytest.raises(TargetError, match="power-of-two"):
        export(llama, get_target("onnx-int4").with_quant(group_size=48), tmp_path / "x", log=lambda *_: None)
    with pytest.raises(TargetError, match="opset 30 is not supported; choose 14-23"):
        export(llama, "onnx-fp32", tmp_path / "x", ExportOptions(opset=30), log=lambda *_: None)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------- encoders
def test_bert_graph_io(bert_onnx):
    sess = ort.InferenceSession(str(bert_onnx["fp32"][0] / "model.onnx"))
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [
        ("input_ids", ["batch", "sequence"]), ("attention_mask", ["batch", "sequence"]),
        ("token_type_ids", ["batch", "sequence"])]
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [("logits", ["batch", 2])]


def test_bert_labels_agree_with_pytorch(bert, bert_onnx):
    from roots_edge.train.classifier import predict_proba
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    texts, truth = zip(*SENTIMENT_HELDOUT)
    ref = predict_proba(bert.model, bert.tokenizer, list(texts))                          # (N, C)
    for name, (path, manifest) in bert_onnx.items():
        backend = OnnxRuntimeBackend(path)
        logits = backend.classify_logits(list(texts))                                      # (N, C)
        assert (logits.argmax(-1) == ref.argmax(-1)).all(), name
        assert backend.labels == ["negative", "positive"]
        assert manifest["verification"]["metrics"]["agreement"] == 1.0
        if name == "fp32":
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            assert np.abs(probs - ref).max() < 1e-5
        labels = [backend.labels[i] for i in logits.argmax(-1)]
        assert np.mean([a == b for a, b in zip(labels, truth)]) == np.mean(
            [["negative", "positive"][i] == b for i, b in zip(ref.argmax(-1), truth)])


def test_bert_int8_dynamic_and_static_qdq(bert_onnx):
    dynamic, static = _ops(bert_onnx["int8"][0]), _ops(bert_onnx["static"][0])
    assert "MatMulInteger" in dynamic or "DynamicQuantizeMatMul" in dynamic
    assert "QuantizeLinear" not in dynamic
    assert static.count("QuantizeLinear") > 0 and static.count("DequantizeLinear") > static.count("QuantizeLinear")
    q = bert_onnx["static"][1]["quantization"]
    assert q["method"] == "static-qdq" and q["calibration_texts"] > 0
    for form in ("int8", "static"):                  # 7-bit weights: no u8 x s8 pair can pass int16 on any CPU
        peak = bert_onnx[form][1]["quantization"]["u8s8_pair_peak"]
        assert 0 < peak <= 2 * 255 * 64 and bert_onnx[form][1]["quantization"]["saturation_free"]
    assert q["float_nodes"] == 2                                                           # one FFN output per layer


def test_bert_embedder_mean_pooled(bert, tmp_path):
    """A BertModel without a head: `last_hidden_state` out, mean-pooled like `LanguageModel.embed`."""
    from roots_edge.model import LanguageModel
    from roots_edge.data.folder import save_folder
    from roots_edge.runtimes.onnxruntime import OnnxRuntimeBackend

    body = bert.model.bert
    body.config.architectures = ["BertModel"]
    folder = save_folder(body, bert.tokenizer, tmp_path / "embedder")
    source = source_with_texts(folder, bert.heldout)
    path, manifest = _export(source, "onnx-fp32", tmp_path / "emb-onnx")
    assert manifest["outputs"][0]["name"] == "last_hidden_state"
    texts = [t for t, _ in SENTIMENT_HELDOUT]
    ref = LanguageModel(source.model, source.tokenizer, source.spec).embed(texts)
    art = OnnxRuntimeBackend(path).embed(texts)
    assert (ref * art).sum(-1).min() > 0.99999
    assert manifest["verification"]["metrics"]["min_cosine"] > 0.99999


# ---------------------------------------------------------------------------------------------- imports
