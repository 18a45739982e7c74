"""Precision passes over a float32 ONNX graph, each done by ONNX Runtime's own tooling.

    fp16   `onnxruntime.transformers.float16`: weights and compute in fp16, graph inputs/outputs kept fp32
    int8   decoders: `MatMulNBitsQuantizer` with 8-bit blocks of 32 (activations quantized per block in
    int4   the kernel), 4-bit blocks of 64 for int4, each tensor class at the bits its `QuantConfig` gives it;
           embeddings as `GatherBlockQuantized` (4 bits needs opset 21; a tied 8-bit one shares the LM head's
           table). Encoders (int8): `quantize_dynamic` (per-channel weights in 7 bits, so no CPU's kernel
           saturates) or `quantize_static` (QDQ s8 x s8, activation ranges calibrated on text)

Every pass takes and returns an `onnx.ModelProto`; `save_model` writes the one artifact file.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from roots_edge.formats.onnx import DATA_FILE, MODEL_FILE

from roots_edge.exporters.quant import QuantConfig, bits_of, tensor_class

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf cannot hold a 2 GB message: past this, weights go to DATA_FILE
INT4_GATHER_OPSET = 21               # GatherBlockQuantized (4-bit embeddings) needs opset 21
# onnx-int8 decoders: 8-bit weight blocks of 32, as llama.cpp's Q8_0. Dynamic QInt8 (u8 activations x s8
# weights through MatMulInteger) was wrong on x86 without VNNI: vpmaddubsw adds each pair of u8 x s8
# products in saturating int16 (2 x 255 x 127 > 32,767), and one per-tensor activation scale let a few
# loud channels flatten every other one (KL 0.65 on a 135M community model even where VNNI is exact).
INT8_BLOCK = 32


def initializer_bytes(model) -> int:
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes if not t.raw_data else len(t.raw_data) for t in model.graph.initializer)


def save_model(model, out: Path) -> list[str]:
    """Write `out/model.onnx` (+ `model.onnx_data` only past 2 GB); the file names written."""
    import onnx

    external = initializer_bytes(model) > EXTERNAL_DATA_BYTES
    onnx.save_model(model, str(out / MODEL_FILE), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)
    return [MODEL_FILE, DATA_FILE] if external else [MODEL_FILE]


def _via_file(model, run) -> object:
    """Run an ORT tool that reads and writes paths: `run(src, dst)` inside a scratch folder."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="roots-edge-onnx-") as scratch:
        src, dst = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        external = initializer_bytes(model) > EXTERNAL_DATA_BYTES
        onnx.save_model(model, str(src), save_as_external_data=external, location="in.onnx.data")
        with _quiet_root_logger():
            run(src, dst, external)
        return onnx.load(str(dst))


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizers log advice ("consider pre-processing") on the root logger at WARNING level."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def transposed_copies(model) -> dict[str, str]:
    """{copy: original} for each 2-D initializer that is the transpose of another: a tied LM head
    that the tracer stored as its own (transposed) copy of the embedding."""
    import numpy as np
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) == 2}
    # a corner of each matrix finds the candidates cheaply; only they are compared in full
    corners: dict[tuple, list[str]] = {}
    for name, a in arrays.items():
        corners.setdefault((a.shape, a.dtype.str, a[:8, :8].tobytes()), []).append(name)
    copies: dict[str, str] = {}
    for name, a in arrays.items():
        if name in copies or name in copies.values():
            continue
        key = (a.shape[::-1], a.dtype.str, np.ascontiguousarray(a[:8, :8].T).tobytes())
        for other in corners.get(key, []):
            if other != name and other not in copies and np.array_equal(arrays[other], a.T):
                copies[other] = name
                break
    return copies


def share_transposed(model) -> int:
    """Replace each transposed copy by a `Transpose` of its original (float targets). Bytes saved."""
    from onnx import helper, numpy_helper

    copies = transposed_copies(model)
    inits = {t.name: t for t in model.graph.initializer}
    saved = sum(numpy_helper.to_array(inits[c]).nbytes for c in copies)
    for copy, original in copies.items():
        model.graph.node.insert(0, helper.make_node("Transpose", [original], [copy], perm=[1, 0],
                                                    name=f"shared_{copy}"))
    _drop_initializers(model, set(copies))
    return saved


def consumers(model) -> dict[str, list]:
    """{tensor name: the nodes that read it}."""
    out: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _block_gather(model, gather, table: str, scales: str, width: int, block: int, prefix: str) -> None:
    """Replace the embedding lookup `gather` by a `GatherBlockQuantized` over an 8-bit block table: `table`
    (V, n_blocks, block) uint8 holding q + 128, `scales` (V, n_blocks) float."""
    import numpy as np
    from onnx import helper, numpy_helper

    ids, out, p = gather.input[1], gather.output[0], prefix
    consts = [numpy_helper.from_array(np.array([2], dtype=np.int64), f"{p}_axes"),
              numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{p}_shape")]
    new = [helper.make_node("Unsqueeze", [scales, f"{p}_axes"], [f"{p}_scales"], name=f"{p}_unsq"),     # (V, nb, 1)
           helper.make_node("GatherBlockQuantized", [table, ids, f"{p}_scales"], [f"{p}_blocks"], name=f"{p}_gbq",
                            domain="com.microsoft", bits=8, block_size=block, gather_axis=0, quantize_axis=2),
           helper.make_node("Reshape", [f"{p}_blocks", f"{p}_shape"], [f"{p}_rows"], name=f"{p}_reshape")]
    if width % block:  # rows padded to whole blocks are cut back to the hidden width
        consts += [numpy_helper.from_array(np.array([0], dtype=np.int64), f"{p}_start"),
                   numpy_helper.from_array(np.array([width], dtype=np.int64), f"{p}_end"),
                   numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}_axis")]
        new.append(helper.make_node("Slice", [f"{p}_rows", f"{p}_start", f"{p}_end", f"{p}_axis"], [out],
                                    name=f"{p}_slice"))                                         # (B, T, H)
    else:
        new[-1].output[0] = out                                                                 # (B, T, H)
    model.graph.initializer.extend(consts)
    at = list(model.graph.node).index(gather)
    model.graph.node.remove(gather)
    for i, node in enumerate(new):
        model.graph.node.insert(at + i, node)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def quantize_blocks_int8(table, block: int):
    """Symmetric 8-bit blocks along each row of a (V, H) float table, in MatMulNBits' layout: ((V, nb, block)
    uint8 holding q + 128, (V, nb) float32 scales). Rows are zero-padded to whole blocks."""
    import numpy as np

    v, h = table.shape
    nb = -(-h // block)
    padded = np.zeros((v, nb * block), dtype=np.float32)
    padded[:, :h] = table
    blocks = padded.reshape(v, nb, block)                                                        # (V, nb, block)
    scales = np.abs(blocks).max(-1) / 127.0                                                      # (V, nb)
    q = np.rint(blocks / np.where(scales == 0, 1, scales)[..., None]).clip(-127, 127)
    return (q + 128).astype(np.uint8), scales.astype(np.float32)


def int8_embeddings(model, copies: dict[str, str], block: int) -> dict:
    """After MatMulNBits: look each embedding up in 8-bit blocks. A tied embedding reads the LM head's own
    8-bit table (row r of the embedding is row r of the head's (N, K) blocks), so it is stored once."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    tied_to = {original: copy for copy, original in copies.items()}
    readers = consumers(model)
    lookups = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits
               and len(inits[n.input[0]].dims) == 2 and inits[n.input[0]].data_type == 1
               and len(readers[n.input[0]]) == 1]                     # a table read elsewhere too stays float
    out = {"tied": 0, "own": 0}
    for i, node in enumerate(lookups):
        name, width = node.input[0], int(inits[node.input[0]].dims[1])
        head = tied_to.get(name)
        table, scales = (f"{head}_Q8", f"{head}_scales") if head else (None, None)
        if head and table in inits and scales in inits:
            out["tied"] += 1
        else:
            q, s = quantize_blocks_int8(numpy_helper.to_array(inits[name]), block)
            table, scales = f"{name}_Q8", f"{name}_scales"
            model.graph.initializer.extend([numpy_helper.from_array(q, table), numpy_helper.from_array(s, scales)])
            out["own"] += 1
        _block_gather(model, node, table, scales, width, block, f"embedding{i}")
        _drop_initializers(model, {name})
    return out


def _drop_initializers(model, names: set[str]) -> None:
    keep = [t for t in model.graph.initializer if t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


INT16_MAX = 32_767
U8_MAX = 255


def u8s8_pair_peak(model) -> int | None:
    """The largest sum an x86 int8 kernel without VNNI forms in 16 bits on this graph: 255 x the largest
    |w[k]| + |w[k+1]| over each int8 weight of an integer MatMul (pairs of consecutive k in a column, as
    vpmaddubsw adds them). Above 32,767 (int16) that kernel saturates. None when no integer MatMul has int8 weights."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 2}
    readers = consumers(model)
    matmuls = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul", "MatMul", "Gemm"}

    def feeds_matmul(name: str) -> bool:
        for node in readers.get(name, []):
            if node.op_type in matmuls or (node.op_type == "DequantizeLinear" and feeds_matmul(node.output[0])):
                return True
        return False

    peak = None
    for name, tensor in inits.items():
        if not feeds_matmul(name):
            continue
        w = np.abs(numpy_helper.to_array(tensor).astype(np.int32))                           # (K, N)
        if w.shape[0] % 2:
            w = np.concatenate([w, np.zeros((1, w.shape[1]), np.int32)])
        pairs = int((w[0::2] + w[1::2]).max()) * U8_MAX                                     # (K/2, N) -> max
        peak = pairs if peak is None else max(peak, pairs)
    return peak


def to_fp16(model):
    """fp16 weights and compute; inputs and outputs (ids, mask, KV cache, logits) stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def weight_blocks(model, quant: QuantConfig) -> tuple[object, dict]:
    """Decoders: each MatMul weight in symmetric blocks of `quant.group_size` (`MatMulNBits`, accuracy level 4:
    the kernel quantizes activations per block of the same size, so one loud channel costs only its block and
    no CPU adds u8 x s8 products in 16 bits, see `INT8_BLOCK`), at the bits its tensor class is given (8 or 4;
    "fp32" keeps it float). Embeddings: 4-bit `GatherBlockQuantized` through ORT's quantizer, or 8-bit blocks
    (a tied embedding then reads the LM head's table when that is 8-bit too)."""
    copies = transposed_copies(model)
    block = quant.group_size
    weights = {t.name for t in model.graph.initializer}
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    by_bits: dict[int, list[str]] = {}
    for name in matmuls:
        bits = bits_of(quant.precision_of(tensor_class(name, fine=True)))
        if bits != 32:
            by_bits.setdefault(bits, []).append(name)
    for bits, names in sorted(by_bits.items()):
        chosen = set(names)
        model = _nbits(model, bits, block, ("MatMul",), exclude=[n for n in matmuls if n not in chosen],
                       method=quant.method if bits == 4 else "rtn")   # 8-bit blocks: round-to-nearest suffices
    embeddings = quant.precision_of("embeddings")
    if embeddings == "int4":
        model = _nbits(model, 4, block, ("Gather",))
    elif embeddings == "int8":
        int8_embeddings(model, copies, block)
    info = {"method": "MatMulNBits", "rounding": quant.method or "rtn", "bits": bits_of(quant.precision),
            "symmetric": quant.method != "hqq", "accuracy_level": 4,
            "block_size": block,
            "activations": f"int8 per block of {block}, in the kernel",
            "matmuls": {f"{bits}-bit": len(names) for bits, names in sorted(by_bits.items(), reverse=True)},
            "embeddings": {"int4": "GatherBlockQuantized, 4 bits", "int8": "GatherBlockQuantized, 8 bits"}.get(
                embeddings, "float")}
    if embeddings == "int8" and quant.precision_of("output") == "int8" and copies:
        info["tied_embeddings"] = "read from the LM head's 8-bit blocks"
    return model, info


def _nbits(model, bits: int, block: int, ops: tuple[str, ...], exclude: list[str] = (), method: str = "rtn"):
    """MatMulNBits over `ops`: round-to-nearest symmetric blocks, or HQQ's half-quadratic fit of scale and
    zero point per block (data-free; MatMul weights only)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, MatMulNBitsQuantizer

    axes = (("MatMul", 0), ("Gather", 1))
    algo = HQQWeightOnlyQuantConfig(block_size=block, bits=bits, op_types_to_quantize=ops, quant_axes=axes) \
        if method == "hqq" else None
    quant = MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=True, accuracy_level=4,
                                 nodes_to_exclude=list(exclude), op_types_to_quantize=ops, quant_axes=axes,
                                 algo_config=algo)
    with _quiet_root_logger():
        quant.process()
    return quant.model.model


def int8_dynamic(model) -> tuple[object, dict]:
    """Encoders: per-channel int8 weights and activations quantized (uint8, per tensor) at run time, the
    weights in 7 bits (`reduce_range`): x86 CPUs without VNNI add pairs of u8 x s8 products in saturating
    16-bit arithmetic (vpmaddubsw), and 2 x 255 x 64 = 32,640 is the largest pair that cannot overflow it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(src, dst, external):
        quantize_dynamic(src, dst, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                         use_external_data_format=external)

    return _via_file(model, run), {"method": "dynamic", "weights": "QInt8, 7-bit range", "per_channel": True,
                                   "reduce_range": True, "activations": "dynamic uint8 per tensor"}


def int8_static(model, reader, exclude: list[str]) -> tuple[object, dict]:
    """QDQ int8: per-channel QInt8 weights in 7 bits (x86 runs QDQ as u8 x s8; see `int8_dynamic`), QInt8
    activations with MinMax ranges calibrated on `reader`; the nodes named in `exclude` stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ops = ["MatMul", "Gemm", "Gather"]

    def run(src, dst, external):
        pre = src.with_name("pre.onnx")
        # symbolic shape inference fails on these traced graphs; ONNX shape inference suffices
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, save_as_external_data=external)
        quantize_static(pre, dst, reader, quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                        use_external_data_format=external,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})

    return _via_file(model, run), {"method": "static-qdq", "weights": "QInt8, 7-bit range", "per_channel": True,
                                   "reduce_range": True,
                                   "activations": "QInt8 (MinMax)", "calibration_texts": len(reader),
                                   "op_types": ops, "float_nodes": len(exclude)}
