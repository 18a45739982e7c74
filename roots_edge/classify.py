"""Sequence-classification finetuning from `texts, labels`, on a BERT encoder or a Llama decoder."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from .data import Labeled
from .evaluate import ClassifierReport, classification_report
from .spec import ModelSpec
from roots_edge.runtimes.base import ENCODER_MAX_TOKENS

HEADS = {"bert": "BertForSequenceClassification", "llama": "LlamaForSequenceClassification"}


@dataclass
class FinetuneConfig:
    epochs: int = 30
    lr: float | None = None          # None: 1e-4 for pretrained encoders, 1e-3 for small decoders
    batch_size: int = 8
    max_length: int = 128
    val_fraction: float = 0.2        # used only when there are at least 20 examples
    patience: int = 5                # epochs without a better validation loss before stopping
    weight_decay: float = 0.01
    seed: int = 0


def split_labeled(data: Labeled, fraction: float) -> tuple[Labeled, Labeled | None]:
    """Hash-based validation split; None when there are too few examples to spare any."""
    if len(data.texts) < 20 or fraction <= 0:
        return data, None
    tr, va = Labeled([], []), Labeled([], [])
    for t, lab in zip(data.texts, data.labels):
        bucket = int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little") % 1000
        (va if bucket < fraction * 1000 else tr).texts.append(t)
        (va if bucket < fraction * 1000 else tr).labels.append(lab)
    if not va.texts or len(set(tr.labels)) < len(set(data.labels)):
        return data, None
    return tr, va


def with_classifier_head(model, spec: ModelSpec, labels: list[str]):
    """A `*ForSequenceClassification` model that shares `model`'s body and has a fresh head."""
    import transformers

    cls = getattr(transformers, HEADS[spec.family])
    cfg = model.config.__class__.from_dict(model.config.to_dict())
    cfg.architectures = [cls.__name__]
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {lab: i for i, lab in enumerate(labels)}
    torch.manual_seed(0)
    new = cls(cfg)
    body = model.bert if spec.family == "bert" and hasattr(model, "bert") else \
        model.model if spec.family == "llama" and hasattr(model, "lm_head") else model
    target = new.bert if spec.family == "bert" else new.model
    own = target.state_dict()
    loaded = {k: v for k, v in body.state_dict().items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(loaded, strict=False)
    if spec.family == "llama":
        new.config.pad_token_id = model.config.pad_token_id
    return new


def _batches(tokenizer, texts, labels, label_ids, batch_size, max_length, rng=None):
    order = np.arange(len(texts)) if rng is None else rng.permutation(len(texts))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        y = torch.tensor([label_ids[labels[j]] for j in idx])
        yield enc, y


@torch.no_grad()
def predict_proba(model, tokenizer, texts: list[str], max_length: int = ENCODER_MAX_TOKENS, batch_size: int = 32) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        out.append(torch.softmax(model(**enc).logits.float(), -1).numpy())
    return np.concatenate(out)


def report(model, tokenizer, data: Labeled, max_length: int = ENCODER_MAX_TOKENS) -> ClassifierReport:
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    probs = predict_proba(model, tokenizer, data.texts, max_length)
    pred = [labels[i] for i in probs.argmax(-1)]
    return classification_report(data.labels, pred, labels)


def finetune_classifier(model, tokenizer, spec: ModelSpec, data: Labeled, cfg: FinetuneConfig,
                        progress: bool = True):
    """Returns (classifier model, metrics). Early-stops on validation loss when a split is possible."""
    from tqdm.auto import tqdm

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    labels = data.label_names
    known = spec.labels if spec.task == "classification" else []
    if known and set(labels) <= set(known):
        clf, labels = model, known  # continue training the existing head
    else:
        clf = with_classifier_head(model, spec, labels)
    label_ids = {lab: i for i, lab in enumerate(labels)}
    train, val = split_labeled(data, cfg.val_fraction)
    lr = cfg.lr if cfg.lr is not None else (1e-4 if spec.family == "bert" else 1e-3)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optim = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train.texts) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: max(0.05, 1 - s / max(1, steps)))
    best, best_state, bad, history = float("inf"), None, 0, []
    bar = tqdm(range(cfg.epochs), desc="finetune", disable=not progress, unit="epoch")
    for epoch in bar:
        clf.train()
        total = 0.0
        for enc, y in _batches(tokenizer, train.texts, train.labels, label_ids, cfg.batch_size, cfg.max_length, rng):
            loss = torch.nn.functional.cross_entropy(clf(**enc).logits, y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
            optim.step()
            sched.step()
            total += loss.item() * len(y)
        entry = {"epoch": epoch + 1, "train_loss": round(total / len(train.texts), 4)}
        if val is not None:
            probs = predict_proba(clf, tokenizer, val.texts, cfg.max_length)
            y = np.array([label_ids[lab] for lab in val.labels])
            vloss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
            entry["val_loss"] = round(vloss, 4)
            entry["val_accuracy"] = round(float((probs.argmax(-1) == y).mean()), 4)
            if vloss < best - 1e-4:
                best, bad = vloss, 0
                best_state = {k: v.detach().clone() for k, v in clf.state_dict().items()}
            else:
                bad += 1
        history.append(entry)
        bar.set_postfix({k: v for k, v in entry.items() if k != "epoch"})
        if val is not None and bad >= cfg.patience:
            break
    if best_state is not None:
        clf.load_state_dict(best_state)
    clf.eval()
    metrics = {"train_examples": len(train.texts), "val_examples": len(val.texts) if val else 0,
               "epochs": len(history), "lr": lr, "history": history,
               "train": report(clf, tokenizer, train, cfg.max_length).to_dict()}
    if val is not None:
        metrics["val"] = report(clf, tokenizer, val, cfg.max_length).to_dict()
    return clf, metrics
