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
    notes = r.stderr.splitlines()
    assert notes[-1].startswith("[2 replies, ") and " tokens" in notes[-1]          # the conversation's speed
    assert all("finish: length" in n or "finish: context" in n for n in notes[:-1])   # replies that -n cut
    r = CliRunner().invoke(main, ["chat", str(dec), "-n", "8", "--quiet"], input="Return the value\n\n")
    assert r.exit_code == 0 and r.stderr == ""


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


def test_verbs_the_model_does_not_offer_are_one_line_errors(artifacts):
    """predict on a decoder, run on a classifier: the task is named with the verb to use, no traceback."""
    dec, clf = artifacts
    r = CliRunner().invoke(main, ["predict", str(dec), "some text"])
    assert r.exit_code == 1 and "is a text generator (causal LM): it cannot classify (use run" in r.output
    r = CliRunner().invoke(main, ["run", str(clf), "-p", "Hi"])
    assert r.exit_code == 1 and "is a classifier: it cannot generate (use predict" in r.output
    assert "Hi" not in r.stdout.split("Error")[0]         # nothing was printed as if generation had begun
    from roots_edge.core.errors import TaskError

    with pytest.raises(TaskError, match="cannot chat"):
        load(clf).chat("hello")


@pytest.mark.parametrize("which", ["dec", "clf"])
def test_a_model_that_does_not_fit_is_refused_before_loading(artifacts, which, monkeypatch):
    """The runtime compares weights (+ the KV cache at the chosen context) with the memory left, and says what
    to do; ROOTS_EDGE_AVAILABLE_MEMORY plays a smaller device."""
    from roots_edge.runtimes.base import available_memory

    art = dict(zip(("dec", "clf"), artifacts))[which]
    monkeypatch.setenv("ROOTS_EDGE_AVAILABLE_MEMORY", "20M")
    assert available_memory() == 20 * 2**20
    r = CliRunner().invoke(main, ["run", str(art), "-p", "Hi", "--context", "64"] if which == "dec"
                           else ["predict", str(art), "Hi"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "needs about" in r.output and "only 20.0 MB is available" in r.output
    if which == "dec":
        assert "at a context of 64 tokens" in r.output and "smaller --context" in r.output
    monkeypatch.setenv("ROOTS_EDGE_AVAILABLE_MEMORY", "8G")
    assert load(art).info()["path"]
    monkeypatch.setenv("ROOTS_EDGE_AVAILABLE_MEMORY", "lots")
    r = CliRunner().invoke(main, ["predict", str(art), "Hi"])
    assert r.exit_code == 1 and "ROOTS_EDGE_AVAILABLE_MEMORY='lots' is not a size" in r.output


def test_memory_check_counts_the_kv_cache_of_every_backend(tiny_llama, texts_jsonl, tmp_path, monkeypatch):
    """GGUF, ONNX and OpenVINO decoders: the need grows with the context by the KV cache's bytes per token."""
    import re

    from roots_edge.core.errors import RuntimeLoadError

    src = load_source(tiny_llama, calibration=texts_jsonl)
    for target in ("gguf-f16", "onnx-fp32", "openvino-fp32"):
        monkeypatch.delenv("ROOTS_EDGE_AVAILABLE_MEMORY", raising=False)
        export(src, target, tmp_path / target)
        monkeypatch.setenv("ROOTS_EDGE_AVAILABLE_MEMORY", "1M")
        needs = []
        for ctx in (32, 128):
            with pytest.raises(RuntimeLoadError, match=f"at a context of {ctx} tokens") as err:
                load(tmp_path / target, context=ctx)
            number, unit = re.search(r"KV cache ([\d.,]+) (KB|MB)", str(err.value)).groups()
            needs.append(float(number.replace(",", "")) * (1024 if unit == "MB" else 1))
        assert needs[1] == pytest.approx(4 * needs[0], rel=0.05), (target, needs)


def test_info_describes_an_artifact_its_verification_and_its_files(artifacts):
    dec, clf = artifacts
    r = CliRunner().invoke(main, ["info", str(dec)])
    assert r.exit_code == 0, r.output
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines())
    manifest = json.loads((dec / "manifest.json").read_text())
    assert lines["target"] == "gguf-f32 (gguf, f32)"
    assert lines["verification"].startswith(f"passed: against PyTorch on {manifest['verification']['texts']} texts")
    assert f"kl {manifest['verification']['metrics']['kl']:.4g}" in lines["verification"]
    for name, bound in manifest["verification"]["bound"].items():
        assert f"{name} {manifest['verification']['metrics'][name]:.4g} (bound {bound:g})" in lines["verification"]
    assert lines["files"] == f"all {len(manifest['files'])} match the manifest (sizes and sha256)"
    assert lines["gguf"].startswith("llama F32: 2 layers")
    r = CliRunner().invoke(main, ["info", str(clf), "--json"])
    data = json.loads(r.stdout)
    assert data["format"] == "onnx" and data["files_match_manifest"] is True
    assert data["manifest"]["source"]["task"] == "classification" and data["manifest"]["target"] == "onnx-fp32"
    assert data["weight_bytes"] == (clf / "model.onnx").stat().st_size + sum(
        p.stat().st_size for p in clf.glob("*.onnx_data"))


def test_info_on_a_bare_gguf_and_on_a_damaged_artifact(artifacts, tmp_path):
    import shutil

    dec, _ = artifacts
    gguf = next(dec.glob("*.gguf"))
    bare = tmp_path / "bare" / "m.gguf"
    bare.parent.mkdir()
    shutil.copy(gguf, bare)
    r = CliRunner().invoke(main, ["info", str(bare), "--json"])
    data = json.loads(r.stdout)
    assert data["manifest"] is None and data["gguf"]["precision"] == "F32" and data["weight_bytes"] == gguf.stat().st_size
    assert "manifest      none" in CliRunner().invoke(main, ["info", str(bare)]).stdout
    damaged = tmp_path / "damaged"
    shutil.copytree(dec, damaged)
    weights = damaged / gguf.name
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF                                 # same size, one weight byte changed
    weights.write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["info", str(damaged)])
    assert r.exit_code == 1 and gguf.name in r.output and "sha256" in r.output and "Traceback" not in r.output


def test_info_on_an_artifact_needs_no_torch(artifacts):
    import subprocess
    import sys

    dec, _ = artifacts
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from roots_edge.cli import main\n"
            f"main(['info', {str(dec)!r}], standalone_mode=False)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "verification  passed" in proc.stdout


def test_run_says_why_it_stopped_and_how_fast(artifacts, tiny_llama):
    dec, _ = artifacts
    reference = load(tiny_llama).generate("Return the", 16)
    r = CliRunner().invoke(main, ["run", str(dec), "-p", "Return the", "-n", "16", "--json"])
    data = json.loads(r.stdout)
    assert data["text"] == reference and data["prompt_tokens"] == len(load(dec).tokenize("Return the"))
    assert (data["finish_reason"], data["completion_tokens"]) in (("length", 16), ("stop", data["completion_tokens"]))
    assert data["tokens_per_second"] is None or data["tokens_per_second"] > 0
    r = CliRunner().invoke(main, ["run", str(dec), "-p", "Return the", "-n", "16"])
    assert r.stdout.rstrip("\n") == "Return the" + reference
    assert r.stderr.startswith(f"[{data['completion_tokens']} tokens") and "finish: " in r.stderr
    assert CliRunner().invoke(main, ["run", str(dec), "-p", "Return the", "-n", "4", "--quiet"]).stderr == ""
    # a prompt that leaves less room than -n asks for: the answer says the context ended it, and how full it was
    edge = load(dec)
    prompt = "Return the value of the key " * 13
    n_prompt = len(edge.tokenize(prompt))
    ctx = edge.backend.context_length
    assert ctx - 20 < n_prompt < ctx, n_prompt
    out = edge.generate(prompt, 60, details=True)
    room = ctx - n_prompt
    assert out["finish_reason"] == "context" and out["completion_tokens"] == room
    assert f"the prompt took {n_prompt}, leaving {room} of the 60" in out["detail"]
    # a stop string ends it with its name
    first = reference.split()[0]
    out = edge.generate("Return the", 16, stop=[first], details=True)
    assert out["finish_reason"] == "stop" and repr(first) in out["detail"] and out["text"] == reference[:reference.index(first)]
    # an overlong prompt fails before anything is echoed
    r = CliRunner().invoke(main, ["run", str(dec), "-p", "word " * 300])
    assert r.exit_code == 1 and r.stdout == ""
