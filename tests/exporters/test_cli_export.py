"""`roots-edge export` and `LanguageModel.export`: registry-driven targets, several targets at once,
the verification table, refusing to overwrite, and clear errors."""
import json

import pytest
from click.testing import CliRunner

from roots_edge.cli import main


def test_export_two_targets_prints_table_and_writes_manifests(tiny_llama256, texts_jsonl, tmp_path):
    out = tmp_path / "arts"
    r = CliRunner().invoke(main, ["export", str(tiny_llama256), "-t", "gguf-q8", "-t", "onnx-fp32", "-o", str(out),
                                  "--calibration", str(texts_jsonl)])
    assert r.exit_code == 0, r.output
    assert "gguf-Q8_0" in r.output and "onnx-fp32" in r.output and r.output.count(" ok") >= 2
    m = json.loads((out / "gguf-q8" / "manifest.json").read_text())          # subfolders are named as typed
    assert f"-> {out / 'gguf-q8'}" in r.output and f"-> {out / 'onnx-fp32'}" in r.output
    assert m["target"] == "gguf-Q8_0" and m["verification"]["passed"] and m["source"]["family"] == "llama"
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["files"])
    r = CliRunner().invoke(main, ["export", str(tiny_llama256), "-t", "gguf-q8", "-t", "onnx-fp32", "-o", str(out)])
    assert r.exit_code == 1 and "already exist" in r.output and "--force" in r.output


def test_json_output_is_clean_json(tiny_llama, texts_jsonl, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "-t", "openvino-int8", "-o", str(tmp_path / "ov"),
                                  "--calibration", str(texts_jsonl), "--json"])
    assert r.exit_code == 0, r.output
    manifests = json.loads(r.stdout)
    assert manifests[0]["precision"] == "int8" and manifests[0]["verification"]["metrics"]["top1"] > 0.9


def test_unknown_target_lists_valid_ones(tiny_llama, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "-t", "gguf-q3", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "gguf-Q4_K_M" in r.output and "onnx-int8" in r.output


def test_target_that_does_not_fit_the_family(tiny_bert_classifier, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_bert_classifier), "-t", "gguf-Q3_K_M", "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "does not export bert" in r.output and "gguf-Q8_0" in r.output
    assert not (tmp_path / "x").exists()


def test_empty_calibration_file_is_refused(tiny_llama, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = CliRunner().invoke(main, ["export", str(tiny_llama), "-t", "onnx-fp32", "-o", str(tmp_path / "x"),
                                  "--calibration", str(empty)])
    assert r.exit_code == 1 and "holds no text" in r.output


def test_drift_past_the_bound_fails_and_leaves_nothing(tiny_llama, texts_jsonl, tmp_path, monkeypatch):
    import dataclasses

    from roots_edge.exporters.base import Bound, get_target

    t = get_target("onnx-int8")
    strict = dataclasses.replace(t, decoder_bound=Bound(kl=1e-9, top1=1.0))
    from roots_edge.core.errors import VerificationError
    from roots_edge.exporters import export, load_source

    src = load_source(tiny_llama, calibration=texts_jsonl)
    with pytest.raises(VerificationError, match="drifted past its bound.*--allow-drift"):
        export(src, strict, tmp_path / "strict")
    assert not any(tmp_path.iterdir())
    from roots_edge.exporters import ExportOptions

    m = export(src, strict, tmp_path / "kept", ExportOptions(allow_drift=True))
    assert m["verification"]["passed"] is False and m["verification"]["failures"]


def test_language_model_export(tiny_llama, tmp_path):
    from roots_edge import LanguageModel

    lm = LanguageModel.from_pretrained(tiny_llama)
    m = lm.export("gguf-f32", tmp_path / "g", verify_texts=4)
    assert m["verification"]["metrics"]["max_logit_diff"] < 1e-3
    lm.finetune(["Return the sum of the values."] * 40, steps=3, progress=False, seq_len=16)
    with pytest.raises(Exception, match="save_pretrained"):
        lm.export("gguf-f32", tmp_path / "g2")


def test_library_warnings_and_info_logs_do_not_reach_the_user(tiny_llama, texts_jsonl, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "roots-edge"
    proc = subprocess.run([str(exe), "export", str(tiny_llama), "-t", "openvino-int4", "-t", "gguf-f16",
                           "--calibration", str(texts_jsonl), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for noise in ("Warning", "warnings.warn", "[INFO]", "loss_type", "Writing model shards"):
        assert noise not in proc.stderr, proc.stderr
    assert "exporting openvino-int4" in proc.stderr and "gguf-f16" in proc.stdout
