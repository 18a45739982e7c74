"""Pretraining (and causal-LM finetuning) of Llama-architecture decoders, through the one loop in `fit.py`.

Resumable: every `checkpoint_every` steps the run writes a checkpoint folder atomically (see `fit.py`). A
killed run resumes from its last complete checkpoint; a half-written one never replaces it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from roots_edge.data.corpora import Corpus
from roots_edge.core.errors import DataError, RecipeError
from roots_edge.train.fit import Checkpoint, FitConfig, FitResult, distributed, fit
from roots_edge.train.recipe import ArchConfig, TrainConfig


@dataclass
class TokenStream:
    """A corpus encoded as one stream per split: `<s> doc </s> <s> doc </s> ...`."""

    train: np.ndarray
    val: np.ndarray

    @classmethod
    def encode(cls, tokenizer, corpus: Corpus, eos: int | None = None) -> "TokenStream":
        """`eos`: the id between documents (default: the `</s>` of roots-edge's own tokenizers; a community model
        passes its own, e.g. SmolLM2's `<|endoftext|>`; none at all if the tokenizer has neither)."""
        sep = [eos] if eos is not None else [t for t in [tokenizer.token_to_id("</s>")] if t is not None]

        def encode(docs):
            if not docs:
                return np.zeros(0, dtype=np.int64)
            encs = tokenizer.encode_batch(docs)  # BOS, where the tokenizer has one, comes from its post-processor
            return np.fromiter((t for e in encs for t in (*e.ids, *sep)), dtype=np.int64)

        return cls(encode(corpus.train), encode(corpus.val))


def llama_config(arch: ArchConfig, vocab_size: int, bos: int, eos: int, pad: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers, num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads, max_position_embeddings=arch.context_length,
        rms_norm_eps=arch.norm_eps, rope_parameters={"rope_type": "default", "rope_theta": arch.rope_theta},
        tie_word_embeddings=arch.tie_embeddings, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
        architectures=["LlamaForCausalLM"])


@torch.no_grad()
def stream_nll(model, stream: np.ndarray, seq_len: int, max_tokens: int, batch_size: int = 8) -> tuple[float, np.ndarray]:
    """Mean next-token NLL over consecutive windows of `stream`; also returns the predicted targets."""
    n_windows = min((len(stream) - 1) // seq_len, max(1, max_tokens // seq_len))
    if n_windows < 1:
        raise DataError(f"validation text has {len(stream)} tokens, fewer than one window of {seq_len + 1}")
    model.eval()
    total, count, targets = 0.0, 0, []
    for start in range(0, n_windows, batch_size):
        idx = range(start, min(n_windows, start + batch_size))
        x = torch.from_numpy(np.stack([stream[i * seq_len:(i + 1) * seq_len] for i in idx]))       # (B, T)
        y = torch.from_numpy(np.stack([stream[i * seq_len + 1:(i + 1) * seq_len + 1] for i in idx]))  # (B, T)
        logits = model(input_ids=x).logits.float()                                                  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        total += nll.item()
        count += y.numel()
        targets.append(y.flatten().numpy())
    return total / count, np.concatenate(targets)


def unigram_nll(train: np.ndarray, targets: np.ndarray, vocab_size: int) -> float:
    """Mean NLL of `targets` under add-one-smoothed unigram frequencies of the training tokens."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[targets].mean())


def run_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Windows:
    """Random windows of `seq_len + 1` tokens from a stream; one global batch of `batch_size` per step, split
    between ranks (every rank draws the same starts)."""

    stream: np.ndarray
    batch_size: int
    seq_len: int

    def draw(self, step: int, rng: np.random.Generator, world: int, rank: int) -> dict:
        starts = rng.integers(0, len(self.stream) - self.seq_len - 1, size=self.batch_size)[rank::world]
        return {"input_ids": torch.from_numpy(np.stack([self.stream[s:s + self.seq_len + 1] for s in starts]))}


def next_token_loss(model, batch: dict):
    ids = batch["input_ids"]                                                               # (B, T+1)
    logits = model(input_ids=ids[:, :-1]).logits                                          # (B, T, V)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def fit_config(cfg: TrainConfig, desc: str = "train") -> FitConfig:
    """A recipe's training section as the loop's config: warmup, then cosine down to `min_lr_ratio`."""
    return FitConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup, decay="cosine", floor=cfg.min_lr_ratio,
                     weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2), eval_every=cfg.eval_every,
                     patience=cfg.patience, checkpoint_every=cfg.checkpoint_every, seed=cfg.seed,
                     monitor="val_nll", desc=desc)


def train_lm(model, streams: TokenStream, cfg: TrainConfig, *, checkpoint_dir: Path | None = None,
             key: str = "", progress: bool = True, desc: str = "train") -> FitResult:
    """Train `model` in place on random windows of the training stream (`fit`); restore the best weights."""
    if len(streams.train) <= cfg.seq_len + 1:
        raise DataError(f"the training text has {len(streams.train)} tokens; it needs more than "
                        f"{cfg.seq_len + 1} (one window). Give a larger corpus or a shorter --seq-len.")
    world, _ = distributed()
    if cfg.batch_size % world:
        raise RecipeError(f"batch size {cfg.batch_size} does not split over {world} processes; "
                          "make it a multiple of the process count")
    def val_nll(m):
        return {"val_nll": stream_nll(m, streams.val, cfg.seq_len, cfg.max_eval_tokens)[0]}

    return fit(model, Windows(streams.train, cfg.batch_size, cfg.seq_len), next_token_loss, fit_config(cfg, desc),
               evaluate=val_nll if len(streams.val) > cfg.seq_len else None, checkpoint=Checkpoint(checkpoint_dir, key) if checkpoint_dir else None,
               progress=progress)
