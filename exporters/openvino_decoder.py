"""Llama decoders as stateful OpenVINO IR: the KV cache lives in the model's variables.

This is the form OpenVINO's own LLM tooling produces and `openvino_genai.LLMPipeline` runs:

    inputs   input_ids (B, T) i64, attention_mask (B, P+T) i64, position_ids (B, T) i64, beam_idx (B,) i32
    outputs  logits (B, T, V) f32
    state    one ReadValue/Assign pair per past key and value, (B, kv_heads, P, head_dim)

The torch wrapper is converted straight to OpenVINO with its cache layers pre-filled (an empty
transformers-5 cache would trace a `cat` with a rank-1 empty tensor that OpenVINO cannot convert),
which keeps attention as one fused `ScaledDotProductAttention` op. Then a `beam_idx` Gather goes in
front of every past input, the past/present pairs become variables, and each variable starts as zeros
of shape (batch, kv_heads, 0, head_dim).
"""
from __future__ import annotations

import numpy as np

from roots_edge.exporters.wrappers import decoder_wrapper

INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")  # names fixed by openvino-genai
LOGITS = "logits"
CALIBRATION_TOKENS = 128  # tokens per calibration text: enough activations for AWQ / scale estimation


def past_names(num_layers: int) -> list[tuple[str, str]]:
    """(past input, present output) names per cached tensor, in wrapper order."""
    return [(f"past_key_values.{i}.{kind}", f"present.{i}.{kind}") for i in range(num_layers) for kind in ("key", "value")]


def convert_decoder(model, spec):
    """The stateful `ov.Model` of a `LlamaForCausalLM` (float32 weights)."""
    import openvino as ov
    import torch

    wrapper = decoder_wrapper(model)
    kv, hd, past_len, new = spec.num_kv_heads, spec.head_dim, 2, 3
    example = (torch.ones(1, new, dtype=torch.long),                    # input_ids (1, T)
               torch.ones(1, past_len + new, dtype=torch.long),         # attention_mask (1, P+T)
               torch.arange(past_len, past_len + new)[None],            # position_ids (1, T)
               *[torch.zeros(1, kv, past_len, hd) for _ in range(2 * spec.num_layers)])  # (1, kv, P, hd)
    shapes = [ov.PartialShape([-1, -1])] * 3 + [ov.PartialShape([-1, kv, -1, hd])] * (2 * spec.num_layers)
    types = [ov.Type.i64] * 3 + [ov.Type.f32] * (2 * spec.num_layers)
    with torch.no_grad():
        ov_model = ov.convert_model(wrapper, example_input=example, input=list(zip(shapes, types)))
    pairs = past_names(spec.num_layers)
    for port, name in zip(ov_model.inputs, [*INPUTS[:3], *(p for p, _ in pairs)]):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, [LOGITS, *(r for _, r in pairs)]):
        port.get_tensor().set_names({name})
    _add_beam_idx(ov_model, [p for p, _ in pairs])
    from openvino._offline_transformations import apply_make_stateful_transformation

    apply_make_stateful_transformation(ov_model, dict(pairs))
    _zero_initial_state(ov_model, kv, hd)
    return ov_model


def _add_beam_idx(ov_model, past_inputs: list[str]) -> None:
    """Insert `beam_idx` (B,) i32 and reorder every past tensor by it along the batch axis."""
    import openvino as ov
    import openvino.opset13 as ops

    batch = ov_model.input("input_ids").get_partial_shape()[0]
    beam_idx = ops.parameter(ov.PartialShape([batch]), ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    ov_model.add_parameters([beam_idx])
    for name in past_inputs:
        port = ov_model.input(name)
        consumers = list(port.get_target_inputs())
        gathered = ops.gather(port, beam_idx, ops.constant(0, ov.Type.i64))  # (B, kv, P, hd)
        for consumer in consumers:
            consumer.replace_source_output(gathered.output(0))
    ov_model.validate_nodes_and_infer_types()


def _zero_initial_state(ov_model, kv_heads: int, head_dim: int) -> None:
    """Each variable starts as zeros (batch, kv_heads, 0, head_dim), the batch read from input_ids."""
    import openvino as ov
    import openvino.opset13 as ops

    shape_of = ops.shape_of(ov_model.input("input_ids"), output_type="i64")
    batch = ops.gather(shape_of, ops.constant([0], ov.Type.i64), ops.constant(0, ov.Type.i64))  # (1,)
    rest = ops.constant(np.array([kv_heads, 0, head_dim], dtype=np.int64))
    shape = ops.concat([batch, rest], axis=0)                                                   # (4,)
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            zeros = ops.broadcast(ops.constant(0.0, op.get_output_element_type(0)), shape)
            op.set_arguments([zeros])
    ov_model.validate_nodes_and_infer_types()


def calibration_items(tokenizer, texts: list[str]) -> list[dict]:
    """One full prefill per text, in the IR's own input format (NNCF resets the state per item)."""
    from roots_edge.exporters.calibration import token_ids

    return [{"input_ids": ids, "attention_mask": np.ones_like(ids),
             "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None], "beam_idx": np.zeros(1, dtype=np.int32)}
            for ids in token_ids(tokenizer, texts, CALIBRATION_TOKENS, min_tokens=2)]
