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

import shutil
from pathlib import Path

from .base import FLOAT32, HALF, INT4, INT8, Exporter, ExportOptions, Source, Target

BOTH = ("llama", "bert")
MODEL_XML = "openvino_model.xml"
COPIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
          "generation_config.json")


class OpenVinoExporter(Exporter, format="openvino"):
    targets = (
        Target.make("openvino", "fp32", BOTH, FLOAT32),
        Target.make("openvino", "fp16", BOTH, HALF),
        Target.make("openvino", "int8", BOTH, INT8),
        Target.make("openvino", "int4", BOTH, INT4),
    )

    def write(self, source: Source, target: Target, out: Path, options: ExportOptions) -> dict:
        import openvino as ov

        from .openvino_compress import weight_element_counts

        spec = source.spec
        ov_model, items = self._convert(source, options)
        ov_model, compression = self._compress(ov_model, target, spec, options, items)
        # fp16 stores every float weight in half; quantized targets keep their few float leftovers
        # (norms, biases, and BERT's un-quantized embeddings under int8 PTQ) in half as well
        to_fp16 = target.precision != "fp32"
        ov.save_model(ov_model, str(out / MODEL_XML), compress_to_fp16=to_fp16)
        compression["float_weights"] = "f16" if to_fp16 else "f32"
        tokenizer_files = write_tokenizers(source.tokenizer, out, detokenizer=spec.is_decoder)
        for name in COPIED:
            if (source.folder / name).is_file():
                shutil.copy2(source.folder / name, out / name)
        saved = ov.Core().read_model(str(out / MODEL_XML))
        return {
            "inputs": {p.get_any_name(): str(p.get_partial_shape()) for p in saved.inputs},
            "outputs": {p.get_any_name(): str(p.get_partial_shape()) for p in saved.outputs},
            "stateful": bool(saved.get_sinks()),
            "compression": compression,
            "weight_elements": weight_element_counts(saved),
            "openvino_tokenizers": tokenizer_files,
            "weight_bytes": (out / "openvino_model.bin").stat().st_size,
        }

    @staticmethod
    def _convert(source: Source, options: ExportOptions):
        """(ov.Model, calibration items in the model's input format)."""
        from .openvino_compress import SUBSET

        spec = source.spec
        if spec.task == "causal-lm":
            from .openvino_decoder import calibration_items, convert_decoder

            return (convert_decoder(source.model, spec),
                    calibration_items(source.tokenizer, options.calibration, SUBSET))
        from .openvino_encoder import calibration_items, convert_encoder

        return (convert_encoder(source.model, spec),
                calibration_items(source.tokenizer, spec, options.calibration, SUBSET))

    @staticmethod
    def _compress(ov_model, target: Target, spec, options: ExportOptions, items: list[dict]):
        from . import openvino_compress as oc

        if target.precision in ("fp32", "fp16"):
            return ov_model, {"method": "none"}
        if target.precision == "int8":
            return oc.compress_int8_weights(ov_model) if spec.is_decoder else oc.quantize_int8(ov_model, items)
        return oc.compress_int4(ov_model, spec, options, items)

    def open(self, out: Path, source: Source, options: ExportOptions):
        from roots_edge.runtimes.openvino import OpenVinoBackend

        return OpenVinoBackend(out, threads=options.threads)

    def versions(self) -> dict:
        import nncf
        import openvino
        import openvino_tokenizers

        out = {"openvino": openvino.__version__, "nncf": nncf.__version__,
               "openvino_tokenizers": openvino_tokenizers.__version__}
        try:
            import openvino_genai

            out["openvino_genai"] = openvino_genai.__version__
        except ImportError:
            pass
        return out


def write_tokenizers(hf_tokenizer, out: Path, *, detokenizer: bool) -> list[str]:
    """openvino_tokenizer.xml (and openvino_detokenizer.xml) converted by openvino-tokenizers."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    converted = convert_tokenizer(hf_tokenizer, with_detokenizer=detokenizer)
    models = converted if detokenizer else (converted,)
    names = ["openvino_tokenizer.xml", "openvino_detokenizer.xml"][:len(models)]
    for model, name in zip(models, names):
        ov.save_model(model, str(out / name))
    return names
