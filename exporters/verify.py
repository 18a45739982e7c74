"""Parity of an artifact against the PyTorch reference, on held-out text.

Decoders: every position of each text is compared: max |logit difference|, mean KL(reference ||
artifact) and top-1 agreement. Classifiers: predicted-label agreement and the largest probability
difference. Embedding encoders: the smallest cosine similarity between pooled embeddings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from roots_edge.core.errors import VerificationError
from roots_edge.core.metrics import LogitDrift, log_softmax

from roots_edge.exporters.base import Bound, Source, Target

MAX_VERIFY_TOKENS = 96  # per text; enough positions to see drift, cheap on every backend


@dataclass
class Parity:
    kind: str                       # "decoder", "classifier" or "embedding"
    n: int                          # positions (decoder) or texts (encoders) compared
    max_logit_diff: float | None = None
    kl: float | None = None
    top1: float | None = None
    agreement: float | None = None
    max_prob_diff: float | None = None
    min_cosine: float | None = None
    perplexity: float | None = None       # decoders: the artifact's on the verification text's next tokens
    perplexity_ref: float | None = None   # and PyTorch's on the same tokens

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def failures(self, bound: Bound) -> list[str]:
        out = []
        if bound.max_logit_diff is not None and self.max_logit_diff is not None \
                and self.max_logit_diff > bound.max_logit_diff:
            out.append(f"max logit difference {self.max_logit_diff:.3g} > {bound.max_logit_diff:g}")
        if bound.kl is not None and self.kl is not None and self.kl > bound.kl:
            out.append(f"mean KL divergence {self.kl:.3g} > {bound.kl:g}")
        if bound.top1 is not None and self.top1 is not None and self.top1 < bound.top1:
            out.append(f"top-1 agreement {self.top1:.4f} < {bound.top1:g}")
        if bound.agreement is not None and self.agreement is not None and self.agreement < bound.agreement:
            out.append(f"prediction agreement {self.agreement:.4f} < {bound.agreement:g}")
        if bound.cosine is not None and self.min_cosine is not None and self.min_cosine < bound.cosine:
            out.append(f"smallest embedding cosine {self.min_cosine:.4f} < {bound.cosine:g}")
        return out


def decoder_parity(source: Source, runtime, texts: list[str]) -> Parity:
    drift = LogitDrift()
    for ids, ref in _decoder_reference(source, texts):                                     # (1, T), (T, V)
        drift.add(ids[0], runtime.logits(ids), ref)
    return Parity("decoder", drift.positions, max_logit_diff=drift.max_diff, kl=drift.kl, top1=drift.top1,
                  perplexity=drift.perplexity, perplexity_ref=drift.perplexity_ref)


def _decoder_reference(source: Source, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, PyTorch logits) per text, computed once per source however many targets it is exported to."""
    import torch

    def run():
        out = []
        for text in texts:
            ids = source.tokenizer(text, truncation=True, return_tensors="np",
                                   max_length=min(MAX_VERIFY_TOKENS, source.spec.context_length))["input_ids"]
            ids = ids.astype(np.int64)                                                       # (1, T)
            with torch.no_grad():
                out.append((ids, source.model(input_ids=torch.from_numpy(ids)).logits[0].float().numpy()))
        return out

    return source.cached(("decoder-reference", tuple(texts)), run)


def _reference_backend(source: Source):
    """The PyTorch model behind the runtime API: references are tokenized as every artifact's backend does."""
    from roots_edge.runtimes.torch import TorchBackend

    return source.cached("torch-backend", lambda: TorchBackend.from_model(source.model, source.tokenizer,
                                                                           source.spec, source.folder))


def classifier_parity(source: Source, runtime, texts: list[str]) -> Parity:
    ref = source.cached(("classifier-reference", tuple(texts)),                              # (N, C)
                        lambda: np.exp(log_softmax(_reference_backend(source).classify_logits(texts))))
    art = np.exp(log_softmax(runtime.classify_logits(texts)))                              # (N, C)
    return Parity("classifier", len(texts), agreement=float((ref.argmax(-1) == art.argmax(-1)).mean()),
                  max_prob_diff=float(np.abs(ref - art).max()))


def embedding_parity(source: Source, runtime, texts: list[str]) -> Parity:
    ref = source.cached(("embedding-reference", tuple(texts)),                              # (N, C), normalised
                        lambda: np.asarray(_reference_backend(source).embed(texts), dtype=np.float64))
    art = np.asarray(runtime.embed(texts), dtype=np.float64)
    art = art / np.linalg.norm(art, axis=-1, keepdims=True)
    return Parity("embedding", len(texts), min_cosine=float((ref * art).sum(-1).min()))


def verify(source: Source, runtime, target: Target, texts: list[str], *, enforce: bool = True) -> dict:
    spec = source.spec
    if spec.task == "causal-lm":
        parity = decoder_parity(source, runtime, texts)
    elif spec.task == "classification":
        parity = classifier_parity(source, runtime, texts)
    else:
        parity = embedding_parity(source, runtime, texts)
    bound = target.bound_for(spec.is_decoder)
    failures = parity.failures(bound)
    result = {"passed": not failures, "metrics": parity.to_dict(),
              "bound": {k: v for k, v in asdict(bound).items() if v is not None}, "texts": len(texts)}
    if failures:
        result["failures"] = failures
        if enforce:
            raise VerificationError(f"{target.name} drifted past its bound: {'; '.join(failures)}. "
                                    "Pass --allow-drift to keep it anyway, or choose a finer precision.")
    return result
