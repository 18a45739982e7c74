"""Precision passes over a float32 ONNX graph, each done by ONNX Runtime's own tooling.

    fp16   `onnxruntime.transformers.float16`: weights and compute in fp16, graph inputs/outputs kept fp32
    int8   `quantize_dynamic` (per-channel QInt8 weights, activations quantized at run time; a tied
           embedding is read from the LM head's int8 weight), or `quantize_static` (QDQ, activation
           ranges calibrated on text) for encoders
    int4   `MatMulNBitsQuantizer` (symmetric blocks, accuracy level 4: int8 activations in the kernel);
           embeddings (`Gather`) in 4 bits too from opset 21 (GatherBlockQuantized needs it), in
           per-tensor uint8 (`quantize_dynamic`) below it

Every pass takes and returns an `onnx.ModelProto`; `save_model` writes the one artifact file.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from roots_edge.runtimes.onnxruntime import DATA_FILE, MODEL_FILE

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf cannot hold a 2 GB message: past this, weights go to DATA_FILE
INT4_GATHER_OPSET = 21               # GatherBlockQuantized (4-bit embeddings) needs opset 21


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


def share_tied_int8(model, copies: dict[str, str]) -> int:
    """After `quantize_dynamic`: look embeddings up in the LM head's per-channel int8 weight instead of
    keeping a second, per-tensor uint8 table. Row r of the embedding is column r of the head, and the
    head's per-column scale is then the row's scale (symmetric QInt8: zero points are 0). Bytes saved."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    saved = 0
    for copy, original in copies.items():
        head_q, head_scale, head_zp = f"{copy}_quantized", f"{copy}_scale", f"{copy}_zero_point"
        emb_q = f"{original}_quantized"
        gathers = [n for n in consumers.get(emb_q, []) if n.op_type == "Gather"]
        if not (head_q in inits and head_scale in inits and len(gathers) == len(consumers.get(emb_q, [])) == 1):
            continue
        if head_zp in inits and numpy_helper.to_array(inits[head_zp]).any():
            continue
        gather = gathers[0]
        deq = consumers.get(gather.output[0], [])
        if len(deq) != 1 or deq[0].op_type != "DequantizeLinear":
            continue
        ids, out, p = gather.input[1], deq[0].output[0], f"tied_{original}"
        axes = numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}_axes")
        model.graph.initializer.append(axes)
        new = [helper.make_node("Transpose", [head_q], [f"{p}_table"], perm=[1, 0], name=f"{p}_transpose"),  # (V, H)
               helper.make_node("Gather", [f"{p}_table", ids], [f"{p}_rows"], axis=0, name=f"{p}_gather"),  # (B, T, H)
               helper.make_node("Cast", [f"{p}_rows"], [f"{p}_float"], to=1, name=f"{p}_cast"),
               helper.make_node("Gather", [head_scale, ids], [f"{p}_scale"], axis=0, name=f"{p}_scale"),   # (B, T)
               helper.make_node("Unsqueeze", [f"{p}_scale", axes.name], [f"{p}_scale3"], name=f"{p}_unsq"),
               helper.make_node("Mul", [f"{p}_float", f"{p}_scale3"], [out], name=f"{p}_mul")]              # (B, T, H)
        at = list(model.graph.node).index(gather)
        for node in (gather, deq[0]):
            model.graph.node.remove(node)
        for i, node in enumerate(new):
            model.graph.node.insert(at + i, node)
        dead = {emb_q, *deq[0].input[1:]}
        saved += sum(numpy_helper.to_array(inits[n]).nbytes for n in dead if n in inits)
        _drop_initializers(model, dead)
    return saved


def _drop_initializers(model, names: set[str]) -> None:
    keep = [t for t in model.graph.initializer if t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def to_fp16(model):
    """fp16 weights and compute; inputs and outputs (ids, mask, KV cache, logits) stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def int8_dynamic(model, op_types: list[str] | None = None) -> tuple[object, dict]:
    """Per-channel QInt8 weights of every MatMul and Gather (or of `op_types`); activations quantized at
    run time. A tied embedding is then read from the LM head's int8 weight (`share_tied_int8`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def run(src, dst, external):
        quantize_dynamic(src, dst, op_types_to_quantize=op_types, per_channel=True, weight_type=QuantType.QInt8,
                         use_external_data_format=external)

    copies = transposed_copies(model)
    model = _via_file(model, run)
    info = {"method": "dynamic", "weights": "QInt8", "per_channel": True, "activations": "dynamic uint8"}
    saved = share_tied_int8(model, copies) if copies else 0
    if saved:
        info["tied_embeddings"] = "read from the LM head's int8 weight"
    return model, info


def int8_static(model, reader, exclude: list[str]) -> tuple[object, dict]:
    """QDQ int8: per-channel QInt8 weights, QInt8 activations with MinMax ranges calibrated on `reader`;
    the nodes named in `exclude` stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ops = ["MatMul", "Gemm", "Gather"]

    def run(src, dst, external):
        pre = src.with_name("pre.onnx")
        # symbolic shape inference fails on these traced graphs; ONNX shape inference suffices
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, save_as_external_data=external)
        quantize_static(pre, dst, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                        use_external_data_format=external,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})

    return _via_file(model, run), {"method": "static-qdq", "weights": "QInt8", "per_channel": True,
                                   "activations": "QInt8 (MinMax)", "calibration_texts": len(reader),
                                   "op_types": ops, "float_nodes": len(exclude)}


def int4_blocks(model, block_size: int, opset: int) -> tuple[object, dict]:
    """MatMulNBits: 4-bit symmetric blocks of `block_size` along each weight's input axis."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    ops = ("MatMul", "Gather") if opset >= INT4_GATHER_OPSET else ("MatMul",)
    quant = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True, accuracy_level=4,
                                 op_types_to_quantize=ops, quant_axes=(("MatMul", 0), ("Gather", 1)))
    quant.process()
    info = {"method": "MatMulNBits", "bits": 4, "block_size": block_size, "symmetric": True, "accuracy_level": 4,
            "op_types": list(ops)}
    model = quant.model.model
    if "Gather" not in ops:
        model, _ = int8_dynamic(model, ["Gather"])
        info["embeddings"] = f"uint8 per tensor (4-bit Gather needs opset >= {INT4_GATHER_OPSET})"
    return model, info
