"""The decode loop shared by every backend: prefill, sample, feed back one token, stream text.

A backend only provides `reset()`, `forward(ids) -> logits of the last position (V,)` (appending to its
own KV cache), `tokenize`, `detokenize`, `eos_ids` and `context_length`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from roots_edge.core.errors import BackendError, ContextOverflowError, GenerationError

from roots_edge.runtimes.sampling import GenerationConfig, Sampler


@dataclass
class Outcome:
    """Why a generation stopped and what it cost, named as the OpenAI API names them: `finish_reason` is "stop"
    (an end-of-turn token or a stop string), "length" (max_new_tokens were generated) or "context" (the context
    was full before max_new_tokens; `detail` says how full); the prompt's tokens after any truncation."""

    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_given: int = 0       # before --truncate kept the prompt's tail
    detail: str = ""
    seconds: float = 0.0               # from the call to the last token
    first_token_seconds: float | None = None

    @property
    def tokens_per_second(self) -> float | None:
        decode = self.seconds - (self.first_token_seconds or 0.0)
        return (self.completion_tokens - 1) / decode if self.completion_tokens > 1 and decode > 0 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


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


def generate_ids(backend, ids: list[int], cfg: GenerationConfig, outcome: Outcome | None = None) -> Iterator[int]:
    """Token ids as they are sampled; `outcome`, when given, says afterwards why they stopped and how many."""
    t0, given = time.perf_counter(), len(ids)
    ids, budget = fit_prompt(ids, backend.context_length, cfg, getattr(backend, "max_context", None))
    out = outcome if outcome is not None else Outcome()
    out.prompt_tokens, out.prompt_tokens_given = len(ids), given
    sampler = Sampler(cfg)
    backend.reset()
    logits = backend.forward(np.asarray(ids, dtype=np.int64))
    for step in range(budget):
        token = sampler(finite(logits, backend, "logits"))
        out.seconds = time.perf_counter() - t0
        if out.first_token_seconds is None:
            out.first_token_seconds = out.seconds
        if (token in backend.eos_ids or token in cfg.stop_ids) and not cfg.ignore_eos:
            out.finish_reason = "stop"
            return
        out.completion_tokens += 1
        yield token
        if step + 1 < budget:  # no model call for logits nobody will read
            logits = backend.forward(np.asarray([token], dtype=np.int64))
    if budget < cfg.max_new_tokens:
        out.finish_reason = "context"
        out.detail = (f"the context holds {backend.context_length} tokens: the prompt took {len(ids)}, leaving "
                      f"{budget} of the {cfg.max_new_tokens} asked for")
    else:
        out.finish_reason = "length"


def stream_text(backend, prompt: str | list[int], cfg: GenerationConfig,
                outcome: Outcome | None = None) -> Iterator[str]:
    """Text pieces as they decode (after a prompt text, or prompt ids). Holds back incomplete UTF-8 and
    anything that may begin a stop string. `outcome`, when given, is filled as in `generate_ids`."""
    out: list[int] = []
    emitted = ""
    hold = max((len(s) for s in cfg.stop), default=1) - 1
    ids = backend.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
    for token in generate_ids(backend, ids, cfg, outcome):
        out.append(token)
        text = backend.detokenize(out)
        cut = min((i for i in (text.find(s) for s in cfg.stop) if i >= 0), default=-1)
        if cut >= 0:
            if outcome is not None:
                hit = next(s for s in cfg.stop if text.find(s) == cut)
                outcome.finish_reason, outcome.detail = "stop", f"stop string {hit!r}"
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
