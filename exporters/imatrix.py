"""Importance matrices for llama.cpp's quantizers, computed in PyTorch from calibration text.

What llama.cpp's `imatrix` tool measures, without running llama.cpp: for every matrix that multiplies
activations, the mean over calibration tokens of the squared activation entering each input channel
(`in_sum2 / count` of its GGUF imatrix). A quantizer that is handed this vector weights each column's rounding
error by it, so the columns that carry large activations keep their precision. Keys are the GGUF tensor names
the weights are written under; a tied LM head is `token_embd.weight`, as in llama.cpp's own graph.

Texts are joined (EOS between them) and cut into chunks of `CHUNK` tokens, as the imatrix tool does, so every
position of the context sees real text. A calibration set needs at least `MIN_TOKENS` tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roots_edge.core.errors import DataError

CHUNK = 512          # tokens per forward pass (llama.cpp's imatrix default context)
# Default token budget (`--calibration-tokens`): 8k. On SmolLM2-135M, Q4_K_M with 2k / 4k / 8k / 19k calibration
# tokens gave KL 0.0377 / 0.0384 / 0.0377 / 0.0378 against PyTorch (the same within noise); GPTQ (onnx-int4) gains
# from more (8k: 0.0736 in 48 s; 19k: 0.0684 in 87 s). A chunk costs ~1.1-1.8 s on 2 cores.
MAX_TOKENS = 16 * CHUNK
MIN_TOKENS = 256     # below this a channel's mean square rests on too few tokens to rank channels


@dataclass
class Importance:
    """{GGUF tensor name: (n_per_row,) float32 mean squared input activation} and what it was measured on."""

    values: dict[str, np.ndarray]
    texts: int
    tokens: int

    def describe(self) -> dict:
        return {"texts": self.texts, "tokens": self.tokens, "tensors": len(self.values), "chunk": CHUNK}


def calibration_chunks(tokenizer, spec, texts: list[str], max_tokens: int = MAX_TOKENS) -> tuple[list[list[int]], int]:
    """The calibration texts as token chunks of at most `CHUNK` (the model's context if shorter), up to about
    `max_tokens` in all; (chunks, texts used). Refuses too little text and ids outside the model's vocabulary."""
    size = min(CHUNK, spec.context_length or CHUNK)
    max_chunks = max(1, -(-max_tokens // size))
    sep = [spec.eos_token_id] if spec.eos_token_id is not None else []
    stream: list[int] = []
    used = 0
    for text in texts:
        if not text.strip():
            continue
        stream += tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] + sep   # chunked below
        used += 1
        if len(stream) >= size * max_chunks:
            break
    if len(stream) < MIN_TOKENS:
        raise DataError(f"the calibration text is {len(stream)} tokens long; data-aware rounding needs at least "
                        f"{MIN_TOKENS} (a few paragraphs; it reads up to {size * max_chunks:,}). Give a longer "
                        "--calibration FILE, or --no-calibration for data-free rounding.")
    top = max(stream)
    if top >= spec.vocab_size:
        raise DataError(f"the calibration text tokenizes to id {top}, past the model's vocabulary of "
                        f"{spec.vocab_size}: the tokenizer does not belong to this model")
    chunks = [stream[i:i + size] for i in range(0, min(len(stream), size * max_chunks), size)]
    return [c for c in chunks if len(c) >= min(size, MIN_TOKENS // 2)] or chunks[:1], used


def input_statistics(source, texts: list[str], modules: dict[str, object], reduce,
                     max_tokens: int = MAX_TOKENS) -> tuple[dict, int, int]:
    """Run `source.model` over the calibration chunks with a tap on each of `modules` ({key: nn.Linear}; one
    key may name several modules that read the same tensor, which is then counted once per forward) and
    average `reduce(x)` over the (tokens, in) activations entering it. Returns ({key: mean}, texts, tokens)."""
    import torch

    from roots_edge.data.activations import Activations

    chunks, used = calibration_chunks(source.tokenizer, source.spec, texts, max_tokens)
    # the LM head's input is the body's last hidden state: run the body alone and hand that over, rather
    # than multiply it by a vocabulary of up to 262k rows for logits nobody reads
    head = source.model.get_output_embeddings()
    groups = {key: group if isinstance(group, list) else [group] for key, group in modules.items()}
    head_keys = [key for key, group in groups.items() if head in group]
    body = source.model.get_decoder()

    def forward(chunk):
        hidden = body(input_ids=torch.tensor([chunk]), use_cache=False).last_hidden_state
        for key in head_keys:
            acts.add(key, hidden)

    with Activations(reduce) as acts:
        for key, group in groups.items():
            acts.inputs(key, *(m for m in group if m is not head))
        acts.run(forward, chunks)      # a 135M model takes about a minute here
    return {key: acts.mean(key) for key in acts.sums}, used, sum(len(c) for c in chunks)


def importance_matrix(source, texts: list[str], tensor_name, max_tokens: int = MAX_TOKENS) -> Importance:
    """Per linear layer, the mean squared input activation per channel over the calibration chunks.
    `tensor_name(hf_weight_name)` gives the GGUF name (the exporter's mapper)."""
    import torch

    model, spec = source.model, source.spec
    head = model.get_output_embeddings()
    modules = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if module is head:
                name = "token_embd.weight" if spec.tie_embeddings else "output.weight"
            else:
                name = tensor_name(f"{module_name}.weight")
            modules[name] = module
    means, used, tokens = input_statistics(source, texts, modules, lambda x: (x * x).sum(0), max_tokens)
    return Importance({name: v.float().numpy() for name, v in means.items()}, used, tokens)
