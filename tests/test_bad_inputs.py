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
from roots_edge.formats.manifest import ARTIFACT
from roots_edge.core.errors import (BackendError, CorruptModelError, DataError, GenerationError, ModelNotFoundError,
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
        from roots_edge.data.corpora import finetune_kind, read_corpus, read_labeled

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
        from roots_edge.train.recipe import load_recipe

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
        from roots_edge.core.paths import check_output

        blocker = tmp / "a-file"
        blocker.write_text("x")
        out = {"under-a-file": blocker / "out", "exists": blocker, "empty": ""}[kind]
        return (lambda: check_output(out, False, ARTIFACT)), \
            ["export", str(world["model"]), "-t", "onnx-fp32", "-o", str(out)]
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
    from roots_edge.train.classifier import FinetuneConfig
    from roots_edge.core.config import build

    rows = tmp / "rows.csv"
    rows.write_text("text,label\ngood film,pos\nbad film,neg\n")
    return (lambda: build(FinetuneConfig, {"lr": float("nan")}, "finetune")), \
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
     RuntimeLoadError, "read versions 2 and 3"),
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
    ("finetune-lr-nan", finetune_lr_nan, RecipeError, "lr = nan: expected a positive number"),
    # recipes for train
    ("recipe-lr-negative", recipe(with_train("lr = -0.01")), RecipeError, "lr = -0.01: expected a positive number"),
    ("recipe-lr-a-word", recipe(with_train('lr = "fast"')), RecipeError, "expected a positive number"),
    ("recipe-lr-nan", recipe(with_train("lr = nan")), RecipeError, "expected a positive number"),
    ("recipe-hidden-a-string", recipe(GOOD_RECIPE.replace("hidden_size = 64", 'hidden_size = "256"')), RecipeError,
     "expected a positive integer"),
    ("recipe-checkpoint-every-0", recipe(with_train("checkpoint_every = 0")), RecipeError, "expected a positive integer"),
    ("recipe-steps-negative", recipe(with_train("steps = -5").replace("steps = 10\n", "")), RecipeError,
     "steps = -5"),
    ("recipe-warmup-2", recipe(with_train("warmup = 2.0")), RecipeError, "warmup = 2.0: expected a number in [0, 1)"),
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


def refused(call, args, error, words):
    """The API call raises `error` with `words`; the command exits non-zero with `Error:` lines and no traceback.
    Returns the command's result and its `Error` lines."""
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value), str(raised.value)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)     # a clean exit, not a crash
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert message, result.output
    return result, message


@pytest.mark.parametrize("name, build, error, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, name, build, error, words):
    refused(*build(world, tmp_path), error, words)


def test_the_corpus_is_big_enough():
    kinds = {name.split("-")[0] for name, *_ in CASES}
    assert len(CASES) >= 60 and {"gguf", "onnx", "openvino", "safetensors", "model", "data", "recipe", "gen",
                                 "output"} <= kinds


def test_every_expected_class_prints_as_one_line():
    """Every class the corpus expects is a RootsEdgeError: the CLI prints those as one line."""
    from roots_edge.core.errors import RootsEdgeError

    for _, _, error, _ in CASES:
        for cls in error if isinstance(error, tuple) else (error,):
            assert issubclass(cls, RootsEdgeError), cls


# ------------------------------------------------------------------- --force replaces only what it would write
def user_folder(tmp: Path, world) -> Path:
    """A parent folder as the README uses `-o out/`: one artifact, and a user's own notes beside it."""
    out = tmp / "out"
    shutil.copytree(world["gguf"], out / "gguf-f32")
    (out / "notes.txt").write_text("my notes")
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def force_cases(world, tmp):
    """Every command that takes --force, pointed at a folder holding a user's file: (name, CLI arguments)."""
    recipe_file = tmp / "r.toml"
    recipe_file.write_text(GOOD_RECIPE)
    rows = tmp / "rows.csv"
    rows.write_text("text,label\ngood film,pos\nbad film,neg\n")
    m, out = str(world["model"]), str(tmp / "out")
    return {
        "export": ["export", m, "-t", "onnx-fp32", "-o", out, "--force"],
        "train": ["train", "--recipe", str(recipe_file), "-o", out, "--force", "--quiet"],
        "finetune": ["finetune", m, "--data", str(rows), "-o", out, "--force", "--quiet"],
        "import": ["import", str(gguf_of(world["gguf"])), "-o", out, "--force"],
        "prune": ["prune", m, "--ffn", "0.5", "-o", out, "--force", "--quiet"],
        "distill": ["distill", "--teacher", m, "--student", m, "--data", str(rows), "-o", out, "--force",
                    "--quiet"],
        "compress": ["compress", m, "--recipe", "default-compress", "-o", out, "--force", "--quiet"],
        "bundle": ["bundle", str(world["gguf"]), "--platform", "rpi5", "-o", out, "--force"],
    }


@pytest.mark.parametrize("command", ["export", "train", "finetune", "import", "prune", "distill", "compress",
                                     "bundle"])
def test_force_never_deletes_what_the_command_did_not_write(world, tmp_path, command):
    out = user_folder(tmp_path, world)
    before = snapshot(out)
    result = CliRunner().invoke(main, force_cases(world, tmp_path)[command])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "notes.txt" in result.output and "nothing was changed" in result.output, result.output
    assert "Traceback" not in result.output
    assert snapshot(out) == before                              # every byte still there
    assert not list(tmp_path.glob(".tmp-*"))


def test_force_refuses_an_artifact_holding_a_users_file(world, tmp_path):
    art = Path(shutil.copytree(world["onnx"], tmp_path / "art"))
    (art / "calibration-notes.md").write_text("mine")
    from roots_edge.model import LanguageModel

    lm = LanguageModel.from_pretrained(world["model"])
    with pytest.raises(OutputExistsError, match="calibration-notes.md"):
        lm.export("onnx-fp32", art, force=True)
    assert (art / "calibration-notes.md").read_text() == "mine" and (art / "manifest.json").is_file()


def test_force_replaces_the_targets_own_folders_and_keeps_the_rest(world, tmp_path):
    """Two targets into a parent folder: each target's subfolder is replaced, the user's notes stay."""
    out = user_folder(tmp_path, world)
    old = json.loads((out / "gguf-f32" / "manifest.json").read_text())
    result = CliRunner().invoke(main, ["export", str(world["model"]), "-t", "gguf-f32", "-t", "onnx-fp32", "-o",
                                       str(out), "--force", "--no-verify"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "my notes"
    new = json.loads((out / "gguf-f32" / "manifest.json").read_text())
    assert new["created"] >= old["created"] and new["verification"]["skipped"] == "--no-verify"
    assert json.loads((out / "onnx-fp32" / "manifest.json").read_text())["target"] == "onnx-fp32"
    assert sorted(p.name for p in out.iterdir()) == ["gguf-f32", "notes.txt", "onnx-fp32"]


def test_save_pretrained_replaces_its_own_folder_only(world, tmp_path):
    from roots_edge.model import LanguageModel

    lm = LanguageModel.from_pretrained(world["model"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("a user's model card")
    with pytest.raises(OutputExistsError, match="README.md"):
        lm.save_pretrained(mine)
    assert (mine / "README.md").read_text() == "a user's model card"
    again = lm.save_pretrained(tmp_path / "ours")
    assert lm.save_pretrained(again) == again and (again / "roots_edge.json").is_file()


@pytest.mark.parametrize("where", [".", "..", ""])
def test_output_may_not_be_the_folder_you_are_in(world, tmp_path, monkeypatch, where):
    here = tmp_path / "work" / "inside"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    result = CliRunner().invoke(main, ["export", str(world["model"]), "-t", "onnx-fp32", "-o", where, "--force"])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "current folder" in result.output, result.output            # "" is "." to pathlib
    assert here.is_dir()


def test_strays_name_top_folders_once_and_links_without_following(tmp_path):
    from roots_edge.core.paths import OutputKind, strays_of

    folder = tmp_path / "f"
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "x.bin").write_bytes(b"1")
    (folder / "model.onnx").write_bytes(b"2")
    (folder / "link").symlink_to(tmp_path)
    kind = OutputKind("an onnx folder", lambda f: strays_of(f, {"model.onnx"}.__contains__))
    assert kind.strays(folder) == ["deep/", "link"]
    with pytest.raises(OutputExistsError, match="deep/, link"):
        kind.check(folder)
    kind.check(tmp_path / "absent")                        # nothing there: nothing to refuse


# ----------------------------------------------------------------------------------- Ctrl-C and SIGTERM
def roots_edge_command() -> str:
    import sys

    return str(Path(sys.executable).with_name("roots-edge"))


def interrupt_after(args: list[str], cwd: Path, *, ready: str, signum: int, to_group: bool = True):
    """Start the real console script, wait until its stderr shows `ready`, send `signum` (to its process group,
    as a terminal's Ctrl-C does, or to it alone, as `kill` does): (exit status, seconds to stop, stderr)."""
    import os
    import subprocess
    import time

    proc = subprocess.Popen(args, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    seen = ""
    while ready not in seen:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, f"ended before {ready!r}: {seen}"
        seen += line
    time.sleep(0.5)
    assert proc.poll() is None, "finished before the signal: the test needs a slower command"
    t0 = time.perf_counter()
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    try:
        proc.wait(timeout=20)
    finally:
        proc.kill()
    seen += proc.stderr.read()
    return proc.returncode, time.perf_counter() - t0, seen


@pytest.mark.parametrize("signum, status, to_group", [(2, 130, True), (15, 143, False)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_an_export_at_once_and_leaves_nothing(world, tmp_path, signum, status, to_group):
    args = [roots_edge_command(), "export", str(world["model"]), "-t", "openvino-int4", "-t", "onnx-int4",
            "-o", str(tmp_path / "out")]
    code, seconds, err = interrupt_after(args, tmp_path, ready="exporting", signum=signum, to_group=to_group)
    assert code == status, err
    assert seconds < 5.0, f"took {seconds:.1f} s to stop"          # 1-2 s on a quiet machine
    assert "Traceback" not in err and "interrupted" in err, err
    left = [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    assert left == [] and not list(tmp_path.rglob(".tmp-*")), left


def test_a_command_that_swallows_the_interrupt_is_still_stopped(tmp_path):
    """A library that catches KeyboardInterrupt and carries on (or sits in native code) cannot keep the command
    running: the watcher removes the write in progress and ends the process after the grace period."""
    import signal
    import subprocess
    import sys
    import time

    code = f"""
import sys, time
from pathlib import Path
from roots_edge.cli.interrupt import install
from roots_edge.core.paths import atomic_dir
install()
with atomic_dir(Path({str(tmp_path / 'art')!r})) as tmp:
    (tmp / "model.onnx").write_bytes(b"half")
    while True:
        try:
            print("writing", file=sys.stderr, flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            pass                                  # a library that swallows it
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    seen = ""
    while "writing" not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    seconds = time.perf_counter() - t0
    seen += proc.stderr.read()
    assert proc.returncode == 130 and seconds < 4.0, (proc.returncode, seconds, seen)
    assert "interrupted (SIGINT)" in seen, seen
    assert list(tmp_path.iterdir()) == [], seen                   # no artifact, no .tmp-* folder


def test_a_target_the_model_cannot_take_is_refused_before_the_model_loads(tiny_bert_classifier, monkeypatch):
    """What the config decides (the family, the rows' block fit) is checked before torch loads the weights:
    `export clf -t gguf-q4` took 18.6 s to refuse, now under a second."""
    from roots_edge.model import LanguageModel

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the target was checked")

    monkeypatch.setattr(LanguageModel, "from_pretrained", loaded)
    result = CliRunner().invoke(main, ["export", str(tiny_bert_classifier), "-t", "gguf-q4", "-o", "unused"])
    assert result.exit_code == 1 and "would not contain a single Q4_K matrix" in result.output, result.output
    assert "64, 128" in result.output and "gguf-Q4_0" in result.output


def test_openvino_and_nncf_send_no_telemetry(tmp_path):
    """Both libraries' telemetry consents by default (no consent file). After `decline()` neither would send,
    and nothing is written to the user's home; without it they would (the check can fail)."""
    import subprocess
    import sys

    probe = """
import sys
if sys.argv[1] == "declined":
    from roots_edge.core.telemetry import decline
    decline()
from openvino.tools.ovc import telemetry as ovc
from nncf.telemetry.wrapper import telemetry as nncf
print(ovc.consent, getattr(nncf, "_impl", nncf).consent)
"""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    answers = {mode: subprocess.run([sys.executable, "-c", probe, mode], env=env, capture_output=True, text=True,
                                     timeout=120).stdout.split() for mode in ("declined", "default")}
    assert answers["declined"] == ["False", "False"], answers
    assert answers["default"] == ["True", "True"], answers          # what a plain import does


def test_an_install_without_torch_offers_only_the_verbs_it_can_serve(tmp_path):
    """A deployment bundle (or `pip install roots-edge[gguf]`) has no torch: `generate` there said
    `ModuleNotFoundError: transformers`. The command list shows what runs; the others name the extra."""
    import subprocess
    import sys

    probe = """
import sys
sys.modules["torch"] = sys.modules["transformers"] = None      # as in a runtime-only environment
from roots_edge.cli import main
main(sys.argv[1:])
"""
    def cli(*args):
        return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)

    shown = cli("--help")
    listed = shown.stdout.split("Commands:")[1].split("Not in this installation")[0]
    commands = {line.split()[0] for line in listed.splitlines() if line.startswith("  ") and line[2] != " "}
    assert shown.returncode == 0 and {"run", "chat", "predict", "bench"} <= commands, shown.stdout
    assert not commands & {"generate", "export", "train", "finetune"}, shown.stdout
    assert "install roots-edge[train]" in shown.stdout and "generate" in shown.stdout.split("Not in this")[1]
    refused = cli("generate", "Return the", "-n", "2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().startswith("Error: `roots-edge generate` needs torch, transformers")
    assert "roots-edge[train]" in refused.stderr
