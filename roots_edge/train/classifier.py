"""Sequence-classification finetuning from `texts, labels`, on a BERT encoder or a Llama decoder."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from roots_edge.data.corpora import Labeled
from roots_edge.core.metrics import ClassifierReport, classification_report
from roots_edge.core.config import POSITIVE, UNIT, option
from roots_edge.core.errors import UnsupportedModelError
from roots_edge.core.spec import FAMILY_LIST, ModelSpec
from roots_edge.runtimes.base import ENCODER_MAX_TOKENS

# families that have a sequence-classification class in transformers, and its name
HEADS = {f.name: a for f in FAMILY_LIST for a, task in f.architectures.items() if task == "classification"}


@dataclass
class FinetuneConfig:
    epochs: int = option(30, within=POSITIVE)
    lr: float | None = option(None, within=POSITIVE)   # None: 1e-4 for pretrained encoders, 1e-3 for small decoders
    batch_size: int = option(8, within=POSITIVE)
    max_length: int = option(128, within=POSITIVE)
    val_fraction: float = option(0.2, within=UNIT)    # used only when there are at least 20 examples
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

    head = HEADS.get(spec.family)
    if head is None:
        raise UnsupportedModelError(f"{spec.family} models have no classification head roots-edge can train "
                                    f"(families with one: {', '.join(HEADS)})")
    cls = getattr(transformers, head)
    cfg = model.config.__class__.from_dict(model.config.to_dict())
    cfg.architectures = [cls.__name__]
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {lab: i for i, lab in enumerate(labels)}
    torch.manual_seed(0)
    new = cls(cfg)
    body = model.bert if spec.family == "bert" and hasattr(model, "bert") else \
        model.model if spec.is_decoder and hasattr(model, "lm_head") else model
    target = new.bert if spec.family == "bert" else new.model
    own = target.state_dict()
    loaded = {k: v for k, v in body.state_dict().items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(loaded, strict=False)
    if spec.is_decoder:
        new.config.pad_token_id = model.config.pad_token_id
    return new


@dataclass
class Epochs:
    """Labeled texts in shuffled batches, epoch after epoch. Epoch e's order comes from (seed, e) alone, so a
    step's batch does not depend on the steps before it (a resumed run sees the same batches)."""

    tokenizer: object
    data: Labeled
    label_ids: dict
    batch_size: int
    max_length: int
    seed: int = 0

    @property
    def per_epoch(self) -> int:
        return math.ceil(len(self.data.texts) / self.batch_size)

    def draw(self, step: int, rng: np.random.Generator, world: int, rank: int) -> dict:
        epoch, i = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.data.texts))
        idx = order[i * self.batch_size:(i + 1) * self.batch_size][rank::world]
        enc = self.tokenizer([self.data.texts[j] for j in idx], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {**enc, "labels": torch.tensor([self.label_ids[self.data.labels[j]] for j in idx])}


def label_loss(model, batch: dict):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return torch.nn.functional.cross_entropy(model(**inputs).logits, batch["labels"])


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
    """Returns (classifier model, metrics), trained by `fit`. Early-stops on validation loss (evaluated every
    epoch) when a split is possible."""
    from roots_edge.train.fit import FitConfig, fit

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
    batches = Epochs(tokenizer, train, label_ids, cfg.batch_size, cfg.max_length, cfg.seed)
    def val_metrics(m):
        y = np.array([label_ids[lab] for lab in val.labels])
        probs = predict_proba(m, tokenizer, val.texts, cfg.max_length)                    # (N, C)
        return {"val_loss": float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean()),
                "val_accuracy": float((probs.argmax(-1) == y).mean())}

    fit_cfg = FitConfig(steps=cfg.epochs * batches.per_epoch, lr=lr, decay="linear", floor=0.05,
                        weight_decay=cfg.weight_decay, decay_all=True, eval_every=batches.per_epoch,
                        patience=cfg.patience, seed=cfg.seed, monitor="val_loss", desc="finetune")
    result = fit(clf, batches, label_loss, fit_cfg, evaluate=val_metrics if val is not None else None,
                 progress=progress)
    history = [{"epoch": e["step"] // batches.per_epoch, **{k: v for k, v in e.items() if k != "step"}}
               for e in result.history]
    metrics = {"train_examples": len(train.texts), "val_examples": len(val.texts) if val else 0,
               "epochs": math.ceil(result.steps / batches.per_epoch), "lr": lr, "history": history,
               "train": report(clf, tokenizer, train, cfg.max_length).to_dict()}
    if val is not None:
        metrics["val"] = report(clf, tokenizer, val, cfg.max_length).to_dict()
    return clf, metrics
