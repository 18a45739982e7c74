"""One sampler for every backend: a seed gives the same sample wherever the logits agree."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from roots_edge.core.errors import GenerationError
from roots_edge.core.text import check_unicode


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0      # 0: greedy
    top_k: int = 0                # 0: off
    top_p: float = 1.0            # 1.0: off
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)  # stop strings (not included in the output)
    truncate: bool = False        # a prompt longer than the context: keep its last tokens instead of failing
    ignore_eos: bool = False      # benchmarks: always produce max_new_tokens
    stop_ids: frozenset[int] = frozenset()   # ids that end the reply besides EOS (a chat's end-of-turn tokens)

    def __post_init__(self):
        if self.max_new_tokens < 0:
            raise GenerationError(f"max_new_tokens must be >= 0; got {self.max_new_tokens}")
        if not self.temperature >= 0 or self.temperature == float("inf") or not 0 < self.top_p <= 1 \
                or self.top_k < 0:                    # `not x >= 0`: NaN fails too (it would act as greedy)
            raise GenerationError(f"a finite temperature >= 0, 0 < top_p <= 1 and top_k >= 0 are required; got "
                                  f"temperature {self.temperature}, top_p {self.top_p}, top_k {self.top_k}")
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise GenerationError(f"stop strings must be non-empty text (an empty one would end every reply at "
                                  f"once); got {list(self.stop)}")
        for i, s in enumerate(self.stop):     # one that is not Unicode could never match: say so, as for prompts
            check_unicode(s, f"stop string {i + 1}")


class Sampler:
    """Greedy at temperature 0; else temperature, then top-k, then top-p, then one uniform draw."""

    def __init__(self, cfg: GenerationConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)

    def __call__(self, logits: np.ndarray) -> int:
        if self.cfg.temperature <= 0:
            return int(np.argmax(logits))                                   # no copy on the hot path
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)           # (V,)
        order = np.argsort(-logits, kind="stable")                          # (V,) best first
        scaled = logits[order] / self.cfg.temperature
        if self.cfg.top_k:
            scaled = scaled[: self.cfg.top_k]
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.cfg.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), self.cfg.top_p) + 1)
            probs = probs[:keep] / probs[:keep].sum()
        u = self.rng.random()
        index = min(int(np.searchsorted(np.cumsum(probs), u, side="right")), len(probs) - 1)
        return int(order[index])
