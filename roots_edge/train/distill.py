"""Knowledge distillation on the one training loop (`fit.py`): a student learns the teacher's outputs.

- causal LMs: token-level KL(teacher || student) on temperature-softened next-token distributions, plus the
  usual next-token loss: `alpha * T^2 * KL + (1 - alpha) * CE`. With `top_k` the teacher runs once over the
  training text and its k likeliest tokens per position are kept with their probabilities (cached beside the
  checkpoint); the student matches the teacher on those k tokens plus one bucket for all the rest, which is the
  exact KL of that coarser distribution (renormalising the k alone would push the student's tail to zero).
- classifiers: the same mixture on the class logits; rows without a label (unlabeled text) learn from the
  teacher alone.
- embedders: the student's mean-pooled sentence embedding is pulled to the teacher's (cosine or MSE).

The student is usually a pruned copy of the teacher (`prune.py`: the Minitron recipe) but may be any model of
the same task and tokenizer. Resumable, atomic and `torchrun`-ready like every run of `fit`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from roots_edge.data.corpora import Labeled
from roots_edge.core.config import POSITIVE, PROBABILITY, check, option
from roots_edge.core.errors import DataError, RecipeError, UnsupportedModelError
from roots_edge.train.fit import Checkpoint, FitConfig, FitResult, distributed, fit

MIN_LABELED = 20          # a classifier student needs at least this many labeled rows
EMBED_LOSSES = ("cosine", "mse")


@dataclass
class DistillConfig:
    steps: int = option(1000, within=POSITIVE)
    lr: float | None = option(None, within=POSITIVE)          # None: 1e-3 for decoders, 1e-4 for encoders
    batch_size: int | None = option(None, within=POSITIVE)    # None: 4 windows (decoders), 16 texts (encoders)
    seq_len: int = option(256, within=POSITIVE)               # decoders: tokens per window
    max_length: int = option(128, within=POSITIVE)            # encoders: tokens per text
    temperature: float = option(1.0, within=POSITIVE)
    alpha: float = option(0.5, within=PROBABILITY)  # weight of the teacher term; 1 - alpha: labels / next tokens
    top_k: int = option(0, what="0 (the teacher runs every step) or a count")   # decoders: cache the teacher's
                                                    # k largest logits once
    embed_loss: str = option("cosine", choices=EMBED_LOSSES)  # embedders: "cosine" or "mse"
    warmup: float = option(0.1, within=PROBABILITY)
    weight_decay: float = 0.1
    eval_every: int = option(100, within=POSITIVE)
    patience: int = option(3, within=POSITIVE)
    checkpoint_every: int = option(100, within=POSITIVE)
    seed: int = 0

    def fit_config(self, lr: float, desc: str = "distill", monitor: str = "val_loss") -> FitConfig:
        return FitConfig(steps=self.steps, lr=lr, warmup=self.warmup, decay="cosine", floor=0.1,
                         weight_decay=self.weight_decay, betas=(0.9, 0.95), eval_every=self.eval_every,
                         patience=self.patience, checkpoint_every=self.checkpoint_every, seed=self.seed,
                         monitor=monitor, desc=desc)


def check_pair(teacher, t_tok, t_spec, student, s_tok, s_spec) -> None:
    """Refuse a student that cannot learn from this teacher token by token (or label by label)."""
    if t_spec.task != s_spec.task:
        raise UnsupportedModelError(f"the teacher is a {t_spec.task} model and the student a {s_spec.task} model; "
                                    "distillation needs the same task")
    t_vocab, s_vocab = t_tok.get_vocab(), s_tok.get_vocab()
    if t_vocab != s_vocab:
        diff = len(set(t_vocab.items()) ^ set(s_vocab.items()))
        raise UnsupportedModelError(
            f"the student's tokenizer differs from the teacher's ({len(s_vocab)} vs {len(t_vocab)} tokens, {diff} "
            "entries differ): distillation compares outputs position by position. Use a student pruned from the "
            "teacher (`roots-edge prune`) or one built with the teacher's tokenizer.")
    if t_spec.task == "causal-lm" and t_spec.vocab_size != s_spec.vocab_size:
        raise UnsupportedModelError(f"the teacher predicts {t_spec.vocab_size} tokens and the student "
                                    f"{s_spec.vocab_size}; their output layers must match")
    if t_spec.task == "classification" and t_spec.labels != s_spec.labels:
        raise UnsupportedModelError(f"the teacher's labels {t_spec.labels} differ from the student's "
                                    f"{s_spec.labels}; prune the teacher classifier to make the student")
    if t_spec.task == "embedding" and t_spec.hidden_size != s_spec.hidden_size:
        raise UnsupportedModelError(f"the teacher embeds in {t_spec.hidden_size} dimensions and the student in "
                                    f"{s_spec.hidden_size}; embedding distillation needs the same width")


def _soft_kl(student_logits, teacher_logits, temperature: float):
    """Mean over rows of KL(softmax(t / T) || softmax(s / T)) * T^2 (Hinton's scaling keeps gradients comparable)."""
    s = torch.log_softmax(student_logits.float() / temperature, -1)
    t = torch.log_softmax(teacher_logits.float() / temperature, -1)
    return (t.exp() * (t - s)).sum(-1).mean() * temperature ** 2


# ---------------------------------------------------------------------------------------------- decoders

@dataclass
class TopK:
    """The teacher's k likeliest next tokens at every position of fixed windows of the training stream."""

    windows: np.ndarray        # (N, seq_len + 1) token ids
    values: torch.Tensor       # (N, seq_len, k) float16 log-probabilities at the distillation temperature
    ids: torch.Tensor          # (N, seq_len, k) int32 token ids

    @classmethod
    @torch.no_grad()
    def compute(cls, teacher, stream: np.ndarray, seq_len: int, k: int, temperature: float, batch: int = 8,
                progress: bool = True):
        from tqdm.auto import tqdm

        n = (len(stream) - 1) // seq_len
        windows = np.stack([stream[i * seq_len:i * seq_len + seq_len + 1] for i in range(n)])
        values, ids = [], []
        teacher.eval()
        for s in tqdm(range(0, n, batch), desc="teacher top-k", unit="batch", disable=not progress):
            logits = teacher(input_ids=torch.from_numpy(windows[s:s + batch, :-1])).logits.float()
            top = torch.log_softmax(logits / temperature, -1).topk(k, dim=-1)
            values.append(top.values.half())
            ids.append(top.indices.int())
        return cls(windows, torch.cat(values), torch.cat(ids))

    def save(self, path: Path, key: str) -> None:
        from safetensors.torch import save_file

        from roots_edge.core.paths import atomic_file

        with atomic_file(path) as tmp:
            save_file({"windows": torch.from_numpy(self.windows), "values": self.values, "ids": self.ids},
                      str(tmp), metadata={"key": key})

    @classmethod
    def load(cls, path: Path, key: str) -> "TopK | None":
        from safetensors import safe_open

        if not path.is_file():
            return None
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            return cls(f.get_tensor("windows").numpy(), f.get_tensor("values"), f.get_tensor("ids"))


@dataclass
class CachedWindows:
    top: TopK
    batch_size: int

    def draw(self, step: int, rng: np.random.Generator, world: int, rank: int) -> dict:
        idx = rng.integers(0, len(self.top.windows), size=self.batch_size)[rank::world]
        return {"input_ids": torch.from_numpy(self.top.windows[idx]), "top_values": self.top.values[idx],
                "top_ids": self.top.ids[idx].long()}


def decoder_loss(teacher, cfg: DistillConfig):
    def loss(model, batch: dict):
        ids = batch["input_ids"]                                                          # (B, T+1)
        logits = model(input_ids=ids[:, :-1]).logits                                      # (B, T, V)
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        if "top_values" in batch:                      # cached: KL over the teacher's k tokens + one "rest" bucket
            logp = batch["top_values"].float()                                             # (B, T, k)
            logq = torch.log_softmax(logits.float() / cfg.temperature, -1).gather(-1, batch["top_ids"])
            p = logp.exp()
            p_rest = (1 - p.sum(-1)).clamp_min(1e-6)                                       # (B, T)
            q_rest = (1 - logq.exp().sum(-1)).clamp_min(1e-6)
            kl = (p * (logp - logq)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
            kd = kl.mean() * cfg.temperature ** 2
        else:
            with torch.no_grad():
                t_logits = teacher(input_ids=ids[:, :-1]).logits
            kd = _soft_kl(logits.flatten(0, 1), t_logits.flatten(0, 1), cfg.temperature)
        return cfg.alpha * kd + (1 - cfg.alpha) * ce
    return loss


def distill_decoder(teacher, student, streams, cfg: DistillConfig, *, checkpoint_dir: Path | None = None,
                    key: str = "", progress: bool = True) -> FitResult:
    """Train `student` in place toward `teacher` on random windows of `streams.train` (a `TokenStream`)."""
    from roots_edge.train.lm import Windows, stream_nll

    check(cfg, "distill")
    batch = cfg.batch_size or 4
    if len(streams.train) <= cfg.seq_len + 1 or (cfg.top_k and len(streams.train) < 2 * cfg.seq_len + 1):
        raise DataError(f"the distillation text has {len(streams.train):,} tokens; it needs more than "
                        f"{cfg.seq_len + 1} (one window{', two with top_k' if cfg.top_k else ''}). Give more "
                        "text with --data or a shorter --seq-len.")
    world, _ = distributed()
    if batch % world:
        raise RecipeError(f"batch size {batch} does not split over {world} processes")
    teacher.eval()
    if cfg.top_k:
        cache = topk_cache(checkpoint_dir) if checkpoint_dir else None
        top = TopK.load(cache, key) if cache else None
        if top is None:
            top = TopK.compute(teacher, streams.train, cfg.seq_len, cfg.top_k, cfg.temperature, progress=progress)
            if cache and distributed()[1] == 0:
                cache.parent.mkdir(parents=True, exist_ok=True)
                top.save(cache, key)
        batches = CachedWindows(top, batch)
    else:
        batches = Windows(streams.train, batch, cfg.seq_len)

    def val_nll(m):
        return {"val_nll": stream_nll(m, streams.val, cfg.seq_len, 65536)[0]}

    with frozen(teacher):
        return fit(student, batches, decoder_loss(teacher, cfg), cfg.fit_config(cfg.lr or 1e-3, monitor="val_nll"),
                   evaluate=val_nll if len(streams.val) > cfg.seq_len else None,
                   checkpoint=Checkpoint(checkpoint_dir, key) if checkpoint_dir else None, progress=progress)


def topk_cache(checkpoint_dir: Path) -> Path:
    """Where the teacher's top-k logits are cached: beside the checkpoint (which is replaced whole at every save)."""
    return checkpoint_dir.with_name(checkpoint_dir.name + ".teacher-topk.safetensors")


@contextlib.contextmanager
def frozen(teacher):
    """The teacher without gradients for the run, as it was afterwards (a user may train it again later)."""
    before = [p.requires_grad for p in teacher.parameters()]
    for p in teacher.parameters():
        p.requires_grad_(False)
    try:
        yield teacher
    finally:
        for p, flag in zip(teacher.parameters(), before):
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------- encoders

def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)                                               # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)                                    # (B, D)


def encoder_loss(teacher, task: str, cfg: DistillConfig):
    def loss(model, batch: dict):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            t_out = teacher(**inputs)
        out = model(**inputs)
        if task == "classification":
            kd = _soft_kl(out.logits, t_out.logits, cfg.temperature)
            labels = batch["labels"]
            if (labels >= 0).any():
                ce = torch.nn.functional.cross_entropy(out.logits, labels, ignore_index=-1)
                return cfg.alpha * kd + (1 - cfg.alpha) * ce
            return kd
        s = mean_pool(out.last_hidden_state, inputs["attention_mask"])
        t = mean_pool(t_out.last_hidden_state, inputs["attention_mask"])
        if cfg.embed_loss == "mse":
            return torch.nn.functional.mse_loss(s, t)
        return (1 - torch.nn.functional.cosine_similarity(s, t, dim=-1)).mean()
    return loss


def distill_encoder(teacher, student, tokenizer, spec, train: Labeled, val: Labeled | None, cfg: DistillConfig, *,
                    checkpoint_dir: Path | None = None, key: str = "", progress: bool = True) -> FitResult:
    """Train `student` in place toward `teacher`. For classifiers `train.labels` holds label names, or None for
    unlabeled rows (the teacher's soft labels alone teach those); embedders ignore labels."""
    from roots_edge.train.classifier import Epochs, predict_proba

    check(cfg, "distill")
    if spec.task == "classification":
        labeled = sum(lab is not None for lab in train.labels)
        if labeled < MIN_LABELED:
            raise DataError(f"distilling a classifier needs at least {MIN_LABELED} labeled rows; got {labeled}")
    elif len(train.texts) < MIN_LABELED:
        raise DataError(f"distilling an embedder needs at least {MIN_LABELED} texts; got {len(train.texts)}")
    teacher.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    label_ids = {lab: i for i, lab in enumerate(spec.labels)} | {None: -1}
    unknown = sorted({lab for lab in train.labels if lab not in label_ids})
    if unknown and spec.task == "classification":
        raise DataError(f"labels {unknown[:5]} are not among the teacher's {spec.labels}")
    if spec.task != "classification":
        train = Labeled(train.texts, [None] * len(train.texts))
    batches = Epochs(tokenizer, train, label_ids, cfg.batch_size or 16, cfg.max_length, cfg.seed)

    def val_metrics(m):
        if spec.task == "classification":
            y = np.array([label_ids[lab] for lab in val.labels])
            probs = predict_proba(m, tokenizer, val.texts, cfg.max_length)                 # (N, C)
            return {"val_loss": float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean()),
                    "val_accuracy": float((probs.argmax(-1) == y).mean())}
        cos = embedding_agreement(teacher, m, tokenizer, val.texts, cfg.max_length)
        return {"val_loss": float(1 - cos.mean()), "val_cosine": float(cos.mean())}

    fit_cfg = cfg.fit_config(cfg.lr or 1e-4)
    fit_cfg.eval_every = min(cfg.eval_every, batches.per_epoch)
    with frozen(teacher):
        return fit(student, batches, encoder_loss(teacher, spec.task, cfg), fit_cfg,
                   evaluate=val_metrics if val is not None and val.texts else None,
                   checkpoint=Checkpoint(checkpoint_dir, key) if checkpoint_dir else None, progress=progress)


@torch.no_grad()
def embedding_agreement(teacher, student, tokenizer, texts: list[str], max_length: int = 128,
                        batch_size: int = 32) -> np.ndarray:
    """Cosine between the teacher's and the student's mean-pooled embedding of each text."""
    out = []
    student.eval()
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        t = mean_pool(teacher(**enc).last_hidden_state, enc["attention_mask"])
        s = mean_pool(student(**enc).last_hidden_state, enc["attention_mask"])
        out.append(torch.nn.functional.cosine_similarity(s, t, dim=-1).numpy())
    return np.concatenate(out)


def fingerprint(model) -> str:
    """A cheap identity of a model's weights (for checkpoint keys): shapes and sums of every tensor."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{float(t.double().sum()):.10e}".encode())
    return h.hexdigest()[:16]


def distill_models(teacher, t_tok, t_spec, student, s_tok, s_spec, texts, labels=None, unlabeled=(), *,
                   checkpoint_dir=None, progress: bool = True, **options) -> dict:
    """Distill `teacher` into `student` (in place) on `texts` as their task requires; returns the metrics. The
    run is keyed by the settings, both models' weights and the data, so a checkpoint of another run is refused."""
    from roots_edge.train.classifier import report, split_labeled
    from roots_edge.data.corpora import Corpus, _digest, check_labeled
    from roots_edge.train.lm import TokenStream, run_key, stream_nll

    cfg = DistillConfig(**options)
    check(cfg, "distill")
    check_pair(teacher, t_tok, t_spec, student, s_tok, s_spec)
    texts = [t for t in texts if isinstance(t, str)]
    key = run_key(asdict(cfg), fingerprint(teacher), fingerprint(student), _digest(texts),
                  list(map(str, labels)) if labels is not None else None, _digest(list(unlabeled)))
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    metrics: dict = {"config": asdict(cfg)}
    if s_spec.task == "causal-lm":
        if cfg.seq_len > min(s_spec.context_length, t_spec.context_length):
            raise RecipeError(f"seq_len {cfg.seq_len} is longer than the context of the student "
                              f"({s_spec.context_length}) or the teacher ({t_spec.context_length}); "
                              "give a shorter --seq-len")
        # split by content hash: given a whole corpus, its validation documents stay the corpus's own
        corpus = Corpus.from_documents([t for t in texts if t.strip()], "distill")
        streams = TokenStream.encode(s_tok.backend_tokenizer, corpus, s_spec.eos_token_id)
        result = distill_decoder(teacher, student, streams, cfg, checkpoint_dir=ckpt, key=key, progress=progress)
        if len(streams.val) > cfg.seq_len:
            metrics["val_perplexity"] = math.exp(stream_nll(student, streams.val, cfg.seq_len, 65536)[0])
            metrics["teacher_val_perplexity"] = math.exp(stream_nll(teacher, streams.val, cfg.seq_len, 65536)[0])
    else:
        if s_spec.task == "classification":
            if labels is None:
                raise DataError("distilling a classifier needs labeled texts (labels=...); add unlabeled text "
                                "with unlabeled=[...]")
            train, val = split_labeled(check_labeled(texts, labels), 0.2)
        else:                       # embedders: hold out a fifth of the texts to measure agreement on
            texts = [t for t in texts if t.strip()]
            cut = len(texts) - len(texts) // 5 if len(texts) >= 40 else len(texts)
            train = Labeled(texts[:cut], [None] * cut)
            val = Labeled(texts[cut:], [None] * (len(texts) - cut)) if cut < len(texts) else None
        extra = [t for t in unlabeled if isinstance(t, str) and t.strip()]
        train = Labeled(train.texts + extra, list(train.labels) + [None] * len(extra))
        result = distill_encoder(teacher, student, s_tok, s_spec, train, val, cfg, checkpoint_dir=ckpt, key=key,
                                 progress=progress)
        if val is not None and s_spec.task == "classification":
            metrics["val_accuracy"] = report(student, s_tok, val, cfg.max_length).accuracy
            metrics["teacher_val_accuracy"] = report(teacher, t_tok, val, cfg.max_length).accuracy
        elif val is not None:
            metrics["val_cosine"] = float(embedding_agreement(teacher, student, s_tok, val.texts,
                                                              cfg.max_length).mean())
    metrics.update(steps=result.steps, seconds=round(result.seconds, 1), stopped_early=result.stopped_early,
                   history=result.history, resumed_from=result.resumed_from)
    return metrics


def distilled_record(record: dict, teacher_path, metrics: dict) -> dict:
    """The student's record after distillation: one more history entry with the run's settings and metrics."""
    out = {k: v for k, v in record.items() if k != "metrics"}
    out["kind"] = "distilled"
    out["history"] = [*record.get("history", []),
                      {"kind": "distill", "teacher": str(teacher_path) if teacher_path else None,
                       "metrics": {k: v for k, v in metrics.items() if k != "history"}}]
    return out
