"""Artifacts several test files read, each exported (and verified) once per session: the exporter tests
check what was written, the runtime tests (tests/runtimes/) run it. Imported by conftest.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SENTIMENT_HELDOUT, SENTIMENT_TRAIN, export_all, source_with_texts
from roots_edge.exporters import load_source

GGUF_TARGETS = ("gguf-f32", "gguf-f16", "gguf-q8", "gguf-q4")
ONNX_TARGETS = {"fp32": 18, "fp16": 18, "int8": 18, "int4": 21}  # precision -> opset (21: 4-bit embeddings)
OV_PRECISIONS = ("fp32", "fp16", "int8", "int4")
PROMPTS = ["Return the number of", "The default value is", "Raise ValueError if the"]
GROUP = 32  # int4 group / block size: divides the tiny Llama's widths (64, 256) and the tiny BERT's (64, 128)


def prompt_ids(source, text: str):
    """(1, T) int64 ids of `text` by the source's tokenizer, BOS first."""
    import numpy as np

    return source.tokenizer(text, return_tensors="np")["input_ids"].astype(np.int64)


def nan_safetensors(path: Path) -> None:
    """Overwrite every weight byte of a safetensors file with float32 NaN; the header (sizes, shapes) stays valid."""
    import struct

    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    span = (len(data) - start) // 4 * 4
    data[start:start + span] = struct.pack("<f", float("nan")) * (span // 4)
    path.write_bytes(bytes(data))


def gguf_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.gguf"))
    assert len(files) == 1, files
    return files[0]


# ------------------------------------------------------------------------------------------- GGUF

@pytest.fixture(scope="session")
def texts_file(small_corpus, tmp_path_factory):
    """Calibration / verification text for every source here: the session's docstring subset, so that
    `load_source` does not gather the standard library's docstrings once per model (seconds each)."""
    path = tmp_path_factory.mktemp("gguf-texts") / "docstrings.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in small_corpus.train[:300] + small_corpus.val))
    return path


@pytest.fixture(scope="session")
def llama_src(tiny_llama256, texts_file):
    return load_source(tiny_llama256, calibration=texts_file)


@pytest.fixture(scope="session")
def llama_exports(llama_src, tmp_path_factory):
    """target -> (artifact folder, manifest), each exported (and verified) once."""
    return export_all(llama_src, GGUF_TARGETS, tmp_path_factory.mktemp("gguf-llama"))


@pytest.fixture(scope="session")
def bert_src(tiny_bert_classifier, texts_file):
    return load_source(tiny_bert_classifier, calibration=texts_file)


@pytest.fixture(scope="session")
def bert_exports(bert_src, tmp_path_factory):
    return export_all(bert_src, ("gguf-f32", "gguf-q8"), tmp_path_factory.mktemp("gguf-bert"))


# ------------------------------------------------------------------------------------------- ONNX
def export_onnx(source, target: str, out: Path, **opts) -> tuple[Path, dict]:
    from roots_edge.exporters import configure, export

    if source.spec.is_decoder and not target.endswith(("fp32", "fp16")):
        opts.setdefault("group_size", GROUP)
    resolved, options = configure(target, spec=source.spec, **opts)
    return out, export(source, resolved, out, options, log=lambda *_: None)


@pytest.fixture(scope="session")
def llama(tiny_llama, small_corpus):
    return source_with_texts(tiny_llama, small_corpus.val[:40])


@pytest.fixture(scope="session")
def llama_onnx(llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-llama")
    return {p: export_onnx(llama, f"onnx-{p}", root / p, opset=opset) for p, opset in ONNX_TARGETS.items()}


@pytest.fixture(scope="session")
def bert(tiny_bert_classifier):
    return source_with_texts(tiny_bert_classifier, [t for t, _ in SENTIMENT_TRAIN + SENTIMENT_HELDOUT])


@pytest.fixture(scope="session")
def bert_onnx(bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-bert")
    return {"fp32": export_onnx(bert, "onnx-fp32", root / "fp32"),
            "int8": export_onnx(bert, "onnx-int8", root / "int8"),
            "static": export_onnx(bert, "onnx-int8", root / "static", static_int8=True)}


# --------------------------------------------------------------------------------------- OpenVINO
def export_openvino_all(source, root: Path, **opts) -> dict[str, tuple[Path, dict]]:
    from roots_edge.exporters import configure, export

    out = {}
    for precision in OV_PRECISIONS:
        path = root / precision
        target, options = configure(f"openvino-{precision}", spec=source.spec,
                                    group_size=GROUP if precision == "int4" else None, **opts)
        manifest = export(source, target, path, options, log=lambda *_: None)
        out[precision] = (path, manifest)
    return out


@pytest.fixture(scope="session")
def llama_ir(llama, tmp_path_factory):
    return export_openvino_all(llama, tmp_path_factory.mktemp("ov-llama"))


@pytest.fixture(scope="session")
def bert_ir(bert, tmp_path_factory):
    return export_openvino_all(bert, tmp_path_factory.mktemp("ov-bert"))

