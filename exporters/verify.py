"""Parity of an artifact against the PyTorch reference, on held-out text.

Decoders: every position of each text is compared: max |logit difference|, mean KL(reference ||
artifact) and top-1 agreement. Classifiers: predicted-label agreement and the largest probability
difference. Embedding encoders: the smallest cosine similarity between pooled embeddings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from roots_edge.errors import VerificationError

from .base import Bound, Source, Target

MAX_VERIFY_TOKENS = 96  # per text; enough positions to see drift, cheap on every backend


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


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
    accuracy_delta: float | None = None

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
        if bound.accuracy_delta is not None and self.accuracy_delta is not None \
                and self.accuracy_delta > bound.accuracy_delta:
            out.append(f"accuracy drop {self.accuracy_delta:.4f} > {bound.accuracy_delta:g}")
        return out


def decoder_parity(source: Source, runtime, texts: list[str]) -> Parity:
    import torch

    diffs, kls, agree, n = [], [], 0, 0
    for text in texts:
        ids = source.tokenizer(text, truncation=True, max_length=min(MAX_VERIFY_TOKENS, source.spec.context_length),
                               return_tensors="np")["input_ids"].astype(np.int64)         # (1, T)
        with torch.no_grad():
            ref = source.model(input_ids=torch.from_numpy(ids)).logits[0].float().numpy()  # (T, V)
        art = np.asarray(runtime.logits(ids), dtype=np.float32).reshape(ref.shape)           # (T, V)
        diffs.append(float(np.abs(ref - art).max()))
        lp, lq = _log_softmax(ref), _log_softmax(art)
        kls.append((np.exp(lp) * (lp - lq)).sum(-1))
        agree += int((ref.argmax(-1) == art.argmax(-1)).sum())
        n += ref.shape[0]
    return Parity("decoder", n, max_logit_diff=max(diffs), kl=float(np.concatenate(kls).mean()), top1=agree / n)


def classifier_parity(source: Source, runtime, texts: list[str], labels: list[str] | None = None) -> Parity:
    from roots_edge.classify import predict_proba

    ref = predict_proba(source.model, source.tokenizer, texts)                  # (N, C)
    logits = np.asarray(runtime.classify_logits(texts), dtype=np.float64)       # (N, C)
    art = np.exp(_log_softmax(logits))
    agreement = float((ref.argmax(-1) == art.argmax(-1)).mean())
    parity = Parity("classifier", len(texts), agreement=agreement, max_prob_diff=float(np.abs(ref - art).max()))
    if labels is not None:
        names = source.spec.labels
        truth = np.array([names.index(lab) for lab in labels])
        parity.accuracy_delta = float((ref.argmax(-1) == truth).mean() - (art.argmax(-1) == truth).mean())
    return parity


def embedding_parity(source: Source, runtime, texts: list[str]) -> Parity:
    from roots_edge.model import LanguageModel

    ref = LanguageModel(source.model, source.tokenizer, source.spec).embed(texts)   # (N, C), normalised
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
