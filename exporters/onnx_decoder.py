"""Llama decoders as ONNX with the KV cache as explicit inputs and outputs, one graph for prefill and decode.

    inputs   input_ids (B, T) i64, attention_mask (B, P+T) i64 (full length), position_ids (B, T) i64,
             past_key_values.{i}.key / .value (B, kv_heads, P, head_dim) f32   (P = 0 for a prefill)
    outputs  logits (B, T, V) f32, present.{i}.key / .value (B, kv_heads, P+T, head_dim) f32

The torch model is traced (see `onnx_trace`) through `onnx_attention.fused_decoder_wrapper`: plain tensors in
and out, each layer's attention one `GroupQueryAttention` node (batches right-padded, as that op takes them).

`genai_config.json` makes the same folder an `onnxruntime_genai.Model`.
"""
from __future__ import annotations

import json
from pathlib import Path

from roots_edge.core.errors import UnsupportedModelError
from roots_edge.formats.onnx import (ATTENTION_MASK, GENAI_CONFIG, INPUT_IDS, LOGITS, MODEL_FILE, PAST_KEY, PAST_VALUE,
                                     POSITION_IDS, PRESENT_KEY, PRESENT_VALUE, decoder_names)

from roots_edge.exporters.onnx_attention import DOMAIN, fused_attention, fused_decoder_wrapper
from roots_edge.exporters.onnx_trace import trace_to_onnx

# Shapes of the example the trace runs on: a non-empty past, so every shape op is traced as dynamic.
EXAMPLE_BATCH, EXAMPLE_PAST, EXAMPLE_NEW = 2, 3, 5


def export_decoder(model, spec, path: Path, opset: int) -> None:
    """Trace a float32 `LlamaForCausalLM` into `path` (a single file: weights inline)."""
    import torch

    if spec.task != "causal-lm":
        raise UnsupportedModelError(f"{spec.architecture} is not a causal LM; ONNX exports Llama decoders "
                                    "(LlamaForCausalLM) and BERT encoders")
    inputs, outputs = decoder_names(spec.num_layers)
    b, p, t = EXAMPLE_BATCH, EXAMPLE_PAST, EXAMPLE_NEW
    example = (torch.randint(0, spec.vocab_size, (b, t)),                                  # input_ids (B, T)
               torch.ones(b, p + t, dtype=torch.long),                                     # attention_mask (B, P+T)
               torch.arange(p, p + t).expand(b, t),                                        # position_ids (B, T)
               *[torch.zeros(b, spec.num_kv_heads, p, spec.head_dim) for _ in range(2 * spec.num_layers)])
    axes = {INPUT_IDS: {0: "batch", 1: "sequence"}, ATTENTION_MASK: {0: "batch", 1: "total_sequence"},
            POSITION_IDS: {0: "batch", 1: "sequence"}, LOGITS: {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch", 2: "past_sequence"} for name in inputs[3:]})
    axes.update({name: {0: "batch", 2: "total_sequence"} for name in outputs[1:]})
    trace_to_onnx(fused_decoder_wrapper(model), model, example, path, inputs, outputs, axes, opset,
                  attention=fused_attention, custom_opsets={DOMAIN: 1})


def genai_config(spec, generation: dict, threads: int | None = None) -> dict:
    """The `genai_config.json` that lets `onnxruntime_genai.Model(folder)` run `model.onnx`."""
    eos = generation.get("eos_token_id", spec.eos_token_id)
    pad = generation.get("pad_token_id", spec.pad_token_id)
    session = {"log_id": "onnxruntime-genai", "provider_options": []}
    if threads:
        session["intra_op_num_threads"] = int(threads)
    return {
        "model": {
            "type": spec.traits.model_type,
            "context_length": spec.context_length,
            "vocab_size": spec.vocab_size,
            "bos_token_id": spec.bos_token_id if spec.bos_token_id is not None else eos,
            "eos_token_id": eos,
            "pad_token_id": pad if pad is not None else eos,
            "decoder": {
                "filename": MODEL_FILE,
                "session_options": session,
                "hidden_size": spec.hidden_size,
                "head_size": spec.head_dim,
                "num_attention_heads": spec.num_heads,
                "num_key_value_heads": spec.num_kv_heads,
                "num_hidden_layers": spec.num_layers,
                "inputs": {"input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, "position_ids": POSITION_IDS,
                           "past_key_names": PAST_KEY, "past_value_names": PAST_VALUE},
                "outputs": {"logits": LOGITS, "present_key_names": PRESENT_KEY, "present_value_names": PRESENT_VALUE},
            },
        },
        "search": {
            "max_length": spec.context_length, "min_length": 0, "do_sample": False, "num_beams": 1,
            "num_return_sequences": 1, "temperature": 1.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0,
            "length_penalty": 1.0, "no_repeat_ngram_size": 0, "diversity_penalty": 0.0, "early_stopping": True,
            # attention is GroupQueryAttention: past and present may share one buffer of the full length
            "past_present_share_buffer": True,
        },
    }


def write_genai_config(spec, source_folder: Path, out: Path, threads: int | None = None) -> dict:
    """Write `genai_config.json`; the manifest's "genai" entry.

    onnxruntime-genai's tokenizer ignores the `TemplateProcessing` post-processor of `tokenizer.json`,
    so `og.Tokenizer(model).encode(text)` lacks the BOS that transformers (and the model's training)
    put first: prepend `prepend_bos_token_id` to its ids, or pass ids from `tokenizers`.
    """
    gen_path = Path(source_folder) / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    (out / GENAI_CONFIG).write_text(json.dumps(genai_config(spec, generation, threads), indent=2))
    return {"config": GENAI_CONFIG, "prepend_bos_token_id": spec.bos_token_id}
