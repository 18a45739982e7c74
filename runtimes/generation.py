"""The decode loop shared by every backend: prefill, sample, feed back one token, stream text.

A backend only provides `reset()`, `forward(ids) -> logits of the last position (V,)` (appending to its
own KV cache), `tokenize`, `detokenize`, `eos_ids` and `context_length`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from roots_edge.core.errors import BackendError, ContextOverflowError, GenerationError

from roots_edge.runtimes.sampling import GenerationConfig, Sampler


def fit_prompt(ids: list[int], context_length: int, cfg: GenerationConfig,
               max_context: int | None = None) -> tuple[list[int], int]:
    """(prompt ids, how many new tokens fit) — fails clearly or keeps the prompt's tail when asked."""
    if not ids:
        raise GenerationError("the prompt encodes to no tokens; give at least one character the tokenizer keeps")
    if len(ids) >= context_length:
        if not cfg.truncate:
            larger = (f", or open the model with a larger context (load(..., context=N), CLI: --context N; this "
                      f"model allows up to {max_context:,})") if max_context and max_context > context_length else ""
            raise ContextOverflowError(
                f"the prompt has {len(ids)} tokens; the context holds {context_length}. Shorten it, pass "
                f"truncate=True (CLI: --truncate) to keep its last tokens{larger}.")
        keep = max(1, context_length - max(1, cfg.max_new_tokens))
        ids = ids[:1] + ids[-(keep - 1):] if keep > 1 else ids[-1:]
    return ids, min(cfg.max_new_tokens, context_length - len(ids))


def finite(values: np.ndarray, backend, what: str) -> np.ndarray:
    """`values`, or a clear error when a model produced NaN or infinity (corrupt weights, an overflowing kernel)
    instead of letting them pass as an answer. Logits may hold -inf (a masked token) but not NaN, +inf or only
    -inf: one max() says so (NaN propagates through it), without a temporary the size of the vocabulary."""
    bad = not np.isfinite(values.max()) if what == "logits" else not np.isfinite(values).all()
    if bad:
        where = getattr(backend, "folder", None) or getattr(backend, "path", None) or "the model"
        raise BackendError(f"{where} produced non-finite {what} (NaN or infinity): its weights are corrupt or a "
                           f"kernel overflowed, so no answer it gives can be trusted. Export the artifact again; "
                           f"if it recurs, try another precision (e.g. fp16 or int8 instead of int4)")
    return values


def generate_ids(backend, ids: list[int], cfg: GenerationConfig) -> Iterator[int]:
    ids, budget = fit_prompt(ids, backend.context_length, cfg, getattr(backend, "max_context", None))
    sampler = Sampler(cfg)
    backend.reset()
    logits = backend.forward(np.asarray(ids, dtype=np.int64))
    for step in range(budget):
        token = sampler(finite(logits, backend, "logits"))
        if (token in backend.eos_ids or token in cfg.stop_ids) and not cfg.ignore_eos:
            return
        yield token
        if step + 1 < budget:  # no model call for logits nobody will read
            logits = backend.forward(np.asarray([token], dtype=np.int64))


def stream_text(backend, prompt: str | list[int], cfg: GenerationConfig) -> Iterator[str]:
    """Text pieces as they decode (after a prompt text, or prompt ids). Holds back incomplete UTF-8 and
    anything that may begin a stop string."""
    out: list[int] = []
    emitted = ""
    hold = max((len(s) for s in cfg.stop), default=1) - 1
    ids = backend.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
    for token in generate_ids(backend, ids, cfg):
        out.append(token)
        text = backend.detokenize(out)
        cut = min((i for i in (text.find(s) for s in cfg.stop) if i >= 0), default=-1)
        if cut >= 0:
            if cut > len(emitted):
                yield text[len(emitted):cut]
            return
        if text.endswith("\ufffd"):
            continue  # a multi-byte character is not complete yet
        safe = len(text) - hold
        if safe > len(emitted):
            yield text[len(emitted):safe]
            emitted = text[:safe]
    text = backend.detokenize(out) if out else ""
    if len(text) > len(emitted):
        yield text[len(emitted):]
