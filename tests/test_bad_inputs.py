"""The bad-input corpus (issue 14): damaged GGUF, ONNX, OpenVINO and safetensors files, broken configs,
tokenizers and manifests, unreadable data files, wrong recipes, impossible generation options and output paths.

Each case damages a copy of a real artifact, model folder or file, then asserts two things: the Python API raises
the exact roots-edge error class (with words that name the problem), and the command a user would type exits
non-zero with a short message and no traceback. A case is one row of CASES: (name, build, error, words), where
`build(world, tmp)` makes the damaged input and returns (API call, CLI arguments).
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from artifacts import nan_safetensors
from click.testing import CliRunner

from roots_edge.cli import main
from roots_edge.errors import (BackendError, CorruptModelError, DataError, GenerationError, ModelNotFoundError,
                               NotAModelError, OutputExistsError, OutputPathError, RecipeError, RuntimeLoadError,
                               TargetError, TaskError, TextInputError, UnsupportedModelError)

PROMPT = "Return the"


@pytest.fixture(scope="module")
def world(tiny_llama, llama_exports, llama_onnx, llama_ir, bert_onnx):
    return {"model": Path(tiny_llama), "gguf": llama_exports["gguf-f32"][0], "onnx": llama_onnx["fp32"][0],
            "openvino": llama_ir["fp32"][0], "clf": bert_onnx["fp32"][0]}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTS_EDGE_HOME", str(tmp_path / "home"))


# ------------------------------------------------------------------------------------------ builders
def copy(world, tmp, name) -> Path:
    return Path(shutil.copytree(world[name], tmp / name))


def gguf_of(folder: Path) -> Path:
    return next(folder.glob("*.gguf"))


def runs(path):
    """Load an artifact and generate: (API call, `roots-edge run` arguments)."""
    from roots_edge.runtimes import load

    return (lambda: load(path).generate(PROMPT, 2)), ["run", str(path), "-p", PROMPT, "-n", "2"]


def loads_model(path):
    """Open a PyTorch model folder: (API call, `roots-edge generate -m` arguments)."""
    from roots_edge.model import LanguageModel

    return (lambda: LanguageModel.from_pretrained(path)), ["generate", PROMPT, "-m", str(path), "-n", "2"]


def damaged_artifact(name, damage, *, unlisted=False):
    """An artifact copy with `damage(folder)` applied; `unlisted`: its manifest removed first, so the damage
    reaches the format's own checks instead of the sha256 comparison."""
    def build(world, tmp):
        folder = copy(world, tmp, name)
        if unlisted:
            (folder / "manifest.json").unlink()
        damage(folder)
        return runs(folder)
    return build


def damaged_model(damage):
    def build(world, tmp):
        folder = copy(world, tmp, "model")
        damage(folder)
        return loads_model(folder)
    return build


def write(name, data):
    def damage(folder):
        target = folder / name if not callable(name) else name(folder)
        target.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return damage


def edit_json(name, change):
    def damage(folder):
        path = folder / name
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))
    return damage


def cut(name, keep=0.5):
    def damage(folder):
        path = folder / name if not callable(name) else name(folder)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def overwrite_middle(name):
    def damage(folder):
        path = folder / name if not callable(name) else name(folder)
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.seek(size // 3)
            f.write(b"\xff" * (size // 3))
    return damage


def remove(name):
    return lambda folder: (folder / name).unlink()


def gguf_bytes_at(offset, raw):
    def damage(folder):
        path = gguf_of(folder)
        data = bytearray(path.read_bytes())
        data[offset:offset + len(raw)] = raw
        path.write_bytes(bytes(data))
    return damage


def gguf_key_value(key: bytes, value: int):
    """Overwrite the uint32 value of metadata `key` (its type field follows the key, then the value)."""
    def damage(folder):
        path = gguf_of(folder)
        data = bytearray(path.read_bytes())
        at = data.find(key) + len(key)
        assert at > len(key) and struct.unpack_from("<I", data, at)[0] == 4, "a uint32 key"
        struct.pack_into("<I", data, at + 4, value)
        path.write_bytes(bytes(data))
    return damage


def safetensors_header(header_bytes: bytes | None = None, *, length: int | None = None, change=None):
    """model.safetensors with its header replaced (bytes, a JSON change) or its length field overwritten."""
    def damage(folder):
        path = folder / "model.safetensors"
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        header, body = data[8:8 + n], data[8 + n:]
        if change is not None:
            header = json.dumps(change(json.loads(header))).encode()
        elif header_bytes is not None:
            header = header_bytes
        path.write_bytes(struct.pack("<Q", length if length is not None else len(header)) + header + body)
    return damage


def swap_first_two_offsets(header):
    names = [k for k in header if k != "__metadata__"]
    header[names[0]]["data_offsets"] = list(header[names[1]]["data_offsets"])
    return header


def data_file(name, content: bytes | str, *, label_column=None):
    """`roots-edge finetune` on a data file: (API call: the check that runs before the model loads, CLI)."""
    def build(world, tmp):
        from roots_edge.data import finetune_kind, read_corpus, read_labeled

        path = tmp / name
        if content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

        def check():
            kind = finetune_kind(path, "text", label_column or "label", label_given=label_column is not None)
            return read_labeled(path, "text", label_column or "label") if kind == "classification" \
                else read_corpus([path])
        args = ["finetune", str(world["model"]), "--data", str(path), "-o", str(tmp / "out"), "--quiet"]
        return check, args + (["--label-column", label_column] if label_column else [])
    return build


def recipe(text: str):
    def build(world, tmp):
        from roots_edge.recipes import load_recipe

        path = tmp / "bad.toml"
        path.write_text(text)
        return (lambda: load_recipe(path)), ["train", "--recipe", str(path), "-o", str(tmp / "out"), "--quiet"]
    return build


GOOD_RECIPE = 'name = "tiny"\n[model]\nhidden_size = 64\nnum_heads = 4\nnum_kv_heads = 2\n[train]\nsteps = 10\n'


def with_train(line: str) -> str:
    return GOOD_RECIPE + line + "\n"


def generation(artifact="gguf", **options):
    """`run` with one generation option: (API call, CLI)."""
    def build(world, tmp):
        from roots_edge.runtimes import load

        path = world[artifact]
        flags = []
        for key, value in options.items():
            if key == "prompt":
                continue
            flag = {"max_new_tokens": "-n"}.get(key, "--" + key.replace("_", "-"))
            for v in (value if isinstance(value, tuple) else (value,)):
                flags += [flag, str(v)]
        prompt = options.get("prompt", PROMPT)
        api_options = {k: v for k, v in options.items() if k not in ("prompt", "max_new_tokens", "context")}
        n = options.get("max_new_tokens", 2)

        def call():
            model = load(path, context=options.get("context"))
            return model.generate(prompt, n, **api_options)
        return call, ["run", str(path), "-p", prompt, *flags]
    return build


def task_mismatch(artifact, verb):
    def build(world, tmp):
        from roots_edge.runtimes import load

        path = world[artifact]
        call = {"run": lambda: load(path).generate(PROMPT, 2), "predict": lambda: load(path).classify(PROMPT)}[verb]
        args = {"run": ["run", str(path), "-p", PROMPT], "predict": ["predict", str(path), "a fine day"]}[verb]
        return call, args
    return build


def output_path(kind):
    """`export -o` where the output cannot be written."""
    def build(world, tmp):
        from roots_edge.cli.common import check_output

        blocker = tmp / "a-file"
        blocker.write_text("x")
        out = {"under-a-file": blocker / "out", "exists": blocker, "empty": ""}[kind]
        return (lambda: check_output(out, False)), ["export", str(world["model"]), "-t", "onnx-fp32", "-o", str(out)]
    return build


def unknown_target(world, tmp):
    from roots_edge.exporters.base import get_target

    return (lambda: get_target("gguf-q3x")), ["export", str(world["model"]), "-t", "gguf-q3x", "-o", str(tmp / "o")]


def nan_weights_generate(world, tmp):
    """A model folder whose safetensors data is all NaN: every size and header check passes, generation must not."""
    from roots_edge.model import LanguageModel

    folder = copy(world, tmp, "model")
    nan_safetensors(folder / "model.safetensors")
    return (lambda: LanguageModel.from_pretrained(folder).generate(PROMPT, 2)), \
        ["generate", PROMPT, "-m", str(folder), "-n", "2"]


def finetune_lr_nan(world, tmp):
    from roots_edge.classifier import FinetuneConfig
    from roots_edge.recipes import settings

    rows = tmp / "rows.csv"
    rows.write_text("text,label\ngood film,pos\nbad film,neg\n")
    return (lambda: settings(FinetuneConfig, {"lr": float("nan")}, "finetune")), \
        ["finetune", str(world["model"]), "--data", str(rows), "--lr", "nan", "-o", str(tmp / "out"), "--quiet"]


def missing_path(world, tmp):
    return runs(tmp / "nowhere")


def file_not_folder(world, tmp):
    path = tmp / "notes.txt"
    path.write_text("hello")
    return loads_model(path)


# --------------------------------------------------------------------------------------------- corpus
GGUF, ONNX, OV = "gguf", "onnx", "openvino"
CASES = [
    # GGUF: the header walk runs before llama.cpp sees the file (llama.cpp can abort the process)
    ("gguf-empty", damaged_artifact(GGUF, write(gguf_of, b""), unlisted=True), RuntimeLoadError, "not a GGUF"),
    ("gguf-wrong-magic", damaged_artifact(GGUF, gguf_bytes_at(0, b"GGML"), unlisted=True), RuntimeLoadError,
     "not a GGUF file"),
    ("gguf-truncated", damaged_artifact(GGUF, cut(gguf_of), unlisted=True), RuntimeLoadError, "truncated"),
    ("gguf-header-only", damaged_artifact(GGUF, cut(gguf_of, 0.001), unlisted=True), RuntimeLoadError,
     "truncated or corrupt"),
    ("gguf-key-length-2^40", damaged_artifact(GGUF, gguf_bytes_at(24, struct.pack("<Q", 1 << 40)), unlisted=True),
     RuntimeLoadError, "runs past the end"),
    ("gguf-key-count-huge", damaged_artifact(GGUF, gguf_bytes_at(16, struct.pack("<Q", 1 << 62)), unlisted=True),
     RuntimeLoadError, "implausible header"),
    ("gguf-tensor-count-huge", damaged_artifact(GGUF, gguf_bytes_at(8, struct.pack("<Q", (1 << 64) - 1)),
                                                unlisted=True), RuntimeLoadError, "implausible header"),
    ("gguf-version-0", damaged_artifact(GGUF, gguf_bytes_at(4, struct.pack("<I", 0)), unlisted=True),
     RuntimeLoadError, "implausible header"),
    ("gguf-eos-out-of-vocabulary", damaged_artifact(GGUF, gguf_key_value(b"tokenizer.ggml.eos_token_id", 10**6),
                                                    unlisted=True), RuntimeLoadError, "eos_token_id = 1000000"),
    ("gguf-bos-out-of-vocabulary", damaged_artifact(GGUF, gguf_key_value(b"tokenizer.ggml.bos_token_id", 2**31),
                                                    unlisted=True), RuntimeLoadError, "is not a token of its"),
    ("gguf-overwritten-in-place", damaged_artifact(GGUF, overwrite_middle(gguf_of)), RuntimeLoadError,
     "sha256 differs"),
    ("gguf-truncated-in-artifact", damaged_artifact(GGUF, cut(gguf_of)), RuntimeLoadError, "truncated or was replaced"),
    ("gguf-missing", damaged_artifact(GGUF, lambda f: gguf_of(f).unlink(), unlisted=True), RuntimeLoadError,
     "holds no model roots-edge can run"),
    ("gguf-two-files", damaged_artifact(GGUF, lambda f: shutil.copy(gguf_of(f), f / "other.gguf"), unlisted=True),
     RuntimeLoadError, "2 .gguf files"),
    ("gguf-corrupt-manifest", damaged_artifact(GGUF, write("manifest.json", "{\"files\": [")), CorruptModelError,
     "manifest.json is not a readable manifest"),
    # ONNX
    ("onnx-empty", damaged_artifact(ONNX, write("model.onnx", b""), unlisted=True), RuntimeLoadError, "empty"),
    ("onnx-garbage", damaged_artifact(ONNX, write("model.onnx", b"\x08\x07garbage" * 64), unlisted=True),
     RuntimeLoadError, "model.onnx"),
    ("onnx-truncated", damaged_artifact(ONNX, cut("model.onnx"), unlisted=True), RuntimeLoadError, "model.onnx"),
    ("onnx-truncated-in-artifact", damaged_artifact(ONNX, cut("model.onnx")), RuntimeLoadError, "truncated"),
    ("onnx-overwritten-in-place", damaged_artifact(ONNX, overwrite_middle("model.onnx")), RuntimeLoadError,
     "sha256 differs"),
    ("onnx-missing-model", damaged_artifact(ONNX, remove("model.onnx")), RuntimeLoadError, "missing: model.onnx"),
    ("onnx-no-config", damaged_artifact(ONNX, remove("config.json"), unlisted=True), RuntimeLoadError,
     "gives no context length"),
    ("onnx-config-a-list", damaged_artifact(ONNX, write("config.json", "[1, 2]"), unlisted=True), RuntimeLoadError,
     "config.json holds a JSON list"),
    ("onnx-config-not-json", damaged_artifact(ONNX, write("config.json", "{\"a\": "), unlisted=True),
     RuntimeLoadError, "config.json is not valid JSON"),
    ("onnx-tokenizer-not-json", damaged_artifact(ONNX, write("tokenizer.json", "{oops"), unlisted=True),
     RuntimeLoadError, "tokenizer.json is not a tokenizer"),
    ("onnx-tokenizer-wrong-shape", damaged_artifact(ONNX, write("tokenizer.json", "{\"model\": 3}"), unlisted=True),
     RuntimeLoadError, "tokenizer.json is not a tokenizer"),
    ("onnx-tokenizer-missing-listed", damaged_artifact(ONNX, remove("tokenizer.json")), RuntimeLoadError,
     "tokenizer.json is missing"),
    ("onnx-manifest-a-list", damaged_artifact(ONNX, write("manifest.json", "[]")), CorruptModelError,
     "not a readable manifest"),
    ("onnx-manifest-latin1", damaged_artifact(ONNX, write("manifest.json", b"\xff\xfe{")), CorruptModelError,
     "not a readable manifest"),
    ("onnx-eos-out-of-vocabulary", damaged_artifact(ONNX, write("generation_config.json", '{"eos_token_id": 1000000}'),
                                                    unlisted=True), RuntimeLoadError, "eos_token_id 1000000"),
    ("onnx-generation-config-list", damaged_artifact(ONNX, write("generation_config.json", "[]"), unlisted=True),
     RuntimeLoadError, "generation_config.json holds a JSON list"),
    # OpenVINO
    ("openvino-xml-not-xml", damaged_artifact(OV, write("openvino_model.xml", "<net"), unlisted=True),
     RuntimeLoadError, "not valid XML"),
    ("openvino-xml-wrong-root", damaged_artifact(OV, write("openvino_model.xml", "<html/>"), unlisted=True),
     RuntimeLoadError, "not an OpenVINO IR"),
    ("openvino-bin-truncated", damaged_artifact(OV, cut("openvino_model.bin")), RuntimeLoadError, "truncated"),
    ("openvino-bin-overwritten", damaged_artifact(OV, overwrite_middle("openvino_model.bin")), RuntimeLoadError,
     "sha256 differs"),
    ("openvino-bin-missing", damaged_artifact(OV, remove("openvino_model.bin")), RuntimeLoadError,
     "openvino_model.bin"),
    ("openvino-config-not-json", damaged_artifact(OV, write("config.json", "{"), unlisted=True), RuntimeLoadError,
     "config.json is not valid JSON"),
    # safetensors and model folders (PyTorch)
    ("safetensors-too-short", damaged_model(write("model.safetensors", b"\x01\x02")), CorruptModelError,
     "too short"),
    ("safetensors-header-length-huge", damaged_model(safetensors_header(length=1 << 62)), CorruptModelError,
     "not a safetensors file"),
    ("safetensors-header-not-json", damaged_model(safetensors_header(b"{\"a\": [")), CorruptModelError,
     "not JSON"),
    ("safetensors-header-a-list", damaged_model(safetensors_header(b"[1, 2, 3]")), CorruptModelError,
     "not an object"),
    ("safetensors-overlapping-tensors", damaged_model(safetensors_header(change=swap_first_two_offsets)),
     CorruptModelError, "safetensors header"),
    ("safetensors-shape-not-ints", damaged_model(safetensors_header(
        change=lambda h: {k: (v | {"shape": ["a"]} if k != "__metadata__" else v) for k, v in h.items()})),
     CorruptModelError, "non-negative integers"),
    ("safetensors-truncated", damaged_model(cut("model.safetensors", 0.9)), CorruptModelError, "truncated"),
    ("safetensors-dtype-size-mismatch", damaged_model(safetensors_header(
        change=lambda h: {k: (v | {"dtype": "F64"} if k != "__metadata__" else v) for k, v in h.items()})),
     CorruptModelError, "F64"),
    ("safetensors-all-nan", nan_weights_generate, BackendError, "non-finite logits"),
    ("model-pickle-only", damaged_model(lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin")),
     NotAModelError, "pickled weights are never loaded"),
    ("model-no-config", damaged_model(remove("config.json")), NotAModelError, "no config.json"),
    ("model-config-a-list", damaged_model(write("config.json", "[]")), CorruptModelError, "not the object"),
    ("model-config-not-json", damaged_model(write("config.json", "{\"model_type\": ")), NotAModelError,
     "not valid JSON"),
    ("model-config-hidden-abc", damaged_model(edit_json("config.json", lambda c: c | {"hidden_size": "abc"})),
     CorruptModelError, "hidden_size = 'abc'"),
    ("model-config-hidden-string-number", damaged_model(edit_json("config.json", lambda c: c | {"hidden_size": "64"})),
     CorruptModelError, "expected a positive integer"),
    ("model-config-layers-negative", damaged_model(edit_json("config.json", lambda c: c | {"num_hidden_layers": -2})),
     CorruptModelError, "num_hidden_layers = -2"),
    ("model-unsupported-type", damaged_model(edit_json("config.json", lambda c: c | {"model_type": "mamba"})),
     UnsupportedModelError, "not supported"),
    ("model-tokenizer-not-json", damaged_model(write("tokenizer.json", "{nope")), CorruptModelError,
     "tokenizer"),
    ("model-tokenizer-config-a-list", damaged_model(write("tokenizer_config.json", "[]")), CorruptModelError,
     "tokenizer_config.json"),
    ("model-missing-path", missing_path, (ModelNotFoundError, RuntimeLoadError), "does not exist"),
    ("model-a-file", file_not_folder, (NotAModelError, ModelNotFoundError), "notes.txt"),
    # data files for finetune
    ("data-latin1-csv", data_file("rows.csv", "text,label\ncaf\xe9 ok,a\nbad,b\n".encode("latin-1")), DataError,
     "not UTF-8"),
    ("data-label-column-named-but-missing", data_file("rows.csv", "text,category\nx,a\ny,b\n", label_column="label"),
     DataError, "no column 'label'"),
    ("data-other-label-column-missing", data_file("rows.csv", "text,label\nx,a\ny,b\n", label_column="topic"),
     DataError, "no column 'topic'"),
    ("data-extra-columns-no-label", data_file("rows.csv", "text,category\nx,a\ny,b\n"), DataError,
     "--label-column"),
    ("data-one-class", data_file("rows.csv", "text,label\nx,a\ny,a\n"), DataError, "at least two classes"),
    ("data-empty-csv", data_file("rows.csv", ""), DataError, "is empty"),
    ("data-jsonl-not-json", data_file("rows.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{oops\n"), DataError,
     "rows.jsonl:2: not valid JSON"),
    ("data-jsonl-row-a-list", data_file("rows.jsonl", "[1, 2]\n"), DataError, "must be an object"),
    ("data-missing-file", data_file("absent.csv", None), DataError, "does not exist"),
    ("data-plain-text-with-label-column", data_file("notes.txt", "some text\n", label_column="label"), DataError,
     "plain text"),
    ("finetune-lr-nan", finetune_lr_nan, RecipeError, "expected a finite number"),
    # recipes for train
    ("recipe-lr-negative", recipe(with_train("lr = -0.01")), RecipeError, "lr = -0.01: must be > 0"),
    ("recipe-lr-a-word", recipe(with_train('lr = "fast"')), RecipeError, "expected a finite number"),
    ("recipe-lr-nan", recipe(with_train("lr = nan")), RecipeError, "expected a finite number"),
    ("recipe-hidden-a-string", recipe(GOOD_RECIPE.replace("hidden_size = 64", 'hidden_size = "256"')), RecipeError,
     "expected an integer"),
    ("recipe-checkpoint-every-0", recipe(with_train("checkpoint_every = 0")), RecipeError, "must be > 0"),
    ("recipe-steps-negative", recipe(with_train("steps = -5").replace("steps = 10\n", "")), RecipeError,
     "steps = -5"),
    ("recipe-warmup-2", recipe(with_train("warmup = 2.0")), RecipeError, "must be in [0.0, 1.0)"),
    ("recipe-tie-a-number", recipe(GOOD_RECIPE.replace("[train]", "tie_embeddings = 1\n[train]")), RecipeError,
     "expected true or false"),
    ("recipe-unknown-key", recipe(with_train("learning_rate = 0.1")), RecipeError, "unknown keys"),
    ("recipe-not-toml", recipe("name = \n"), RecipeError, "not valid TOML"),
    ("recipe-section-not-table", recipe('name = "x"\ntrain = 5\n'), RecipeError, "must be a table"),
    ("recipe-no-name", recipe("[train]\nsteps = 3\n"), RecipeError, "needs a name"),
    ("recipe-heads-do-not-divide", recipe(GOOD_RECIPE.replace("num_heads = 4", "num_heads = 3")), RecipeError,
     "not a multiple"),
    ("recipe-tiny-vocabulary", recipe(GOOD_RECIPE + "[tokenizer]\nvocab_size = 10\n"), RecipeError,
     "at least 259"),
    # generation options and prompts
    ("gen-temperature-nan", generation(temperature=float("nan")), GenerationError, "finite temperature"),
    ("gen-temperature-negative", generation(temperature=-1.0), GenerationError, "temperature -1"),
    ("gen-temperature-inf", generation(temperature=float("inf")), GenerationError, "finite temperature"),
    ("gen-top-p-above-one", generation(top_p=1.5), GenerationError, "top_p 1.5"),
    ("gen-top-k-negative", generation(top_k=-3), GenerationError, "top_k -3"),
    ("gen-stop-empty", generation(stop=("",)), GenerationError, "non-empty"),
    ("gen-max-new-tokens-negative", generation(max_new_tokens=-1), GenerationError, "max_new_tokens"),
    ("gen-empty-prompt", generation(prompt=""), TextInputError, "empty"),
    ("gen-context-zero", generation(context=0), RuntimeLoadError, "positive number of tokens"),
    ("gen-context-past-model", generation("onnx", context=10**6), RuntimeLoadError, "trained for"),
    ("task-run-on-classifier", task_mismatch("clf", "run"), TaskError, "classifier"),
    ("task-predict-on-decoder", task_mismatch("gguf", "predict"), TaskError, "text generator"),
    # outputs and targets
    ("output-under-a-file", output_path("under-a-file"), OutputPathError, "is a file, not a folder"),
    ("output-exists", output_path("exists"), OutputExistsError, "already exists"),
    ("output-empty", output_path("empty"), (OutputPathError, OutputExistsError), "--output"),
    ("export-unknown-target", unknown_target, TargetError, "gguf-q3x"),
]


@pytest.mark.parametrize("name, build, error, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, name, build, error, words):
    call, args = build(world, tmp_path)
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value), str(raised.value)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)     # a clean exit, not a crash
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert message, result.output


def test_the_corpus_is_big_enough():
    kinds = {name.split("-")[0] for name, *_ in CASES}
    assert len(CASES) >= 60 and {"gguf", "onnx", "openvino", "safetensors", "model", "data", "recipe", "gen",
                                 "output"} <= kinds


def test_every_expected_class_prints_as_one_line():
    """Every class the corpus expects is a RootsEdgeError: the CLI prints those as one line."""
    from roots_edge.errors import RootsEdgeError

    for _, _, error, _ in CASES:
        for cls in error if isinstance(error, tuple) else (error,):
            assert issubclass(cls, RootsEdgeError), cls
