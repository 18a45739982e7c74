"""Encoders (BERT classifiers and embedders, Llama classifiers) as OpenVINO IR.

    inputs   input_ids (B, T) i64, attention_mask (B, T) i64, token_type_ids (B, T) i64 (BERT only)
    outputs  logits (B, C) for classifiers, last_hidden_state (B, T, H) for embedders

Batch and sequence are dynamic; pooling for embeddings happens in the runtime (`mean_pool`), exactly
as `LanguageModel.embed` does it in PyTorch.
"""
from __future__ import annotations

from roots_edge.exporters.calibration import encoder_names
from roots_edge.exporters.wrappers import encoder_wrapper


def convert_encoder(model, spec):
    """The `ov.Model` of an encoder with dynamic batch and sequence."""
    import openvino as ov
    import torch

    names = encoder_names(spec)[0]
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)             # (B, T) each
    with torch.no_grad():
        ov_model = ov.convert_model(encoder_wrapper(model, spec), example_input=example,
                                    input=[(ov.PartialShape([-1, -1]), ov.Type.i64)] * len(names))
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({encoder_names(spec)[1][0]})
    return ov_model
