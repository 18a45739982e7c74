"""The decoder families beyond Llama: Qwen2 (q/k/v biases), Qwen3 (q/k norms) and Gemma 3 (sliding-window
layers, (1 + w) norms, scaled embeddings), each a tiny model built from a transformers config. Every family
exports to all three formats, passes the same verification bounds as Llama, and gives PyTorch's greedy
tokens on every runtime, past the sliding window."""
import pytest

from roots_edge.core.errors import UnsupportedModelError
from roots_edge.exporters import export, load_source
from roots_edge.runtimes import load

FAMILIES = ("qwen2", "qwen3", "gemma3")
FLOAT = ("gguf-f32", "onnx-fp32", "openvino-fp32")
QUANTIZED = ("gguf-q8", "onnx-int8", "openvino-int8", "gguf-Q4_0", "onnx-int4", "openvino-int4")  # widths of 64: no K-quants
PROMPTS = ["Return the number of", "If the value is"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tiny_family, tmp_path_factory, texts_file):
    name = request.param
    folder = tiny_family(name)
    src = load_source(folder, calibration=texts_file)
    root = tmp_path_factory.mktemp(f"family-{name}")
    made = {t: (root / t, export(src, t, root / t, log=lambda *_: None)) for t in FLOAT + QUANTIZED}
    return name, folder, src, made


def test_spec_reads_the_family_traits(family):
    name, folder, src, _ = family
    spec = src.spec
    assert spec.family == name and spec.is_decoder and spec.task == "causal-lm"
    traits = spec.traits
    assert traits.qkv_bias == (name == "qwen2") and traits.qk_norm == (name in ("qwen3", "gemma3"))
    assert (spec.sliding_window == 8) == (name == "gemma3")


def test_every_target_passes_its_bound(family):
    name, _, _, made = family
    for target, (_, manifest) in made.items():
        v = manifest["verification"]
        assert v["passed"] is True, (name, target, v)
        assert manifest["source"]["family"] == name
    assert made["gguf-f32"][1]["verification"]["metrics"]["max_logit_diff"] < 1e-2


def test_greedy_tokens_equal_pytorch_on_every_runtime_past_the_window(family):
    name, folder, src, made = family
    models = {"torch": load(folder, device="cpu", exact=True)} | {
        t: load(made[t][0], device="cpu", exact=True) for t in FLOAT}
    for prompt in PROMPTS:
        ids = models["torch"].tokenize(prompt)
        out = {n: m.generate_ids(ids, 24, ignore_eos=True) for n, m in models.items()}   # 24 > window of 8
        assert all(v == out["torch"] for v in out.values()), (name, out)


def test_gguf_holds_the_family_tensors(family):
    from gguf import GGUFReader

    name, _, _, made = family
    folder, manifest = made["gguf-f32"]
    reader = GGUFReader(folder / manifest["gguf_file"])
    names = {t.name for t in reader.tensors}
    arch = reader.fields["general.architecture"].contents()
    assert arch == name
    assert ("blk.0.attn_q.bias" in names) == (name == "qwen2")
    assert ("blk.0.attn_q_norm.weight" in names) == (name in ("qwen3", "gemma3"))
    if name == "gemma3":
        assert reader.fields["gemma3.attention.sliding_window"].contents() == 8
        assert "blk.0.post_attention_norm.weight" in names and "blk.0.post_ffw_norm.weight" in names


def test_gemma3_with_another_attention_scale_is_refused_for_gguf(tiny_family, texts_file, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_family("gemma3"), tmp_path / "gemma")
    config = json.loads((folder / "config.json").read_text())
    config["query_pre_attn_scalar"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="query_pre_attn_scalar.*ONNX or OpenVINO"):
        export(load_source(folder, calibration=texts_file), "gguf-f32", tmp_path / "g", log=lambda *_: None)
