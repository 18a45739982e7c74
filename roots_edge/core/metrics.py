"""Scores computed from predictions alone (numpy, no model): what the PyTorch side's evaluation, export
verification and the runtimes' benchmark all report, so they cannot disagree. A leaf."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassifierReport:
    labels: list[str]
    accuracy: float
    macro_f1: float
    confusion: list[list[int]]   # rows: true label, columns: predicted label
    n: int

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "confusion": self.confusion,
                "labels": self.labels, "n": self.n}

    def table(self) -> str:
        w = max(8, *(len(lab) for lab in self.labels)) + 1
        lines = [f"accuracy {self.accuracy:.4f}   macro-F1 {self.macro_f1:.4f}   ({self.n} examples)",
                 "confusion (rows: true, columns: predicted)",
                 " " * w + "".join(f"{lab:>{w}}" for lab in self.labels)]
        for lab, row in zip(self.labels, self.confusion):
            lines.append(f"{lab:>{w}}" + "".join(f"{c:>{w}}" for c in row))
        return "\n".join(lines)


def classification_report(true: list[str], pred: list[str], labels: list[str]) -> ClassifierReport:
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, pred):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    present = cm.sum(1) > 0
    return ClassifierReport(labels=labels, accuracy=float(tp.sum() / max(1, cm.sum())),
                            macro_f1=float(f1[present].mean()) if present.any() else 0.0,
                            confusion=cm.tolist(), n=int(cm.sum()))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (KL divergences of near-equal logits need it)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kl_and_agreement(ref: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position of (T, V) logits: KL(softmax(ref) || softmax(logits)) and whether their argmaxes agree."""
    lp, lq = log_softmax(ref), log_softmax(logits)
    return (np.exp(lp) * (lp - lq)).sum(-1), lp.argmax(-1) == lq.argmax(-1)


class LogitDrift:
    """How far a model's next-token logits are from a reference's, over texts: mean KL(reference || model) and
    top-1 agreement over every position (each one is a distribution the model answers with, the last included),
    the largest logit difference, and each side's perplexity over the positions whose next token is known.
    Export verification and the benchmark both measure with this, so their numbers mean the same."""

    def __init__(self):
        self.positions = self.agree = self.predicted = 0
        self.kl_sum = self.nll = self.nll_ref = 0.0
        self.max_diff = 0.0
        self.has_ref = False

    def add(self, ids, logits: np.ndarray, ref: np.ndarray | None = None) -> None:
        """One text: its token ids (T,), the model's logits (T, V) and, when there is one, the reference's."""
        ids = np.asarray(ids).reshape(-1)
        logits = np.asarray(logits, dtype=np.float32).reshape(len(ids), -1)
        nxt = ids[1:]                                                          # (T-1,) what positions 0..T-2 predict
        self.nll -= log_softmax(logits[:-1])[np.arange(nxt.size), nxt].sum()
        self.predicted += nxt.size
        self.positions += len(ids)
        if ref is not None:
            ref = np.asarray(ref, dtype=np.float32).reshape(logits.shape)
            self.has_ref = True
            kl, same = kl_and_agreement(ref, logits)
            self.kl_sum += float(kl.sum())
            self.agree += int(same.sum())
            self.max_diff = max(self.max_diff, float(np.abs(ref - logits).max()))
            self.nll_ref -= log_softmax(ref[:-1])[np.arange(nxt.size), nxt].sum()

    @property
    def perplexity(self) -> float | None:
        return float(np.exp(self.nll / self.predicted)) if self.predicted else None

    @property
    def perplexity_ref(self) -> float | None:
        return float(np.exp(self.nll_ref / self.predicted)) if self.predicted and self.has_ref else None

    @property
    def kl(self) -> float | None:
        return self.kl_sum / self.positions if self.has_ref and self.positions else None

    @property
    def top1(self) -> float | None:
        return self.agree / self.positions if self.has_ref and self.positions else None
