"""Typed quantization: a target is (format, QuantConfig); per-class precisions reach the files each format
writes, the manifest records the config as applied, and what a format cannot do is refused up front."""
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from roots_edge.cli import main
from roots_edge.core.errors import TargetError
from roots_edge.exporters import configure, export, get_target, load_source
from roots_edge.exporters.quant import QuantConfig, parse_classes, tensor_class


@pytest.mark.parametrize("name, cls", [
    ("/model/model/embed_tokens/Gather", "embeddings"), ("token_embd.weight", "embeddings"),
    ("/body/bert/embeddings/position_embeddings/Gather", "embeddings"),
    ("/model/lm_head/MatMul", "output"), ("output.weight", "output"), ("/body/classifier/Gemm", "output"),
    ("/model/model/layers.0/self_attn/v_proj/MatMul", "attention"), ("blk.3.attn_output.weight", "attention"),
    ("/body/bert/encoder/layer.0/attention/output/dense/MatMul", "attention"),
    ("/model/model/layers.1/mlp/down_proj/MatMul", "ffn"), ("blk.0.ffn_gate.weight", "ffn"),
    ("/body/bert/encoder/layer.0/output/dense/MatMul", "ffn"), ("blk.0.attn_norm.weight", "attention"),
    ("something_else", None),
])
def test_tensor_classes_across_the_formats_naming_schemes(name, cls):
    assert tensor_class(name) == cls


def test_value_and_down_projections_are_subclasses_that_follow_their_class(tiny_llama):
    from roots_edge.exporters.base import ExportOptions, exporter_for
    from roots_edge.model import LanguageModel

    assert tensor_class("/model/model/layers.0/self_attn/v_proj/MatMul", fine=True) == "attention_v"
    assert tensor_class("blk.2.ffn_down.weight", fine=True) == "ffn_down"
    assert tensor_class("/model/model/layers.0/self_attn/q_proj/MatMul", fine=True) == "attention"
    q = QuantConfig("int4", classes={"ffn": "int8"})
    assert q.precision_of("ffn_down") == "int8" and q.precision_of("attention_v") == "int4"
    spec = LanguageModel.from_pretrained(tiny_llama).spec
    t, _ = configure("onnx-int4", spec=spec, classes={"ffn": "int4"})
    classes = exporter_for(t).resolve(t.quant, spec, ExportOptions()).classes
    assert classes["ffn_down"] == "int4" and classes["attention_v"] == "int8"     # ffn given: covers down too
    with pytest.raises(TargetError, match="cannot put ffn_down tensors"):
        configure("gguf-q4", spec=spec, classes={"ffn_down": "int8"})


def test_every_target_name_still_resolves_to_a_typed_config():
    t = get_target("gguf-q4")
    assert (t.name, t.format, t.precision, t.quant) == ("gguf-Q4_K_M", "gguf", "Q4_K_M", QuantConfig("Q4_K_M"))
    assert get_target("onnx-int4").with_quant(group_size=32).quant.group_size == 32
    assert get_target("onnx-int4").quant.group_size is None        # the registry's target is not changed


def test_bad_settings_are_refused_with_what_is_possible(tiny_llama):
    from roots_edge.model import LanguageModel

    spec = LanguageModel.from_pretrained(tiny_llama).spec
    with pytest.raises(TargetError, match="unknown tensor class.*embeddings, output, attention, ffn"):
        parse_classes(["lm=int8"])
    with pytest.raises(TargetError, match="CLASS=PRECISION"):
        parse_classes(["output"])
    with pytest.raises(TargetError, match="attention tensors in int8; attention can be: only the target's own"):
        configure("gguf-q4", spec=spec, classes={"attention": "int8"})
    with pytest.raises(TargetError, match="same precision"):
        configure("openvino-int4", spec=spec, classes={"embeddings": "int4", "output": "int8"})
    with pytest.raises(TargetError, match="rounds weights by rtn or hqq or gptq; method 'awq'"):
        configure("onnx-int4", spec=spec, method="awq")
    with pytest.raises(TargetError, match="no group size setting"):
        configure("gguf-q8", spec=spec, group_size=64)
    with pytest.raises(TargetError, match="'Q9_X' is not a GGUF tensor type"):
        configure("gguf-q4", spec=spec, classes={"output": "Q9_X"})
    from roots_edge.exporters.base import exporter_for

    gguf_q4, _ = configure("gguf-q4", spec=spec, classes={"output": "q6_k"})     # ggml names in any case
    assert exporter_for(gguf_q4).resolve(gguf_q4.quant, spec, _).classes == {"output": "Q6_K"}
    with pytest.raises(TypeError, match="unknown export setting"):
        configure("onnx-int4", spec=spec, blocksize=32)


def test_onnx_int4_keeps_head_and_embeddings_in_8_bits_by_default(tiny_llama, texts_jsonl, tmp_path):
    import onnx

    src = load_source(tiny_llama, calibration=texts_jsonl)
    target, options = configure("onnx-int4", spec=src.spec, group_size=32)
    m = export(src, target, tmp_path / "mixed", options, log=lambda *_: None)
    assert m["quant"]["classes"] == {"embeddings": "int8", "output": "int8", "attention": "int4", "ffn": "int4",
                                     "attention_v": "int8", "ffn_down": "int8"}
    assert m["quant"]["group_size"] == 32 and m["quant"]["method"] == "gptq"     # data-aware by default
    q = m["quantization"]
    assert q["gptq"]["matrices"] == 7 * 2 - 2 * 2 and q["gptq"]["calibration_tokens"] >= 256   # v, down: 8-bit
    assert q["matmuls"] == {"8-bit": 1 + 2 * 2, "4-bit": 10} and not q["symmetric"]
    assert q["embeddings"] == "GatherBlockQuantized, 8 bits"
    assert q["tied_embeddings"] == "read from the LM head's 8-bit blocks"
    graph = onnx.load(str(tmp_path / "mixed" / "model.onnx")).graph
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node if n.op_type == "MatMulNBits"}
    assert [b for name, b in bits.items() if "lm_head" in name] == [8]
    assert {b for name, b in bits.items() if "v_proj" in name or "down_proj" in name} == {8}
    assert {b for name, b in bits.items() if re.search(r"[qko]_proj|gate_proj|up_proj", name)} == {4}
    # edges in 4 bits: the tied table is then stored twice (4-bit lookup, 4-bit head), larger and further off
    target, options = configure("onnx-int4", spec=src.spec, group_size=32, classes={"output": "int4",
                                                                                     "embeddings": "int4"})
    plain = export(src, target, tmp_path / "plain", options, log=lambda *_: None)
    assert plain["quant"]["classes"]["output"] == "int4" and plain["quantization"]["embeddings"].endswith("4 bits")
    assert m["verification"]["passed"] and m["verification"]["metrics"]["kl"] < plain["verification"]["metrics"]["kl"]


def test_gguf_embedding_and_output_types_reach_llama_cpp(tiny_llama256, texts_jsonl, tmp_path):
    from gguf import GGUFReader

    src = load_source(tiny_llama256, calibration=texts_jsonl)
    target, options = configure("gguf-q4", spec=src.spec, classes={"embeddings": "int8"})
    m = export(src, target, tmp_path / "q4", options, log=lambda *_: None)
    types = {t.name: t.tensor_type.name for t in GGUFReader(tmp_path / "q4" / m["gguf_file"]).tensors}
    assert types["token_embd.weight"] == "Q8_0" and m["quant"]["classes"] == {"embeddings": "int8"}
    assert m["verification"]["passed"]


def test_cli_tensor_option_and_method(tiny_llama, texts_jsonl, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "-t", "onnx-int4", "--tensor", "output=int4",
                                  "--tensor", "ffn_down=int4", "--group-size", "32", "-o", str(tmp_path / "o"),
                                  "--calibration", str(texts_jsonl), "--no-calibration"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["quant"]["classes"]["output"] == "int4" and m["quantization"]["matmuls"]["8-bit"] == 2   # the 2 v_proj
    assert m["quant"]["method"] == "rtn" and "rtn / ok" in r.output and "ppl +%" in r.output
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "-t", "onnx-int4", "-t", "gguf-q8", "--tensor",
                                  "attention=int8", "-o", str(tmp_path / "two")])
    assert r.exit_code == 1 and "gguf-Q8_0 cannot put attention tensors in int8" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "two").exists()   # refused before any export


def test_openvino_int4_method_and_all_layers_in_the_manifest(tiny_llama, texts_jsonl, tmp_path):
    src = load_source(tiny_llama, calibration=texts_jsonl)
    target, options = configure("openvino-int4", spec=src.spec, group_size=32, method="rtn",
                                classes={"embeddings": "int4", "output": "int4"})
    m = export(src, target, tmp_path / "ov", options, log=lambda *_: None)
    c = m["compression"]
    assert (c["awq"], c["scale_estimation"], c["all_layers"], c["calibration_items"]) == (False, False, True, 0)
    assert m["quant"]["method"] == "rtn" and m["quant"]["classes"]["embeddings"] == "int4"
    default = export(src, "openvino-int4", tmp_path / "ov-default", log=lambda *_: None)
    assert default["quant"]["method"] == "awq+scale-estimation"
    assert default["quant"]["classes"]["embeddings"] == "int8" and not default["compression"]["all_layers"]
    assert m["weight_elements"].get("u8", 0) < default["weight_elements"].get("u8", 0)
    assert np.isfinite(m["verification"]["metrics"]["kl"])


def test_onnx_int4_hqq_rounding(tiny_llama, texts_jsonl, tmp_path):
    """HQQ (ONNX Runtime's half-quadratic fit of scale and zero point per block) for the 4-bit layers; the
    8-bit head stays round-to-nearest so a tied embedding still shares its table."""
    import onnx

    src = load_source(tiny_llama, calibration=texts_jsonl)
    target, options = configure("onnx-int4", spec=src.spec, group_size=32, method="hqq",
                                classes={"output": "int8", "embeddings": "int8"})
    m = export(src, target, tmp_path / "hqq", options, log=lambda *_: None)
    assert m["quant"]["method"] == "hqq" and m["quantization"]["rounding"] == "hqq"
    assert m["verification"]["passed"] and m["quantization"]["tied_embeddings"]
    nodes = [n for n in onnx.load(str(tmp_path / "hqq" / "model.onnx")).graph.node if n.op_type == "MatMulNBits"]
    four = [n for n in nodes if next(a.i for a in n.attribute if a.name == "bits") == 4]
    assert four and all(len(n.input) >= 4 and n.input[3] for n in four)      # HQQ stores zero points
    with pytest.raises(TargetError, match="rounds weights by rtn or imatrix; method 'hqq'"):
        configure("gguf-q4", spec=src.spec, method="hqq")
    with pytest.raises(TargetError, match="rounds weights by rtn; method 'hqq'"):   # 8-bit blocks: RTN only
        configure("onnx-int8", spec=src.spec, method="hqq")


def test_onnx_int4_gptq_writes_onnx_runtime_s_grid_and_drifts_less(tiny_llama, texts_jsonl, tmp_path):
    """With H = I, GPTQ moves no error and must give ONNX Runtime's own round-to-nearest bytes (symmetric and
    with zero points); with the calibration Hessians it drifts less than round-to-nearest at nearly the same
    size (4-bit zero points per block of 32)."""
    import torch
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    from roots_edge.exporters.gptq import gptq_blocks

    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(0))
    packed, scales, zeros = gptq_blocks(w, torch.eye(128), 32)
    ort_packed = np.zeros((48, 4, 16), np.uint8)
    ort_scales = np.zeros((48, 4), np.float32)
    quantize_matmul_4bits(ort_packed, w.T.contiguous().numpy(), ort_scales, np.zeros((48, 2), np.uint8), 32, 48,
                          128, True)
    assert np.array_equal(packed, ort_packed) and np.array_equal(scales, ort_scales) and zeros is None
    packed, scales, zeros = gptq_blocks(w + 0.5, torch.eye(128), 32, symmetric=False)    # with zero points
    ort_zeros = np.zeros((48, 2), np.uint8)
    quantize_matmul_4bits(ort_packed, (w + 0.5).T.contiguous().numpy(), ort_scales, ort_zeros, 32, 48, 128, False)
    assert np.array_equal(packed, ort_packed) and np.array_equal(scales, ort_scales)
    assert np.array_equal(zeros, ort_zeros)

    src = load_source(tiny_llama, calibration=texts_jsonl)
    made = {}
    for method in ("rtn", "gptq"):
        target, options = configure("onnx-int4", spec=src.spec, group_size=32, method=method)
        made[method] = export(src, target, tmp_path / method, options, log=lambda *_: None)
    assert made["rtn"]["size_bytes"] < made["gptq"]["size_bytes"] < 1.01 * made["rtn"]["size_bytes"]  # + zero points
    kl = {m: made[m]["verification"]["metrics"]["kl"] for m in made}
    assert made["gptq"]["verification"]["passed"] and kl["gptq"] < kl["rtn"], kl
    with pytest.raises(TargetError, match="gptq measures the calibration text"):
        configure("onnx-int4", spec=src.spec, method="gptq", data_free=True)
    assert configure("onnx-int4", spec=src.spec, data_free=True)[0].quant.method is None


def test_no_calibration_picks_each_format_s_data_free_rounding(tiny_llama):
    from roots_edge.exporters.base import ExportOptions, exporter_for
    from roots_edge.model import LanguageModel

    spec = LanguageModel.from_pretrained(tiny_llama).spec
    expected = {"gguf-q4": ("imatrix", "rtn"), "onnx-int4": ("gptq", "rtn"),
                "openvino-int4": ("awq+scale-estimation", "rtn"), "gguf-q8": ("rtn", "rtn")}
    for name, (aware, free) in expected.items():
        got = []
        for data_free in (False, True):
            target, options = configure(name, spec=spec, data_free=data_free)
            got.append(exporter_for(target).resolve(target.quant, spec, options).method)
        assert tuple(got) == (aware, free), name
    with pytest.raises(TargetError, match="awq measures the calibration text"):
        configure("openvino-int4", spec=spec, method="awq", data_free=True)
    assert ExportOptions().data_free is False
