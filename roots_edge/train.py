"""Pretraining (and causal-LM finetuning) of Llama-architecture decoders.

Resumable: every `checkpoint_every` steps the run writes a checkpoint folder atomically (weights,
optimizer moments and RNG state as safetensors, the loop state as JSON; never pickles). A killed
run resumes from its last complete checkpoint; a half-written one never replaces it.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import Corpus
from .errors import DataError, RecipeError
from .paths import atomic_dir
from .recipes import ArchConfig, TrainConfig


@dataclass
class TokenStream:
    """A corpus encoded as one stream per split: `<s> doc </s> <s> doc </s> ...`."""

    train: np.ndarray
    val: np.ndarray

    @classmethod
    def encode(cls, tokenizer, corpus: Corpus) -> "TokenStream":
        def encode(docs):
            if not docs:
                return np.zeros(0, dtype=np.int64)
            eos = tokenizer.token_to_id("</s>")
            encs = tokenizer.encode_batch(docs)  # BOS is prepended by the post-processor
            return np.fromiter((t for e in encs for t in (*e.ids, eos)), dtype=np.int64)

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


def _lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------------- checkpoints

def _save_checkpoint(path: Path, model, optim, best_state, loop: dict) -> None:
    from safetensors.torch import save_file, save_model

    with atomic_dir(path, replace=True) as tmp:
        save_model(model, str(tmp / "model.safetensors"))  # handles tied (shared) tensors
        save_file({k: v.contiguous() for k, v in best_state.items()}, tmp / "best.safetensors")
        moments = {}
        for i, p in enumerate(p for g in optim.param_groups for p in g["params"]):
            st = optim.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in st:
                    moments[f"{i}.{key}"] = torch.as_tensor(st[key]).reshape(-1).clone()
        moments["rng"] = torch.get_rng_state()
        save_file(moments, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps(loop, indent=1))


def _load_checkpoint(path: Path, model, optim) -> tuple[dict, dict]:
    from safetensors.torch import load_file, load_model

    load_model(model, str(path / "model.safetensors"))
    best = load_file(path / "best.safetensors")
    moments = load_file(path / "optimizer.safetensors")
    for i, p in enumerate(p for g in optim.param_groups for p in g["params"]):
        if f"{i}.exp_avg" in moments:
            optim.state[p] = {
                "step": moments[f"{i}.step"].reshape(()),
                "exp_avg": moments[f"{i}.exp_avg"].reshape(p.shape),
                "exp_avg_sq": moments[f"{i}.exp_avg_sq"].reshape(p.shape),
            }
    torch.set_rng_state(moments["rng"])
    return json.loads((path / "state.json").read_text()), best


# ---------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    steps: int
    seconds: float
    val_nll: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def run_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_lm(model, streams: TokenStream, cfg: TrainConfig, *, checkpoint_dir: Path | None = None,
             key: str = "", progress: bool = True, desc: str = "train") -> TrainResult:
    """Train `model` in place on random windows of the training stream; restore the best weights."""
    from tqdm.auto import tqdm

    if len(streams.train) <= cfg.seq_len + 1:
        raise DataError(f"the training text has {len(streams.train)} tokens; it needs more than "
                        f"{cfg.seq_len + 1} (one window). Give a larger corpus or a shorter --seq-len.")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    loop = {"key": key, "step": 0, "best_val": float("inf"), "bad_evals": 0, "history": [], "seconds": 0.0}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    resumed = 0
    if checkpoint_dir and (checkpoint_dir / "state.json").is_file():
        saved = json.loads((checkpoint_dir / "state.json").read_text())
        if saved.get("key") != key:
            raise RecipeError(f"{checkpoint_dir} holds a checkpoint of a different run (recipe or data "
                              "changed); delete it or pass --restart to start over")
        loop, best_state = _load_checkpoint(checkpoint_dir, model, optim)
        resumed = loop["step"]
        rng.bit_generator.state = loop["np_rng"]

    t0 = time.perf_counter() - loop["seconds"]
    stopped = False
    high = len(streams.train) - cfg.seq_len - 1
    bar = tqdm(total=cfg.steps, initial=loop["step"], desc=desc, disable=not progress, unit="step")
    model.train()
    while loop["step"] < cfg.steps:
        step = loop["step"]
        starts = rng.integers(0, high, size=cfg.batch_size)
        batch = torch.from_numpy(np.stack([streams.train[s:s + cfg.seq_len + 1] for s in starts]))  # (B, T+1)
        for g in optim.param_groups:
            g["lr"] = _lr_at(step, cfg)
        logits = model(input_ids=batch[:, :-1]).logits                                               # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        loop["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        last = loop["step"] == cfg.steps
        if len(streams.val) > cfg.seq_len and (loop["step"] % cfg.eval_every == 0 or last):
            val, _ = stream_nll(model, streams.val, cfg.seq_len, cfg.max_eval_tokens)
            model.train()
            loop["history"].append({"step": loop["step"], "train_loss": round(loss.item(), 4),
                                    "val_nll": round(val, 4)})
            bar.set_postfix(loss=f"{loss.item():.3f}", val_ppl=f"{math.exp(val):.1f}")
            if val < loop["best_val"] - 1e-4:
                loop["best_val"], loop["bad_evals"] = val, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                loop["bad_evals"] += 1
                if loop["bad_evals"] >= cfg.patience:
                    stopped = True
        loop["seconds"] = time.perf_counter() - t0
        if checkpoint_dir and (loop["step"] % cfg.checkpoint_every == 0) and not last and not stopped:
            loop["np_rng"] = rng.bit_generator.state
            _save_checkpoint(checkpoint_dir, model, optim, best_state, loop)
        if stopped:
            break
    bar.close()
    if loop["best_val"] < float("inf"):
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(steps=loop["step"], seconds=loop["seconds"], val_nll=loop["best_val"],
                       stopped_early=stopped, history=loop["history"], resumed_from=resumed)
