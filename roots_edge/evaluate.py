"""Evaluation: perplexity for language models; accuracy, macro-F1 and confusion for classifiers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    from .train import stream_nll

    eos = tokenizer.eos_token_id
    ids = [t for text in texts for t in (*tokenizer(text)["input_ids"], eos)]
    stream = np.asarray(ids, dtype=np.int64)
    nll, targets = stream_nll(model, stream, min(seq_len, max(1, len(stream) - 1)), max_tokens)
    return PerplexityReport(perplexity=math.exp(nll), nll=nll, tokens=int(len(targets)))
