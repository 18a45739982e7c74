"""`roots-edge import FILE.gguf`: a GGUF back to a Hugging Face folder every exporter takes. Our own f32 export of
each family comes back tensor for tensor; bad files and unsupported architectures are clear errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from roots_edge.cli import main
from roots_edge.core.errors import UnsupportedModelError
from roots_edge.exporters import export, load_source
from roots_edge.exporters.gguf_import import import_gguf

pytest.importorskip("llama_cpp")


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_round_trip_of_our_own_f32_export(family, tiny_llama, tiny_family, texts_jsonl, tmp_path):
    folder = tiny_llama if family == "llama" else tiny_family(family)
    export(load_source(folder, calibration=texts_jsonl), "gguf-f32", tmp_path / "g", log=lambda *_: None)
    gguf_file = next((tmp_path / "g").glob("*.gguf"))
    r = CliRunner().invoke(main, ["import", str(gguf_file), "-o", str(tmp_path / "back")])
    assert r.exit_code == 0, r.output
    assert "from F32 weights" in r.output and "5/5 sample texts" in r.output
    a, b = load_file(folder / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert set(a) == set(b)
    for name in a:
        if family == "gemma3" and name.endswith("norm.weight"):   # stored as w + 1 in f32: one rounding
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1.2e-7)
        else:
            np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    record = json.loads((tmp_path / "back" / "roots_edge.json").read_text())
    assert record["kind"] == "imported-gguf" and record["quantized_source"] is False
    assert record["source_sha256"] and record["tokenizer_parity"] == {"texts": 5, "identical": 5}
    again = export(load_source(tmp_path / "back", calibration=texts_jsonl), "onnx-fp32", tmp_path / "o",
                   log=lambda *_: None)            # the imported folder exports like any other
    assert again["verification"]["passed"]


def test_quantized_source_is_recorded(tiny_llama256, texts_jsonl, tmp_path):
    export(load_source(tiny_llama256, calibration=texts_jsonl), "gguf-q4", tmp_path / "g", log=lambda *_: None)
    out = import_gguf(next((tmp_path / "g").glob("*.gguf")), tmp_path / "back", log=lambda *_: None)
    record = json.loads((out / "roots_edge.json").read_text())
    assert record["quantized_source"] is True and record["source_file_type"] == "Q4_K_M"
    a, b = load_file(tiny_llama256 / "model.safetensors"), load_file(out / "model.safetensors")
    err = np.abs(a["model.layers.0.mlp.down_proj.weight"] - b["model.layers.0.mlp.down_proj.weight"]).mean()
    assert 0 < err < 0.05 * np.abs(a["model.layers.0.mlp.down_proj.weight"]).mean() * 10


def test_bad_files(tiny_bert_classifier, texts_jsonl, tmp_path):
    r = CliRunner().invoke(main, ["import", str(tmp_path / "missing.gguf"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "cut.gguf").write_bytes(b"GGUF" + bytes(40))
    r = CliRunner().invoke(main, ["import", str(tmp_path / "cut.gguf"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "truncated or corrupt" in r.output and "Traceback" not in r.output
    export(load_source(tiny_bert_classifier, calibration=texts_jsonl), "gguf-f32", tmp_path / "bert",
           log=lambda *_: None)
    with pytest.raises(UnsupportedModelError, match="'bert' model; roots-edge imports the decoder families llama"):
        import_gguf(next((tmp_path / "bert").glob("*.gguf")), tmp_path / "x", log=lambda *_: None)
    assert not (tmp_path / "x").exists()
