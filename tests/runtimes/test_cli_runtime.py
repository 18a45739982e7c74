"""`roots-edge run | chat | predict | devices` on artifacts."""
import json

import pytest
from click.testing import CliRunner

from roots_edge.cli import main
from roots_edge.exporters import export, load_source
from roots_edge.runtimes import load


@pytest.fixture(scope="module")
def artifacts(tiny_llama, tiny_bert_classifier, texts_jsonl, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-rt")
    export(load_source(tiny_llama, calibration=texts_jsonl), "gguf-f32", root / "dec")
    export(load_source(tiny_bert_classifier, calibration=texts_jsonl), "onnx-fp32", root / "clf")
    return root / "dec", root / "clf"


def test_run_streams_the_greedy_text(artifacts, tiny_llama):
    dec, _ = artifacts
    r = CliRunner().invoke(main, ["run", str(dec), "-p", "Return the", "-n", "16", "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert r.stdout.rstrip("\n") == "Return the" + load(tiny_llama).generate("Return the", 16)  # PyTorch


def test_run_errors_are_clean(artifacts, tmp_path):
    dec, _ = artifacts
    r = CliRunner().invoke(main, ["run", str(dec), "-p", "word " * 300])
    assert r.exit_code == 1 and "context holds 128" in r.output and "--truncate" in r.output
    r = CliRunner().invoke(main, ["run", str(dec), "-p", "Hi", "--device", "gpu"])
    assert r.exit_code == 1 and "not available" in r.output and "present: cpu" in r.output
    r = CliRunner().invoke(main, ["run", str(tmp_path / "none"), "-p", "Hi"])
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output


def test_chat_keeps_the_conversation(artifacts, tiny_llama):
    dec, _ = artifacts
    r = CliRunner().invoke(main, ["chat", str(dec), "-n", "8"], input="Return the value\nand the key\n\n")
    assert r.exit_code == 0, r.output
    turns = [ln for ln in r.stdout.splitlines() if "model> " in ln]
    assert len(turns) == 2
    model = load(tiny_llama)  # the PyTorch reference, not the backend under test
    first = model.generate("Return the value\n", 8, stop=("\n\n",), truncate=True)
    assert turns[0].split("model> ", 1)[1].strip() == first.strip()


def test_predict_classifier_artifact(artifacts, tiny_bert_classifier, tmp_path):
    _, clf = artifacts
    texts = ["A wonderful film.", "An awful film."]
    r = CliRunner().invoke(main, ["predict", str(clf), *texts, "--json"])
    assert r.exit_code == 0, r.output
    labels = [p["label"] for p in json.loads(r.stdout)]
    assert labels == [p["label"] for p in load(tiny_bert_classifier).classify(texts)]
    lines = tmp_path / "texts.txt"
    lines.write_text("A lovely film.\n\nA boring film.\n")
    r = CliRunner().invoke(main, ["predict", str(clf), texts[0], "--file", str(lines), "--json"])
    assert r.exit_code == 0, r.output
    expected = load(tiny_bert_classifier).classify([texts[0], "A lovely film.", "A boring film."])
    assert [p["label"] for p in json.loads(r.stdout)] == [p["label"] for p in expected]
    r = CliRunner().invoke(main, ["predict", str(clf)])
    assert r.exit_code == 2 and "give TEXTS or --file" in r.output


def test_devices_lists_cpu_for_every_backend():
    r = CliRunner().invoke(main, ["devices", "--json"])
    table = json.loads(r.output)
    assert all(table[b]["cpu"] for b in ("onnxruntime", "openvino", "llamacpp", "torch"))
