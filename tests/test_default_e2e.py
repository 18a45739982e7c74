"""The one end-to-end test on the real default model: build (or reuse) it, then `roots-edge demo`."""
import json

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model():
    from roots_edge.train.pretrain import ensure_default_model

    return ensure_default_model(progress=False)


def test_default_model_record_and_quality(default_model):
    from roots_edge.data.folder import read_record
    from roots_edge.core.spec import read_spec

    rec = read_record(default_model)
    m = rec["metrics"]
    assert m["val_perplexity"] < m["unigram_perplexity"] / 5  # measured: ~72 vs ~720
    assert m["val_perplexity"] < 120
    assert rec["data"]["source"].startswith("stdlib-docstrings") and len(rec["data"]["sha256"]) == 64
    spec = read_spec(default_model)
    for width in (spec.hidden_size, spec.intermediate_size, spec.vocab_size):
        assert width % 256 == 0
    cfg = json.loads((default_model / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]


def test_demo_end_to_end(default_model):
    from roots_edge.cli import main

    result = CliRunner().invoke(main, ["demo", "-n", "20", "--bench-runs", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "validation perplexity" in out and "unigram baseline" in out and "sample (greedy): Return the" in out
    table = out.split("verification against PyTorch")[1]
    for target in ("gguf-Q4_K_M", "onnx-int8", "openvino-int4"):
        line = next(ln for ln in table.splitlines() if ln.startswith(target))
        assert line.rstrip().endswith("ok"), line
    bench = out.split("benchmark (this machine")[1]
    rows = [ln for ln in bench.splitlines() if ln.startswith("| ")][1:]
    assert len(rows) == 4 and rows[0].startswith("| reference default | torch")
    assert "tg64 t/s" in bench and "memory bandwidth" in bench