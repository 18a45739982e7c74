"""The torch modules the formats trace: a decoder over an explicit KV cache (OpenVINO, which turns its cache
inputs into state, `openvino_decoder.make_stateful`; ONNX traces `onnx_attention.fused_decoder_wrapper`) and an
encoder over plain tensors (both)."""
from __future__ import annotations


def decoder_wrapper(model):
    """(ids, mask, positions, *past) -> (logits, *present): past and present as (B, kv, P, hd) tensors,
    key then value per layer. Every layer keeps its full past, sliding-window layers included: the model's
    own mask limits what they attend to, and one cache shape serves every layer and every runtime."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    n_layers = model.config.num_hidden_layers

    class ExplicitCacheDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache()
            cache.layers = [DynamicLayer() for _ in range(n_layers)]
            for i, layer in enumerate(cache.layers):  # pre-filled layers: no concat with an empty tensor
                layer.keys, layer.values = past[2 * i], past[2 * i + 1]                  # (B, kv, P, hd)
                layer.dtype, layer.device = past[0].dtype, past[0].device
                layer.is_initialized = True
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=cache, use_cache=True)
            present = [t for layer in cache.layers for t in (layer.keys, layer.values)]  # (B, kv, P+T, hd)
            return (out.logits, *present)                                                 # (B, T, V)

    return ExplicitCacheDecoder().eval()


def encoder_wrapper(model, spec):
    """(ids, mask[, token types]) -> logits (classifiers) or the last hidden state (embedders)."""
    import torch

    classifier = spec.task == "classification"
    body = model if classifier else model.base_model   # BertForMaskedLM and friends embed with their body
    with_types = spec.family == "bert"

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            # a Llama classifier would build an (empty) KV cache that does not convert
            kwargs = {"token_type_ids": token_type_ids} if with_types else {"use_cache": False}
            out = self.body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            return out.logits if classifier else out.last_hidden_state                 # (B, C) | (B, T, H)

    return Encoder().eval()
