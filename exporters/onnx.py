"""ONNX export (decoders with explicit KV cache; BERT encoders), verified with ONNX Runtime.

An artifact folder holds `model.onnx` (+ `model.onnx_data` past 2 GB), the model's `config.json`,
`generation_config.json`, `tokenizer.json` and `tokenizer_config.json`, and for decoders a
`genai_config.json` so that `onnxruntime_genai.Model(folder)` runs it too. The torch model is traced
once in float32 (`onnx_decoder`, `onnx_encoder`); each precision is a pass over that graph (`onnx_passes`).
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from roots_edge.core.errors import TargetError, VerificationError
from roots_edge.core.spec import DECODER_FAMILIES, ENCODER_FAMILIES

from roots_edge.exporters.base import FLOAT32, HALF, INT4, INT8, ExportOptions, Exporter, Source, Target, copy_support_files
from roots_edge.exporters.quant import SUBCLASSES, QuantConfig, Unsupported

DECODERS, BOTH = DECODER_FAMILIES, DECODER_FAMILIES + ENCODER_FAMILIES
OPSETS = range(14, 24)  # the TorchScript tracer's range from 14 on; 14, 17, 18, 21, 22 and 23 verified here


class OnnxExporter(Exporter, format="onnx"):
    targets = Target.many("onnx", fp32=(BOTH, FLOAT32), fp16=(DECODERS, HALF), int8=(BOTH, INT8), int4=(BOTH, INT4))
    packages = ("torch", "onnx", "onnxruntime", "onnxruntime_genai")
    revision = 5  # 2: onnx-int8 as 8-bit MatMulNBits blocks (decoders) and 7-bit weights (encoders);
    #              3: onnx-int4 keeps head, embeddings, v and down projections in 8 bits; GPTQ by default;
    #              4: decoders' attention is one GroupQueryAttention node per layer; 5: which also applies
    #              the rotary embedding

    def write(self, source: Source, target: Target, out: Path, options: ExportOptions) -> dict:
        import onnx

        from roots_edge.exporters.onnx_passes import save_model

        spec = source.spec
        decoder = spec.task == "causal-lm"
        with tempfile.TemporaryDirectory(prefix="roots-edge-onnx-") as scratch:
            traced = Path(scratch) / "fp32.onnx"
            if decoder:
                from roots_edge.exporters.onnx_decoder import export_decoder

                export_decoder(source.model, spec, traced, options.opset)
            else:
                from roots_edge.exporters.onnx_encoder import export_encoder

                export_encoder(source.model, spec, traced, options.opset)
            model = onnx.load(str(traced))
        model, info = self._precision(model, source, target, options)
        if target.quantized:
            info.update(check_u8s8_peak(model, target, options))
        save_model(model, out)
        copy_support_files(source, out)
        extras = {}
        if decoder:
            from roots_edge.exporters.onnx_decoder import write_genai_config

            extras["genai"] = write_genai_config(spec, source.folder, out, options.threads)
        return {
            "opset": options.opset,
            "exporter": "torch.onnx.export (TorchScript tracer, eager attention)",
            "inputs": graph_io(model.graph.input),
            "outputs": graph_io(model.graph.output),
            "quantization" if target.quantized else "conversion": info,
            **extras,
        }

    def resolve(self, quant: QuantConfig, spec, options: ExportOptions) -> QuantConfig:
        """The target's config with this format's defaults filled in, or a clear refusal."""
        from roots_edge.exporters.onnx_passes import INT4_GATHER_OPSET, INT8_BLOCK

        # HQQ rounds 4-bit MatMul weights (decoders); 8-bit blocks and encoders are round-to-nearest
        decoder, p = spec.task == "causal-lm", quant.precision
        Unsupported.method(quant, "onnx", ("rtn", "minmax") if quant.activations == "int8-static" else
                           ("rtn", "hqq", "gptq") if decoder and p == "int4" else ("rtn", "hqq") if p == "int4"
                           else ("rtn",))
        if quant.method == "gptq" and options.data_free:
            raise TargetError("onnx-int4 --method gptq measures the calibration text; with --no-calibration use "
                              "rtn or hqq")

        if options.opset not in OPSETS:
            raise TargetError(f"ONNX opset {options.opset} is not supported; choose {OPSETS.start}-{OPSETS.stop - 1} "
                              "(21 by default; 21 or more stores onnx-int4 embeddings in 4 bits)")
        if p in ("fp32", "fp16"):
            Unsupported.check(quant, "onnx", {})
            return quant.with_(method="none")
        if not decoder and p == "int8":        # encoders, int8: per-channel weights, int8 activations
            Unsupported.check(quant, "onnx", {})
            Unsupported.group_size(quant, "onnx", "encoders get one scale per output channel")
            static = quant.activations == "int8-static"
            return replace(quant, method="minmax" if static else "rtn", group_size=None,
                           activations="int8-static" if static else "int8-dynamic")
        size = quant.group_size or (INT8_BLOCK if p == "int8" else 64)
        if size < 16 or size & (size - 1):
            raise TargetError(f"onnx-{p} needs a power-of-two group size of at least 16 (MatMulNBits blocks); "
                              f"got {size}. Try 32, 64 or 128.")
        four_bit_gather = options.opset >= INT4_GATHER_OPSET
        matrix = ("int8", "int4", "fp32")
        Unsupported.check(quant, "onnx", {"embeddings": ("int8", "fp32") + (("int4",) if four_bit_gather else ()),
                                          "output": matrix, "attention": matrix, "ffn": matrix,
                                          "attention_v": matrix, "ffn_down": matrix})
        # int4: the token table and the LM head stay in 8-bit blocks (as Q4_K_M keeps them in Q6_K): they carry
        # most of the error, and a tied table is then stored once, read by both (smaller than two 4-bit copies);
        # so do the value and down projections, the 4-bit matrices that move a model's output most (measured on
        # SmolLM2-135M, one kind alone in 4 bits: KL 0.19 for down, 0.11 for v, 0.015-0.03 for q, k, o, gate)
        edge = "int8" if p == "int4" else p
        classes = {"embeddings": edge, "output": edge, "attention": p, "ffn": p, "attention_v": edge, "ffn_down": edge}
        for sub, parent in SUBCLASSES.items():           # a class given on its own covers its subclass too
            if parent in quant.classes and sub not in quant.classes:
                classes[sub] = quant.classes[parent]
        if quant.classes.get("embeddings") == "int4" and not four_bit_gather:
            raise TargetError(f"4-bit embeddings need ONNX opset {INT4_GATHER_OPSET} or later; got {options.opset}")
        # data-aware by default: GPTQ for the 4-bit matrices of decoders (8-bit blocks: round-to-nearest; GPTQ's
        # calibration pass runs a decoder body)
        # encoders at 4 bits: HQQ, data-free (all-MiniLM-L6-v2, all matrices 4-bit: smallest cosine over 16 texts
        # 0.963 against RTN's 0.947; with this mixture 0.975 over 120 texts)
        method = quant.method or ("rtn" if p != "int4" else "hqq" if not decoder else
                                  "rtn" if options.data_free else "gptq")
        return replace(quant, method=method, group_size=size, activations="int8-blocks",
                       classes={**classes, **quant.classes})

    @staticmethod
    def _precision(model, source: Source, target: Target, options: ExportOptions) -> tuple[object, dict | None]:
        from roots_edge.exporters import onnx_passes as passes

        quant = target.quant
        if quant.precision in ("fp32", "fp16"):
            saved = passes.share_transposed(model)
            info = {"shared_transposed_bytes": saved} if saved else None
            if quant.precision == "fp16":
                return passes.to_fp16(model), {"method": "fp16 weights and compute, float32 inputs/outputs",
                                               **(info or {})}
            return model, info
        if quant.activations == "int8-blocks":
            model, info = passes.weight_blocks(model, quant)
            if quant.method == "gptq":          # ONNX Runtime's blocks, then GPTQ's codes written into the 4-bit ones
                from roots_edge.exporters.gptq import apply_gptq

                info["gptq"] = apply_gptq(model, source, options.calibration, quant.group_size, symmetric=False,
                                          max_tokens=options.calibration_tokens)
                info["symmetric"] = False                # zero points per block: GPTQ's 4-bit layers
            return model, info
        if quant.activations == "int8-static":
            from roots_edge.exporters.onnx_encoder import TextCalibration, static_int8_exclusions

            reader = TextCalibration(source.tokenizer, source.spec, options.calibration or source.heldout)
            if not len(reader):
                raise TargetError("static int8 needs calibration text; give --calibration FILE")
            return passes.int8_static(model, reader, static_int8_exclusions(model, source.spec))
        return passes.int8_dynamic(model)


def check_u8s8_peak(model, target: Target, options: ExportOptions) -> dict:
    """Verification ran on this CPU; the artifact runs on others. Refuse int8 weights that x86 CPUs without
    VNNI would add in saturating 16-bit pairs (a wrong result there, whatever this CPU measured); the
    manifest's `u8s8_pair_peak` and `saturation_free` (what `roots_edge.load` reads) come from here."""
    from roots_edge.exporters.onnx_passes import INT16_MAX, u8s8_pair_peak

    peak = u8s8_pair_peak(model)
    safe = peak is None or peak <= INT16_MAX
    if not safe and not options.allow_drift:
        raise VerificationError(
            f"{target.name}: int8 weight pairs reach {peak:,} in the 16-bit sums of x86 int8 kernels without VNNI "
            f"(limit {INT16_MAX:,}); the artifact would be wrong on AVX2-only CPUs. Weights need a 7-bit range "
            "(reduce_range) or 8-bit blocks (MatMulNBits); --allow-drift keeps it anyway.")
    return {"u8s8_pair_peak": peak, "saturation_free": safe}


def graph_io(values) -> list[dict]:
    """[{name, type, shape}] of graph inputs or outputs; dynamic axes by their names."""
    from onnx import TensorProto

    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        out.append({"name": v.name, "type": TensorProto.DataType.Name(t.elem_type).lower(), "shape": shape})
    return out
