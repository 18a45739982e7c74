"""Bad inputs of issue 23, to merge into test_bad_inputs.py: graphs whose inputs and outputs are not the ones the
runtime binds (ONNX, OpenVINO), `roots-edge bench` on broken artifacts, missing paths, absent devices, unusable
outputs and counts, and a GGUF header that claims a context of 2^31-1 tokens.

Every damaged input is built from a real tiny export. The load cases are rows of CASES as in test_bad_inputs.py
(the API raises the exact class with the words; the CLI exits non-zero with one `Error` line, no traceback)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from artifacts import export_onnx
from click.testing import CliRunner
from test_bad_inputs import copy, damaged_artifact, gguf_key_value, gguf_of, refused

from roots_edge.cli import main
from roots_edge.core.errors import BenchError, OutputExistsError, OutputPathError, RuntimeLoadError

FAST = ["--runs", "1", "--warmup", "0", "--threads", "1", "--prompt-tokens", "24", "--gen-tokens", "4"]


@pytest.fixture(scope="module")
def world(tiny_llama, tiny_bert_classifier, llama, bert, texts_jsonl, tmp_path_factory):
    """One fp32 export per format of the tiny Llama, and the tiny BERT classifier in ONNX and OpenVINO."""
    from roots_edge.exporters import configure, export, load_source

    root = tmp_path_factory.mktemp("bad-bench")
    export(load_source(tiny_llama, calibration=texts_jsonl), "gguf-f32", root / "gguf", log=lambda *_: None)
    out = {"model": Path(tiny_llama), "gguf": root / "gguf", "onnx": export_onnx(llama, "onnx-fp32", root / "onnx")[0],
           "clf": export_onnx(bert, "onnx-fp32", root / "clf")[0]}
    for name, source in (("openvino", llama), ("clf-openvino", bert)):
        target, options = configure("openvino-fp32", spec=source.spec)
        export(source, target, root / name, options, log=lambda *_: None)
        out[name] = root / name
    return out


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTS_EDGE_HOME", str(tmp_path / "home"))


# ------------------------------------------------------------------------------- graphs with other names
def onnx_renamed(old: str, new: str, *, output=False):
    """Rename a graph input (or output) and every use of it: a valid graph that no longer has `old`."""
    def damage(folder):
        import onnx

        path = folder / "model.onnx"
        model = onnx.load(str(path))
        ports = model.graph.output if output else model.graph.input
        next(p for p in ports if p.name == old).name = new
        for node in model.graph.node:
            for names in (node.input, node.output):
                for i, name in enumerate(names):
                    if name == old:
                        names[i] = new
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return damage


def onnx_extra_input(name: str):
    """Add an input nobody feeds (it feeds an Identity whose result is a new output, so the graph stays valid)."""
    def damage(folder):
        import onnx
        from onnx import TensorProto, helper

        path = folder / "model.onnx"
        model = onnx.load(str(path))
        model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]))
        model.graph.node.append(helper.make_node("Identity", [name], [f"{name}_out"]))
        model.graph.output.append(helper.make_tensor_value_info(f"{name}_out", TensorProto.INT64,
                                                                ["batch", "sequence"]))
        onnx.save(model, str(path))
    return damage


def ir_renamed(old: str, new: str):
    """Rename an IR port's tensor name (and its layer) in openvino_model.xml."""
    def damage(folder):
        path = folder / "openvino_model.xml"
        text = path.read_text()
        assert f'names="{old}"' in text
        path.write_text(text.replace(f'names="{old}"', f'names="{new}"').replace(f'name="{old}"', f'name="{new}"'))
    return damage


def classifies(name, damage):
    """A classifier artifact copy (manifest removed) with `damage` applied: (API call, `predict` arguments)."""
    def build(world, tmp):
        from roots_edge.runtimes import load

        folder = copy(world, tmp, name)
        (folder / "manifest.json").unlink()
        damage(folder)
        return (lambda: load(folder).classify("a fine film")), ["predict", str(folder), "a fine film"]
    return build


def bench_args(*args):
    """`roots-edge bench` with arguments built from the world and tmp: (API call, CLI arguments)."""
    def build(world, tmp):
        from roots_edge.runtimes.bench import BenchConfig, bench

        paths = [a(world, tmp) if callable(a) else a for a in args]
        return (lambda: bench([Path(p) for p in paths], BenchConfig(runs=1), progress=False)), \
            ["bench", *map(str, paths), "--no-reference", *FAST]
    return build


def bench_option(option, value, field):
    """An out-of-range count: the API's BenchConfig and the CLI's option both refuse it."""
    def build(world, tmp):
        from roots_edge.runtimes.bench import BenchConfig

        return (lambda: BenchConfig(**{field: value})), ["bench", str(world["gguf"]), "--no-reference", option,
                                                         str(value)]
    return build


def bench_output(kind, option):
    """-o / --plot naming an existing folder or file: refused before anything runs."""
    def build(world, tmp):
        from roots_edge.cli.bench import check_outputs

        target = tmp / "out"
        if kind == "folder":
            target.mkdir()
        else:
            target.write_text("keep me")
        output, plot = (target, None) if option == "-o" else (None, target)
        return (lambda: check_outputs(output, plot, False)), ["bench", str(world["gguf"]), "--no-reference", option,
                                                              str(target), *FAST]
    return build


ONNX, OV = "onnx", "openvino"
CASES = [
    ("onnx-input-ids-renamed", damaged_artifact(ONNX, onnx_renamed("input_ids", "tokens"), unlisted=True),
     RuntimeLoadError, "no input input_ids; input tokens that roots-edge does not feed"),
    ("onnx-present-renamed", damaged_artifact(ONNX, onnx_renamed("present.1.value", "present_1_v", output=True),
                                              unlisted=True), RuntimeLoadError, "no output present.1.value"),
    ("onnx-past-renamed", damaged_artifact(ONNX, onnx_renamed("past_key_values.0.key", "cache.0.key"),
                                           unlisted=True), RuntimeLoadError, "no input past_key_values.0.key"),
    ("onnx-decoder-extra-input", damaged_artifact(ONNX, onnx_extra_input("cache_position"), unlisted=True),
     RuntimeLoadError, "input cache_position that roots-edge does not feed"),
    ("onnx-classifier-logits-renamed", classifies("clf", onnx_renamed("logits", "scores", output=True)),
     RuntimeLoadError, "no output last_hidden_state"),
    ("onnx-classifier-mask-renamed", classifies("clf", onnx_renamed("attention_mask", "mask")), RuntimeLoadError,
     "no input attention_mask; input mask that roots-edge does not feed"),
    ("openvino-input-ids-renamed", damaged_artifact(OV, ir_renamed("input_ids", "tokens"), unlisted=True),
     RuntimeLoadError, "no input input_ids; input tokens that roots-edge does not feed"),
    ("openvino-beam-idx-renamed", damaged_artifact(OV, ir_renamed("beam_idx", "beams"), unlisted=True),
     RuntimeLoadError, "no input beam_idx"),
    ("openvino-classifier-logits-renamed", classifies("clf-openvino", ir_renamed("logits", "scores")),
     RuntimeLoadError, "no output last_hidden_state"),
    ("bench-missing-path", bench_args(lambda w, t: t / "nope"), RuntimeLoadError, "nope does not exist"),
    ("bench-runs-0", bench_option("--runs", 0, "runs"), BenchError, "runs = 0"),
    ("bench-warmup-negative", bench_option("--warmup", -1, "warmup"), BenchError, "warmup = -1"),
    ("bench-prompt-tokens-0", bench_option("--prompt-tokens", 0, "prompt_tokens"), BenchError, "prompt_tokens = 0"),
    ("bench-gen-tokens-0", bench_option("--gen-tokens", 0, "gen_tokens"), BenchError, "gen_tokens = 0"),
    ("bench-output-a-folder", bench_output("folder", "-o"), OutputPathError, "is a folder"),
    ("bench-plot-a-folder", bench_output("folder", "--plot"), OutputPathError, "is a folder"),
    ("bench-output-exists", bench_output("file", "-o"), OutputExistsError, "pass --force"),
    ("bench-plot-exists", bench_output("file", "--plot"), OutputExistsError, "pass --force"),
]


@pytest.mark.parametrize("name, build, error, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, name, build, error, words):
    result, message = refused(*build(world, tmp_path), error, words)
    assert len(message) == 1, result.output
    assert "machine:" not in result.output            # refused before anything was measured
    if name.startswith("bench-") and "exists" in name:
        assert (tmp_path / "out").read_text() == "keep me"


def test_a_renamed_graph_message_names_expected_found_and_the_fix(world, tmp_path):
    from roots_edge.runtimes import load

    folder = copy(world, tmp_path, "onnx")
    (folder / "manifest.json").unlink()
    onnx_renamed("input_ids", "tokens")(folder)
    with pytest.raises(RuntimeLoadError) as raised:
        load(folder)
    text = str(raised.value)
    assert "for a decoder with KV cache: expected inputs input_ids, attention_mask, " \
           "past_key_values.{0..1}.key, past_key_values.{0..1}.value (and optionally position_ids)" in text
    assert "found inputs tokens, attention_mask, position_ids" in text
    assert "roots-edge export MODEL --target onnx-fp32" in text and "text-generation-with-past" in text


def test_graph_outputs_are_read_by_name_not_position(world, tmp_path):
    """A decoder graph that lists its outputs in another order (presents first) gives the same logits."""
    import onnx

    from roots_edge.runtimes import load

    folder = copy(world, tmp_path, "onnx")
    (folder / "manifest.json").unlink()
    model = onnx.load(str(folder / "model.onnx"))
    outputs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend(outputs[1:] + outputs[:1])
    onnx.save(model, str(folder / "model.onnx"))
    ids = [1, 42, 7, 99, 5]
    theirs, ours = load(folder, device="cpu"), load(world["onnx"], device="cpu")
    assert theirs.backend.outputs[-1] == "logits"
    np.testing.assert_array_equal(theirs.logits(ids), ours.logits(ids))
    assert theirs.generate_ids(ids, 8, ignore_eos=True) == ours.generate_ids(ids, 8, ignore_eos=True)


# ---------------------------------------------------------------------------------------------- bench
def truncated_gguf(world, tmp) -> Path:
    """A bare .gguf file cut in half (no manifest, no tokenizer.json beside it)."""
    data = gguf_of(world["gguf"]).read_bytes()
    path = tmp / "broken.gguf"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_broken_artifact_fails_its_own_row_and_the_good_one_is_measured(world, tmp_path):
    from roots_edge.runtimes.bench import BenchConfig, bench

    broken = truncated_gguf(world, tmp_path)
    result = bench([broken, world["gguf"]], BenchConfig(runs=1, warmup=0, threads=1, prompt_tokens=24, gen_tokens=4),
                   progress=False)
    bad, good = result["rows"]
    assert bad["artifact"] == str(broken) and bad["error_class"] == "RuntimeLoadError"
    assert "broken.gguf is truncated" in bad["error"] and "\n" not in bad["error"]
    assert bad["format"] == "gguf" and bad["size_bytes"] == broken.stat().st_size and "tg_tps" not in bad
    assert "error" not in good and good["tg_tps"] > 0 and good["pp24"][0] > 0
    assert 1 < good["perplexity"] < 512 and good["quality_tokens"] > 50

    out = {}
    for fmt in ("md", "json"):
        cli = CliRunner().invoke(main, ["bench", str(broken), str(world["gguf"]), "--no-reference", "--format", fmt,
                                        *FAST])
        assert cli.exit_code == 1, cli.output
        assert "Traceback" not in cli.output
        errors = [line for line in cli.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and errors[0].startswith("Error: 1 of 2 rows failed: broken.gguf: ")
        assert "is truncated" in errors[0]
        out[fmt] = cli.stdout
    rows = json.loads(out["json"])["rows"]
    assert "is truncated" in rows[0]["error"] and rows[1]["tg_tps"] > 0
    head, _, first, second = [line for line in out["md"].splitlines() if line.startswith("|")][:4]
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    header, bad_cells, good_cells = cells(head), cells(first), cells(second)
    assert header[-1] == "error" and bad_cells[0] == "broken.gguf" and "is truncated" in bad_cells[-1]
    assert bad_cells[header.index("tg4 t/s")] == "-" and float(good_cells[header.index("tg4 t/s")].split()[0]) > 0
    assert good_cells[-1] == "-"


def test_bare_gguf_files_without_any_tokenizer_json_are_measured_on_their_own_tokens(world, tmp_path):
    """Two copies of one .gguf, nothing beside them: the first row tokenizes with the file's own tokenizer and
    both rows are measured on those ids (the same file: the same perplexity)."""
    from roots_edge.runtimes.bench import BenchConfig, bench

    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    shutil.copy(gguf_of(world["gguf"]), a)
    shutil.copy(gguf_of(world["gguf"]), b)
    first, second = bench([a, b], BenchConfig(runs=1, warmup=0, threads=1, prompt_tokens=24, gen_tokens=4),
                          progress=False)["rows"]
    assert "error" not in first and "error" not in second and "ids" not in first
    assert first["quality_tokens"] == second["quality_tokens"] > 50
    assert first["perplexity"] == pytest.approx(second["perplexity"], rel=1e-6)


def test_an_absent_device_is_a_failed_row_with_one_line(world):
    from roots_edge.runtimes.bench import BenchConfig, bench
    from roots_edge.runtimes.devices import present

    if "gpu" in present("llamacpp"):
        pytest.skip("this machine offers llama.cpp a GPU")
    (row,) = bench([world["gguf"]], BenchConfig(device="gpu", runs=1), progress=False)["rows"]
    assert row["error_class"] == "DeviceError"
    assert row["error"].startswith("device 'gpu' is not available to llamacpp on this machine; present: cpu")
    cli = CliRunner().invoke(main, ["bench", str(world["gguf"]), "--no-reference", "--device", "gpu", *FAST])
    assert cli.exit_code == 1 and "Traceback" not in cli.output
    assert "Error: 1 of 1 rows failed: gguf: device 'gpu' is not available to llamacpp" in cli.output


def test_every_row_failed_writes_the_table_but_no_plot(world, tmp_path):
    table, png = tmp_path / "t.md", tmp_path / "p.png"
    cli = CliRunner().invoke(main, ["bench", str(truncated_gguf(world, tmp_path)), "--no-reference", "-o", str(table),
                                    "--plot", str(png), *FAST])
    assert cli.exit_code == 1 and "Traceback" not in cli.output
    assert "no row was measured, so --plot was not written" in cli.output and not png.exists()
    assert "broken.gguf" in table.read_text() and "is truncated" in table.read_text()


def test_force_replaces_an_existing_output_file_only(world, tmp_path):
    table, png = tmp_path / "t.md", tmp_path / "p.png"
    table.write_text("old table")
    png.write_text("old plot")
    cli = CliRunner().invoke(main, ["bench", str(world["gguf"]), "--no-reference", "-o", str(table), "--plot",
                                    str(png), "--force", *FAST])
    assert cli.exit_code == 0, cli.output
    assert table.read_text().strip() == cli.stdout.strip() and "| gguf |" in table.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    cli = CliRunner().invoke(main, ["bench", str(world["gguf"]), "--no-reference", "-o", str(folder), "--force",
                                    *FAST])
    assert cli.exit_code != 0 and "is a folder" in cli.output and folder.is_dir()


def test_the_help_says_a_failed_row_exits_non_zero():
    text = CliRunner().invoke(main, ["bench", "--help"]).output
    assert "exits with status 1" in " ".join(text.split()) and "--force" in text


# ------------------------------------------------------------------------------ GGUF header context
def test_a_header_context_of_2_31_opens_at_the_default_and_info_says_both(world, tmp_path):
    from roots_edge.runtimes import load

    folder = copy(world, tmp_path, "gguf")
    (folder / "manifest.json").unlink()
    gguf_key_value(b"llama.context_length", 2**31 - 1)(folder)
    model = load(folder, device="cpu")
    info = model.info()
    t = time.perf_counter()
    assert model.tokenize("Return the") == load(world["gguf"], device="cpu").tokenize("Return the")
    assert time.perf_counter() - t < 5    # ~1 ms; llama-cpp-python's tokenize took 37 s (a 2^31-token buffer)
    assert (info["max_context"], info["context_length"]) == (2**31 - 1, 2048)
    assert "opened with 2,048 tokens of context of the 2,147,483,647" in info["context_note"]
    assert info["kv_cache"]["tokens"] == 2048
    assert model.generate("Return the", 4) == load(world["gguf"], device="cpu").generate("Return the", 4)
    assert load(folder, device="cpu", context=4096).info()["context_length"] == 4096
    with pytest.raises(RuntimeLoadError, match="needs about"):     # the whole claimed context: refused up front
        load(folder, device="cpu", context=2**31 - 1)
    cli = CliRunner().invoke(main, ["run", str(folder), "-p", "Return the", "-n", "2", "--context", str(2**31 - 1)])
    assert cli.exit_code == 1 and "Traceback" not in cli.output and "pass a smaller --context" in cli.output
