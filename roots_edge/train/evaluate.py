"""Evaluation: perplexity for language models (PyTorch); classifiers' scores are `metrics.classification_report`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PerplexityReport:
    perplexity: float
    nll: float
    tokens: int
    unigram_perplexity: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"perplexity": self.perplexity, "nll": self.nll, "tokens": self.tokens,
                "unigram_perplexity": self.unigram_perplexity}


def perplexity(model, tokenizer, texts: list[str], seq_len: int, max_tokens: int = 1 << 17) -> PerplexityReport:
    """Perplexity of a causal LM over `texts` encoded as one `<s> doc </s>` stream."""
    from roots_edge.train.lm import stream_nll

    eos = tokenizer.eos_token_id
    ids = [t for text in texts for t in (*tokenizer(text)["input_ids"], eos)]
    stream = np.asarray(ids, dtype=np.int64)
    nll, targets = stream_nll(model, stream, min(seq_len, max(1, len(stream) - 1)), max_tokens)
    return PerplexityReport(perplexity=math.exp(nll), nll=nll, tokens=int(len(targets)))
