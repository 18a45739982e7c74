"""`roots-edge bench` end to end on tiny artifacts: every figure is in the JSON and sane, the md / csv tables
carry them, --plot writes a PNG. Never asserts on speed (the machine is shared)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SENTIMENT_HELDOUT
from roots_edge.cli import main
from roots_edge.exporters import export, load_source
from roots_edge.runtimes import load

FAST = ["--runs", "1", "--threads", "1"]
DECODER = ["--prompt-tokens", "24", "--gen-tokens", "6"]  # tiny_llama's context is 128
LIBRARIES = ("python", "numpy", "onnxruntime", "llama_cpp_python", "torch", "tokenizers")


def _bench(args: list[str]) -> str:
    result = CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def artifacts(tiny_llama, tiny_bert_classifier, texts_jsonl, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-artifacts")
    dec = load_source(tiny_llama, calibration=texts_jsonl)
    for target in ("gguf-f32", "onnx-fp32"):
        export(dec, target, root / target, log=lambda *_: None)
    export(load_source(tiny_bert_classifier, calibration=texts_jsonl), "onnx-fp32", root / "clf-onnx-fp32",
           log=lambda *_: None)
    return root


@pytest.fixture(scope="module")
def labeled_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-data") / "heldout.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(SENTIMENT_HELDOUT)
    return path


@pytest.fixture(scope="module")
def decoder_result(artifacts):
    out = _bench([str(artifacts / "gguf-f32"), str(artifacts / "onnx-fp32"), "--format", "json", *FAST, *DECODER])
    return json.loads(out)


@pytest.fixture(scope="module")
def classifier_result(artifacts, labeled_csv):
    return json.loads(_bench([str(artifacts / "clf-onnx-fp32"), "--data", str(labeled_csv), "--format", "json",
                              *FAST]))


def _check_machine(machine: dict) -> None:
    cpu = machine["cpu"]
    assert isinstance(cpu["model"], str) and cpu["model"].strip()
    assert isinstance(cpu["flags"], list) and all(isinstance(f, str) for f in cpu["flags"])
    assert cpu["arch"] and 1 <= cpu["usable_cores"] <= cpu["logical_cores"]
    assert machine["threads"] == 1
    assert all(machine["versions"].get(lib) for lib in LIBRARIES), machine["versions"]
    assert machine["memory_bandwidth_gbs"] > 0


def _check_load(row: dict, warnings: list[str]) -> None:
    """Others' CPU share before / during the row is measured, and a busy row is warned about by name."""
    from roots_edge.runtimes.bench.harness import BUSY_WARN

    load = row["machine_load"]
    assert all(0.0 <= load[k] <= 1.0 for k in ("before", "during")), load
    busy = max(load.values()) > BUSY_WARN
    assert busy == any(w.startswith(Path(row["artifact"]).name + ":") for w in warnings), (load, warnings)


def test_decoder_json_carries_every_figure(decoder_result, artifacts, tiny_llama):
    r = decoder_result
    assert r["kind"] == "decoder"
    _check_machine(r["machine"])
    assert (r["config"]["prompt_tokens"], r["config"]["gen_tokens"], r["config"]["runs"]) == (24, 6, 1)
    ref, gguf, onnx = r["rows"]
    assert [x["reference"] for x in r["rows"]] == [True, False, False]
    assert [(x["format"], x["backend"]) for x in r["rows"]] == [("torch", "torch"), ("gguf", "llamacpp"),
                                                               ("onnx", "onnxruntime")]
    assert Path(ref["artifact"]) == Path(tiny_llama)  # the reference comes from the artifacts' manifest
    assert (ref["precision"], gguf["precision"], onnx["precision"]) == ("fp32", "F32", "fp32")
    bw = r["machine"]["memory_bandwidth_gbs"] * 1e9
    for row in r["rows"]:
        assert row["load_s"] > 0 and row["peak_rss_mb"] > 0 and row["ttft_ms"] > 0 and row["tpot_ms"] > 0
        for key in ("pp24", "tg6"):
            mean, sd = row[key]
            assert mean > 0 and sd == 0.0  # one run: no spread
        assert row["tg_tps"] == row["tg6"][0]
        assert row["bandwidth_use"] > 0
        assert row["bandwidth_use"] == pytest.approx(row["size_bytes"] * row["tg_tps"] / bw, rel=1e-2)
        assert 1 < row["perplexity"] < 512 and row["quality_tokens"] > 50  # vocab 512: better than uniform
        # f32 everywhere, one parameter count for every row (the reference's); a GGUF file also holds the
        # vocabulary, and the ONNX graph a second copy of the tied embedding as its LM head
        assert 31.9 < row["bits_per_weight"] < (33 if row is ref else 40), row["bits_per_weight"]
        _check_load(row, r["warnings"])
    assert gguf["size_bytes"] == next((artifacts / "gguf-f32").glob("*.gguf")).stat().st_size
    assert onnx["size_bytes"] == (artifacts / "onnx-fp32" / "model.onnx").stat().st_size
    assert ref["size_bytes"] == (Path(tiny_llama) / "model.safetensors").stat().st_size
    assert "kl" not in ref and "top1" not in ref
    for row in (gguf, onnx):  # f32 artifacts match the PyTorch reference on the same token ids
        assert row["top1"] >= 0.99 and 0 <= row["kl"] < 1e-3
        assert row["perplexity"] == pytest.approx(ref["perplexity"], rel=1e-3)
        assert row["quality_tokens"] == ref["quality_tokens"]


def test_classifier_json_carries_every_figure(classifier_result, tiny_bert_classifier):
    r = classifier_result
    assert r["kind"] == "classifier"
    _check_machine(r["machine"])
    ref, onnx = r["rows"]
    assert ref["reference"] and not onnx["reference"] and Path(ref["artifact"]) == Path(tiny_bert_classifier)
    for row in r["rows"]:
        assert row["labels"] == ["negative", "positive"]
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p90"] <= row["latency_ms_p99"]
        mean, sd = row["throughput_b32"]
        assert mean > 0 and sd == 0.0 and row["throughput"] == mean
        assert 0 < row["seq_tokens"] <= 128
        assert row["load_s"] > 0 and row["peak_rss_mb"] > 0 and row["size_bytes"] > 0
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1
        assert 31.9 < row["bits_per_weight"] < 34
        _check_load(row, r["warnings"])
    assert onnx["agreement"] == 1.0 and "agreement" not in ref
    # the same predictions on the labeled rows give the same scores
    assert (onnx["accuracy"], onnx["macro_f1"]) == (ref["accuracy"], ref["macro_f1"])
    # ... and they are the scores of the model's own predictions on the labeled rows, computed here
    texts, truth = zip(*SENTIMENT_HELDOUT)
    pred = [p["label"] for p in load(tiny_bert_classifier, device="cpu").classify(list(texts))]
    assert ref["accuracy"] == pytest.approx(sum(p == t for p, t in zip(pred, truth)) / len(truth))
    f1 = []
    for lab in ("negative", "positive"):
        tp = sum(p == t == lab for p, t in zip(pred, truth))
        prec, rec = tp / max(1, pred.count(lab)), tp / max(1, truth.count(lab))
        f1.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    assert ref["macro_f1"] == pytest.approx(sum(f1) / 2)


def test_markdown_table_file_and_plot(artifacts, tmp_path):
    md, png = tmp_path / "bench.md", tmp_path / "bench.png"
    out = _bench([str(artifacts / "gguf-f32"), "--no-reference", "--format", "md", "-o", str(md), "--plot", str(png),
                  *FAST, *DECODER])
    lines = out.strip().splitlines()
    assert lines[0].startswith("machine: ") and "threads 1" in lines[0] and "GB/s" in lines[0]
    head = [c.strip() for c in lines[2].strip("|").split("|")]
    assert head[:3] == ["artifact", "format", "precision"]
    assert {"pp24 t/s", "tg6 t/s", "TTFT ms", "TPOT ms", "peak RSS MB", "bandwidth %", "ppl", "KL",
            "top-1"} <= set(head)
    cells = dict(zip(head, (c.strip() for c in lines[4].strip("|").split("|"))))
    assert (cells["artifact"], cells["format"], cells["precision"]) == ("gguf-f32", "gguf", "F32")
    assert float(cells["tg6 t/s"].split("±")[0]) > 0 and cells["KL"] == "-"  # no reference: no drift figures
    assert all(line.startswith("warning: ") for line in lines[6:]) and len(lines) in (5, 6 + len(lines[6:]))
    assert md.read_text().strip() == out.strip()
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_csv_table_and_classifier_plot(artifacts, tmp_path):
    png = tmp_path / "clf.png"
    out = _bench([str(artifacts / "clf-onnx-fp32"), "--no-reference", "--format", "csv", "--plot", str(png), *FAST])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    row = rows[0]
    assert (row["artifact"], row["format"], row["precision"]) == ("clf-onnx-fp32", "onnx", "fp32")
    p50, p90, p99 = (float(row[k]) for k in ("p50 ms", "p90 ms", "p99 ms"))
    assert 0 < p50 <= p90 <= p99
    assert float(row["b32 texts/s"].split("±")[0]) > 0
    assert float(row["size MB"]) > 0 and not math.isnan(float(row["load s"]))
    assert row["agreement"] == "-" and row["accuracy"] == "-"  # no reference, no labels
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_past_the_context_fails_clearly(artifacts):
    # the defaults, pp128 + tg64, need 192 positions; tiny_llama was trained on 128
    result = CliRunner().invoke(main, ["bench", str(artifacts / "onnx-fp32"), "--no-reference", *FAST])
    assert result.exit_code == 1
    assert "pp128 + tg64 = 192 tokens do not fit the context" in result.output and "(128 tokens)" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def busy_machine():
    """Every core kept busy by other processes for the duration of the test."""
    import os
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    yield
    for proc in procs:
        proc.kill()
        proc.wait()


def test_others_cpu_use_is_measured_and_a_busy_machine_is_warned_about(artifacts, busy_machine, tmp_path):
    from roots_edge.runtimes.bench.harness import idle_load

    assert idle_load(1.0) > 0.6                       # every core busy with someone else's work
    result = CliRunner().invoke(main, ["bench", str(artifacts / "gguf-f32"), "--no-reference", "--format", "json",
                                       *FAST, *DECODER])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    (row,) = r["rows"]
    assert row["machine_load"]["before"] > 0.6 and row["machine_load"]["during"] > 0.3, row["machine_load"]
    assert r["warnings"] and "gguf-f32: other processes kept" in r["warnings"][0]
    assert "cannot be trusted" in result.stderr


def test_parameter_count_without_a_reference_is_the_models_own(artifacts, tiny_llama):
    """An ONNX row with no reference row takes its parameter count from the manifest (schema 4). It once
    divided the size of all the artifact's files by bits per weight computed from the weight files only,
    counting tokenizer and graph bytes as parameters."""
    from safetensors import safe_open

    from roots_edge.runtimes.bench.harness import parameter_count

    with safe_open(str(Path(tiny_llama) / "model.safetensors"), "np") as f:
        own = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())       # tied: stored once
    for name in ("onnx-fp32", "gguf-f32"):
        manifest = json.loads((artifacts / name / "manifest.json").read_text())
        assert manifest["parameters"] == own == parameter_count(artifacts / name), name
    assert parameter_count(tiny_llama) == own
