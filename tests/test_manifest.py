"""The typed manifest: what the exporter writes reads back into the same JSON, and readers get typed fields."""
from __future__ import annotations

import json

from roots_edge.formats.manifest import FILE, Manifest


def test_written_manifest_round_trips_and_reads_typed(tiny_llama, texts_jsonl, tmp_path):
    from roots_edge.exporters import export, load_source

    written = export(load_source(tiny_llama, calibration=texts_jsonl), "onnx-fp32", tmp_path / "a")
    on_disk = json.loads((tmp_path / "a" / FILE).read_text())
    assert written == on_disk
    m = Manifest.read(tmp_path / "a")
    assert json.loads(json.dumps(m.to_dict(), default=str)) == on_disk          # nothing lost, nothing added
    assert (m.target, m.format, m.precision, m.source.task, m.source.family) == ("onnx-fp32", "onnx", "fp32",
                                                                                   "causal-lm", "llama")
    assert m.verification.passed and m.verification.metrics["top1"] >= 0.995 and m.verification.cpu["arch"]
    assert {f.name for f in m.files} >= {"model.onnx", "tokenizer.json"} and all(len(f.sha256) == 64 for f in m.files)
    assert m.details["opset"] == 21 and m.quantization == {} and m.exporter_revision == 5
    assert Manifest.read(tmp_path / "missing") is None


def test_manifest_from_before_the_schema_reads_with_defaults():
    old = {"target": "onnx-int8", "format": "onnx", "precision": "int8", "source": {"task": "causal-lm"},
           "files": [], "verification": {"passed": True, "metrics": {"kl": 0.002}},
           "quantization": {"method": "dynamic", "weights": "QInt8"}}
    m = Manifest.from_dict(old)
    assert m.schema == 1 and m.exporter_revision == 1 and m.verification.cpu == {}
    assert m.quantization["method"] == "dynamic" and m.source.task == "causal-lm"
