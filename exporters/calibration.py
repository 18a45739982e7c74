"""Calibration text as model inputs, one implementation for every format: encoder input/output names,
and texts tokenized exactly as the runtime tokenizes them (truncated, one text per item, no padding, so
no pad token enters an activation range)."""
from __future__ import annotations

import numpy as np

from roots_edge.runtimes.base import ENCODER_MAX_TOKENS
from roots_edge.formats.onnx import ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, LOGITS, TOKEN_TYPE_IDS


def encoder_names(spec) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of an encoder graph or IR, in order."""
    inputs = [INPUT_IDS, ATTENTION_MASK] + ([TOKEN_TYPE_IDS] if spec.family == "bert" else [])
    return inputs, [LOGITS if spec.task == "classification" else LAST_HIDDEN_STATE]


def token_ids(tokenizer, texts: list[str], max_length: int, min_tokens: int = 1) -> list[np.ndarray]:
    """(1, T) int64 ids per non-blank text, truncated to `max_length`; texts shorter than `min_tokens` dropped."""
    out = []
    for text in texts:
        if not text.strip():
            continue
        ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")["input_ids"]
        if ids.shape[1] >= min_tokens:
            out.append(ids.astype(np.int64))                                                  # (1, T)
    return out


def encoder_items(tokenizer, spec, texts: list[str]) -> list[dict]:
    """One feed per text in the encoder's input names (ids, all-ones mask, zero token types)."""
    names = encoder_names(spec)[0]
    items = []
    for ids in token_ids(tokenizer, texts, ENCODER_MAX_TOKENS):
        item = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
        if TOKEN_TYPE_IDS in names:
            item[TOKEN_TYPE_IDS] = np.zeros_like(ids)
        items.append(item)
    return items
