"""OpenVINO IR export (stateful KV-cache decoders; BERT encoders), compressed with NNCF.

An artifact folder runs without roots-edge:

    openvino_model.xml/.bin                       the IR (decoders: stateful, inputs input_ids,
                                                  attention_mask, position_ids, beam_idx; output logits)
    openvino_tokenizer.xml/.bin                   the tokenizer as an OpenVINO model (openvino-tokenizers)
    openvino_detokenizer.xml/.bin                 decoders only
    tokenizer.json, tokenizer_config.json, config.json, generation_config.json

so that `openvino_genai.LLMPipeline(folder, "CPU")` generates from a decoder folder directly.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from roots_edge.core.errors import TargetError
from roots_edge.core.spec import DECODER_FAMILIES, ENCODER_FAMILIES
from roots_edge.core.telemetry import decline

from roots_edge.exporters.base import FLOAT32, HALF, INT4, INT8, Exporter, ExportOptions, Source, Target, copy_support_files
from roots_edge.exporters.quant import QuantConfig, Unsupported

BOTH = DECODER_FAMILIES + ENCODER_FAMILIES
MODEL_XML = "openvino_model.xml"
INT4_RATIO = 0.6   # openvino-int4: share of the matrices in 4 bits, the rest int8, chosen by NNCF's sensitivity


class OpenVinoExporter(Exporter, format="openvino"):
    targets = Target.many("openvino", fp32=(BOTH, FLOAT32), fp16=(BOTH, HALF), int8=(BOTH, INT8), int4=(BOTH, INT4))
    packages = ("openvino", "nncf", "openvino_tokenizers", "openvino_genai")
    revision = 2  # 2: int4 keeps the most sensitive 40% of the matrices in int8 (ratio 0.6)

    def write(self, source: Source, target: Target, out: Path, options: ExportOptions) -> dict:
        import openvino as ov

        from roots_edge.exporters.openvino_compress import weight_element_counts

        spec = source.spec
        ov_model, items = self._convert(source, options)
        ov_model, compression = self._compress(ov_model, target, spec, options, items)
        # fp16 stores every float weight in half; quantized targets keep their few float leftovers
        # (norms, biases, and BERT's un-quantized embeddings under int8 PTQ) in half as well
        to_fp16 = target.precision != "fp32"
        ov.save_model(ov_model, str(out / MODEL_XML), compress_to_fp16=to_fp16)
        compression["float_weights"] = "f16" if to_fp16 else "f32"
        tokenizer_files = write_tokenizers(source.tokenizer, out, decoder=spec.is_decoder)
        copy_support_files(source, out)
        saved = ov.Core().read_model(str(out / MODEL_XML))
        return {
            "inputs": {p.get_any_name(): str(p.get_partial_shape()) for p in saved.inputs},
            "outputs": {p.get_any_name(): str(p.get_partial_shape()) for p in saved.outputs},
            "stateful": bool(saved.get_sinks()),
            "compression": compression,
            "weight_elements": weight_element_counts(saved),
            "openvino_tokenizers": tokenizer_files,
        }

    @staticmethod
    def _convert(source: Source, options: ExportOptions):
        """(ov.Model, calibration items in the model's input format)."""
        from roots_edge.exporters import openvino_decoder
        from roots_edge.exporters.calibration import encoder_items
        from roots_edge.exporters.openvino_compress import SUBSET

        texts = options.calibration[:SUBSET]
        if source.spec.task == "causal-lm":
            items = openvino_decoder.calibration_items(source.tokenizer, texts)
        else:
            items = encoder_items(source.tokenizer, source.spec, texts)
        return converted(source), items

    def resolve(self, quant: QuantConfig, spec, options: ExportOptions) -> QuantConfig:
        from roots_edge.exporters.openvino_compress import int4_group_size

        if quant.precision in ("fp32", "fp16", "int8"):
            Unsupported.check(quant, "openvino", {})
            Unsupported.method(quant, "openvino", ("rtn", "minmax"))
            if quant.precision != "int8":
                return quant.with_(method="none")
            Unsupported.group_size(quant, "openvino", "int8 has one scale per output channel")
            if spec.task == "causal-lm":     # weights only, one scale per output channel
                return replace(quant, method="rtn", group_size=None, activations="float")
            return replace(quant, method="minmax", group_size=None, activations="int8-static")
        # NNCF keeps the embeddings and the last layer in its 8-bit backup mode, or puts every layer in
        # 4 bits (all_layers): one switch for both
        Unsupported.check(quant, "openvino", {"embeddings": ("int8", "int4"), "output": ("int8", "int4")})
        edges = {quant.classes.get("embeddings", "int8"), quant.classes.get("output", "int8")}
        if len(edges) > 1:
            raise TargetError("openvino-int4 puts the embeddings and the output layer in the same precision "
                              "(NNCF's all_layers switch): give both int8 or both int4")
        edge = edges.pop()
        group, note = int4_group_size(spec, quant.group_size or 64)
        if note:
            import warnings

            warnings.warn(note, stacklevel=2)
        # NNCF's AWQ patterns are the gated MLPs of decoders: BERT has none, so AWQ defaults off there
        method = quant.method or ("rtn" if options.data_free else
                                  "awq+scale-estimation" if spec.task == "causal-lm" else "scale-estimation")
        if options.data_free and method != "rtn":
            raise TargetError(f"openvino-int4 method {method} measures the calibration text; with --no-calibration "
                              "it rounds by rtn")
        unknown = set(method.split("+")) - {"awq", "scale-estimation", "gptq", "rtn"}
        if unknown:
            raise TargetError(f"openvino-int4 methods are rtn, or awq, scale-estimation and gptq joined by '+' "
                              f"(e.g. awq+scale-estimation); got {method!r}")
        # NNCF keeps the 40% of the matrices it finds most sensitive in int8: on SmolLM2-135M, KL 0.19 at ratio 1.0
        # and 0.072 at 0.6 (6.29 bits/w against Q4_K_M's 6.27); on all-MiniLM-L6-v2, the smallest embedding
        # cosine 0.982 at 0.6 over 120 texts (at 1.0: 0.949 over the test's 16)
        ratio = quant.ratio if quant.ratio is not None else INT4_RATIO
        return replace(quant, method=method, group_size=group, activations="float", ratio=ratio,
                       classes={"embeddings": edge, "output": edge, "attention": "int4", "ffn": "int4"})

    @staticmethod
    def _compress(ov_model, target: Target, spec, options: ExportOptions, items: list[dict]):
        from roots_edge.exporters import openvino_compress as oc

        if target.precision in ("fp32", "fp16"):
            return ov_model, {"method": "none"}
        if target.precision == "int8":
            return oc.compress_int8_weights(ov_model) if spec.task == "causal-lm" else oc.quantize_int8(ov_model, items)
        return oc.compress_int4(ov_model, target.quant, items)


def write_tokenizers(hf_tokenizer, out: Path, *, decoder: bool) -> dict:
    """openvino_tokenizer.xml (and, for decoders, openvino_detokenizer.xml) from openvino-tokenizers.

    Decoders need both for openvino-genai, so a failure there fails the export; an encoder runs from
    tokenizer.json without them, so a tokenizer openvino-tokenizers cannot convert is only recorded.
    """
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    try:
        converted = convert_tokenizer(hf_tokenizer, with_detokenizer=decoder)
    except Exception as exc:  # openvino-tokenizers raises several classes for "cannot convert"
        if decoder:
            raise
        return {"files": [], "skipped": f"{type(exc).__name__}: {exc}"}
    models = converted if decoder else (converted,)
    names = ["openvino_tokenizer.xml", "openvino_detokenizer.xml"][:len(models)]
    for model, name in zip(models, names):
        ov.save_model(model, str(out / name))
    return {"files": names}


def converted(source: Source):
    """A fresh copy of the source's float32 `ov.Model`, converted once per source (NNCF edits the model
    it is given, so every target gets its own clone)."""
    return source.cached("openvino-fp32", lambda: _convert_torch(source)).clone()


def _convert_torch(source: Source):
    import warnings

    import torch

    decline()                 # before OpenVINO's converter is imported: it starts its telemetry at import
    with warnings.catch_warnings():  # the tracer's shape-branch warnings hold for every input we feed
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if source.spec.task == "causal-lm":   # a decoder-based classifier is traced like an encoder
            from roots_edge.exporters.openvino_decoder import convert_decoder

            ov_model = convert_decoder(source.model, source.spec)
        else:
            from roots_edge.exporters.openvino_encoder import convert_encoder

            ov_model = convert_encoder(source.model, source.spec)
    return ov_model
