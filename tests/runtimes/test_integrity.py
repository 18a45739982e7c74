"""Integrity at load (issue 14): a file the manifest lists must be the file that was exported, byte for byte,
and a model that still produces NaN or infinity says so instead of answering."""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from artifacts import nan_safetensors
from click.testing import CliRunner

from roots_edge.cli import main
from roots_edge.core.errors import BackendError, CorruptModelError, RuntimeLoadError, TaskError
from roots_edge.runtimes import base, load

NAN32 = struct.pack("<f", float("nan"))


@pytest.fixture(scope="module")
def exported(llama_exports, llama_onnx, llama_ir, bert_onnx):
    """The session's f32 artifacts of the tiny Llama (each test copies one before damaging it) and a classifier."""
    return {"gguf-f32": llama_exports["gguf-f32"][0], "onnx-fp32": llama_onnx["fp32"][0],
            "openvino-fp32": llama_ir["fp32"][0], "clf": bert_onnx["fp32"][0]}


@pytest.fixture(autouse=True)
def private_stamps(tmp_path, monkeypatch):
    """Each test starts with no verified stamps (they live in the cache folder)."""
    monkeypatch.setenv("ROOTS_EDGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(base.VERIFY_ENV, raising=False)


def _copy(exported, name, tmp_path) -> Path:
    return Path(shutil.copytree(exported[name], tmp_path / name))


def _largest(folder: Path) -> Path:
    return max((f for f in folder.iterdir() if f.is_file()), key=lambda f: f.stat().st_size)


def _overwrite_middle(path: Path, pattern: bytes = NAN32) -> None:
    """Overwrite the middle half of `path` in place with `pattern` (4-byte aligned): same size, same inode."""
    size = path.stat().st_size
    start = (size // 4) & ~3
    with path.open("r+b") as f:
        f.seek(start)
        f.write(pattern * ((size // 2) // len(pattern)))


@pytest.mark.parametrize("target", ["gguf-f32", "onnx-fp32", "openvino-fp32"])
def test_weights_overwritten_in_place_are_refused(exported, target, tmp_path):
    folder = _copy(exported, target, tmp_path)
    assert load(folder).generate("Return the", 2) is not None          # loads and stamps the good files
    weights = _largest(folder)
    before = weights.stat().st_size
    _overwrite_middle(weights)
    assert weights.stat().st_size == before
    with pytest.raises(RuntimeLoadError, match="sha256 differs") as err:
        load(folder)
    assert weights.name in str(err.value)
    r = CliRunner().invoke(main, ["run", str(folder), "-p", "Return the", "-n", "4"])
    assert r.exit_code == 1 and "sha256 differs" in r.output and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0


def test_a_verified_file_is_hashed_again_only_when_it_changes(exported, tmp_path, monkeypatch):
    folder = _copy(exported, "onnx-fp32", tmp_path)
    listed = len(json.loads((folder / "manifest.json").read_text())["files"])
    hashed = []
    real = base.sha256_file
    monkeypatch.setattr(base, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    load(folder)
    assert len(hashed) == listed > 1
    hashed.clear()
    load(folder)
    assert hashed == []                                              # stamps: nothing changed
    weights = folder / "model.onnx"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    load(folder)
    assert hashed == ["model.onnx"]
    hashed.clear()
    monkeypatch.setenv(base.VERIFY_ENV, "always")
    load(folder)
    assert len(hashed) == listed
    hashed.clear()
    monkeypatch.setenv(base.VERIFY_ENV, "off")
    load(folder)
    assert hashed == []
    monkeypatch.setenv(base.VERIFY_ENV, "sometimes")
    with pytest.raises(RuntimeLoadError, match="expected one of changed, always, off"):
        load(folder)


def test_a_file_missing_from_the_artifact_is_named(exported, tmp_path):
    folder = _copy(exported, "openvino-fp32", tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(RuntimeLoadError, match=r"tokenizer.json is missing; .*manifest.json lists it"):
        load(folder)


def test_nan_weights_are_an_error_not_an_answer(exported, tmp_path, monkeypatch):
    """With the hash check off (or a file corrupted after loading), NaN logits still never become text."""
    monkeypatch.setenv(base.VERIFY_ENV, "off")
    folder = _copy(exported, "gguf-f32", tmp_path)
    _overwrite_middle(_largest(folder))
    model = load(folder)
    with pytest.raises(BackendError, match="non-finite logits"):
        model.generate("Return the", 4)
    r = CliRunner().invoke(main, ["run", str(folder), "-p", "Return the", "-n", "4"])
    assert r.exit_code == 1 and "non-finite logits" in r.output and "Traceback" not in r.output


def test_nan_classifier_weights_are_an_error(exported, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    monkeypatch.setenv(base.VERIFY_ENV, "off")
    folder = _copy(exported, "clf", tmp_path)
    proto = onnx.load(str(folder / "model.onnx"))
    weights = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights.CopyFrom(numpy_helper.from_array(np.full(tuple(weights.dims), np.nan, np.float32), weights.name))
    onnx.save(proto, str(folder / "model.onnx"))
    model = load(folder)
    with pytest.raises(BackendError, match="non-finite class scores"):
        model.classify("a fine day")
    with pytest.raises(TaskError, match="cannot embed text"):       # logits only: no embeddings to check
        model.embed("a fine day")


def test_nan_embeddings_are_an_error(tiny_bert_classifier, tmp_path):
    """A Hugging Face folder whose safetensors data became NaN (the header intact: it passes every size check)."""
    folder = Path(shutil.copytree(tiny_bert_classifier, tmp_path / "bert"))
    nan_safetensors(folder / "model.safetensors")
    with pytest.raises(BackendError, match="non-finite embeddings"):
        load(folder).embed("a fine day")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_a_corrupt_manifest_is_named_in_one_line(exported, tmp_path, text):
    folder = _copy(exported, "onnx-fp32", tmp_path)
    (folder / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(CorruptModelError, match="manifest.json is not a readable manifest"):
        load(folder)
    r = CliRunner().invoke(main, ["run", str(folder), "-p", "Return the", "-n", "4"])
    assert r.exit_code == 1 and "manifest.json" in r.output and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0
