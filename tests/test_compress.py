"""Compression recipes (parsing, order, the shipped ones, one run end to end on a tiny model) and the
standard-library topic set."""
from __future__ import annotations

import json

import pytest

from roots_edge.pipelines.compress import CompressRecipe, load_compress_recipe, run_recipe
from roots_edge.core.errors import RecipeError


def test_shipped_recipes_load():
    for name in ("default-compress", "minilm-compress"):
        r = load_compress_recipe(name)
        assert list(r.steps) == [k for k in ("finetune", "prune", "distill", "export", "bench") if k in r.steps]
        assert "prune" in r.steps and "distill" in r.steps and r.steps["export"].targets
    d = load_compress_recipe("default-compress")
    assert d.steps["distill"].options["steps"] == 1000     # the default model's own training budget


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "distill": {}, "prune": {}}, "out of order"),
    ({"name": "x", "export": {}, "finetune": {}}, "out of order"),
    ({"name": "x", "quantize": {}}, "unknown sections"),
    ({"name": "x"}, "no steps"),
    ({"prune": {}}, "needs a name"),
    ({"name": "x", "prune": {"heads": 0}}, "fraction to keep"),
    ({"name": "x", "prune": {"width": 0.5}}, "unknown keys in \\[prune\\]"),
    ({"name": "x", "prune": {}, "distill": {"steps": -5}}, "steps = -5: expected a positive integer"),
    ({"name": "x", "prune": {}, "distill": {"lr": "fast"}}, "lr = 'fast': expected a positive number"),
    ({"name": "x", "prune": {}, "distill": {"teacher_lr": 1}}, "unknown keys in \\[distill\\]"),
    ({"name": "x", "prune": []}, "must be a table"),
    ({"name": "x", "export": {"targets": ["onnx-int3"]}}, "unknown target"),
    ({"name": "x", "export": {"targets": "onnx-int8"}}, "expected a list of target names"),
    ({"name": "x", "finetune": {"epochs": 0}}, "epochs = 0: expected a positive integer"),
    ({"name": "x", "finetune": {"data": "no-such-file.csv"}}, "neither a file"),
    ({"name": "x", "prune": {"calibration": "missing.txt"}}, "neither a file"),
    ({"name": "x", "bench": {"runs": "3"}}, "runs = '3': expected a positive integer"),
])
def test_bad_recipes_are_refused_before_any_work(raw, message):
    with pytest.raises(RecipeError, match=message):
        CompressRecipe.from_dict(raw, "test.toml")


def test_bad_toml_and_unknown_recipe(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"name = 'x'\n[prune\n")
    with pytest.raises(RecipeError, match="bad.toml: not valid"):
        load_compress_recipe(bad)
    latin = tmp_path / "latin.toml"
    latin.write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(RecipeError, match="UTF-8"):
        load_compress_recipe(latin)
    with pytest.raises(RecipeError, match="default-compress"):
        load_compress_recipe("no-such-recipe")


def test_recipe_runs_prune_distill_export_bench_with_a_report(tiny_llama, tmp_path):
    recipe = CompressRecipe.from_dict({
        "name": "tiny",
        "prune": {"ffn": 0.5, "layers": 1},
        "distill": {"steps": 12, "seq_len": 64, "eval_every": 6, "lr": 3e-3},
        "export": {"targets": ["onnx-int8"], "teacher": True},
        "bench": {"runs": 1, "prompt_tokens": 16, "gen_tokens": 4},
    })
    out = tmp_path / "run"
    report = run_recipe(tiny_llama, recipe, out, progress=False, log=lambda *_: None)
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["teacher", "pruned", "distilled", "student onnx-int8", "teacher onnx-int8"]
    assert stages["pruned"]["parameters"] < stages["teacher"]["parameters"]
    assert stages["distilled"]["parameters"] == stages["pruned"]["parameters"]
    for s in ("teacher", "pruned", "distilled"):
        assert stages[s]["val_perplexity"] > 1
    assert stages["student onnx-int8"]["verification"]["passed"] is True
    assert len(report["bench"]["rows"]) == 3           # the teacher as reference + two artifacts
    text = (out / "report.md").read_text()
    assert "| distilled |" in text and "## Speed and size" in text and "tg4" in text
    assert json.loads((out / "report.json").read_text())["recipe"] == "tiny"
    assert (out / "distilled" / "model.safetensors").is_file() and not (out / ".distill.checkpoint").exists()
    with pytest.raises(Exception, match="already exists"):
        run_recipe(tiny_llama, recipe, out, progress=False, log=lambda *_: None)


def test_stdlib_topics_is_a_deterministic_labeled_set():
    from roots_edge.data.corpora import TOPICS_MIN_PER_CLASS, stdlib_topics

    train, test = stdlib_topics()
    classes = set(train.labels)
    assert len(classes) >= 10 and set(test.labels) <= classes
    assert len(train.texts) + len(test.texts) >= 2000
    assert 0.15 < len(test.texts) / (len(train.texts) + len(test.texts)) < 0.25
    assert not set(train.texts) & set(test.texts)
    counts = {c: train.labels.count(c) + test.labels.count(c) for c in classes}
    assert min(counts.values()) >= TOPICS_MIN_PER_CLASS
    assert {"email", "asyncio", "unittest", "xml"} <= classes
