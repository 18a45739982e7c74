"""Encoders (BERT classifiers and embedders, Llama classifiers) as OpenVINO IR.

    inputs   input_ids (B, T) i64, attention_mask (B, T) i64, token_type_ids (B, T) i64 (BERT only)
    outputs  logits (B, C) for classifiers, last_hidden_state (B, T, H) for embedders

Batch and sequence are dynamic; pooling for embeddings happens in the runtime (`mean_pool`), exactly
as `LanguageModel.embed` does it in PyTorch.
"""
from __future__ import annotations

import numpy as np

from roots_edge.runtimes.base import ENCODER_MAX_TOKENS


def input_names(spec) -> list[str]:
    base = ["input_ids", "attention_mask"]
    return base + ["token_type_ids"] if spec.family == "bert" else base


def output_name(spec) -> str:
    return "logits" if spec.task == "classification" else "last_hidden_state"


def _wrapper(model, spec):
    """A module over plain tensors returning the one output the runtime reads."""
    import torch

    # BertForMaskedLM and friends: the encoder body's last hidden state is the embedding source
    body = model if spec.task == "classification" or not hasattr(model, "bert") else model.bert
    with_types = spec.family == "bert"

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            # a Llama classifier would build an (empty) KV cache that does not convert
            kwargs = {"token_type_ids": token_type_ids} if with_types else {"use_cache": False}
            out = self.body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            return out.logits if spec.task == "classification" else out.last_hidden_state

    return Encoder().eval()


def convert_encoder(model, spec):
    """The `ov.Model` of an encoder with dynamic batch and sequence."""
    import openvino as ov
    import torch

    names = input_names(spec)
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)             # (B, T) each
    with torch.no_grad():
        ov_model = ov.convert_model(_wrapper(model, spec), example_input=example,
                                    input=[(ov.PartialShape([-1, -1]), ov.Type.i64)] * len(names))
    for port, name in zip(ov_model.inputs, names):
        port.get_tensor().set_names({name})
    ov_model.outputs[0].get_tensor().set_names({output_name(spec)})
    return ov_model


def calibration_items(tokenizer, spec, texts: list[str]) -> list[dict]:
    """One text per item, tokenized as the runtime and the PyTorch reference do (truncated, unpadded)."""
    items = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=ENCODER_MAX_TOKENS, return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)                                      # (1, T)
        item = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in input_names(spec):
            item["token_type_ids"] = np.zeros_like(ids)
        items.append(item)
    return items
