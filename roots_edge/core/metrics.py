"""Scores computed from predictions alone (numpy, no model): what the PyTorch side's evaluation and the
runtimes' benchmark both report, so they cannot disagree. A leaf."""
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
