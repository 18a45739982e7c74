"""One training loop for every trainer: pretraining, causal-LM finetuning, classifier finetuning (and
distillation next).

    result = fit(model, batches, loss, FitConfig(steps=1000, lr=3e-3, warmup=0.3), evaluate=val_nll,
                 checkpoint=Checkpoint(folder, key))

AdamW, a warmup then cosine or linear schedule, gradient clipping, evaluation every `eval_every` steps,
early stopping with the best weights kept, and atomic resumable checkpoints (weights, optimizer moments,
RNG states as safetensors, the loop state as JSON; never pickles). Under `torchrun` (PyTorch DDP, gloo on
CPU) each rank takes its share of every global batch, gradients are averaged, the logged loss is the global
mean, and rank 0 writes checkpoints: the loss curve equals one process's with the same global batch.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from roots_edge.core.errors import RecipeError
from roots_edge.core.paths import INTERNAL, atomic_dir


@dataclass
class FitConfig:
    steps: int                       # optimizer steps in all
    lr: float
    warmup: float = 0.0              # share of the steps with a linear warmup from 0
    decay: str = "cosine"            # "cosine" or "linear", from lr down to floor x lr
    floor: float = 0.1
    weight_decay: float = 0.0
    decay_all: bool = False          # weight decay on norms and biases too (else only on matrices)
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float = 1.0                # max gradient norm
    eval_every: int = 100            # steps between evaluations (and one at the last step)
    monitor: str = "val_loss"        # the evaluation metric to minimise: early stopping, best weights
    patience: int = 3                # evaluations without a better score before stopping
    checkpoint_every: int = 100
    seed: int = 0
    desc: str = "train"              # the progress bar's label

    def lr_at(self, step: int) -> float:
        warm = max(1, int(self.warmup * self.steps)) if self.warmup > 0 else 0
        if step < warm:
            return self.lr * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, self.steps - warm))
        if self.decay == "linear":
            return self.lr * max(self.floor, 1 - progress)
        floor = self.lr * self.floor
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class Batches(Protocol):
    def draw(self, step: int, rng: np.random.Generator, world: int, rank: int) -> dict:
        """This rank's share of global batch number `step` (tensors by argument name). Every rank makes the
        same calls on `rng`, so the global batch is the same whatever the number of ranks."""


@dataclass
class Checkpoint:
    folder: Path
    key: str                         # identifies the run: a checkpoint of another run is refused


@dataclass
class FitResult:
    steps: int
    seconds: float
    best: float                      # best evaluation score (inf without evaluation)
    stopped_early: bool
    history: list[dict] = field(default_factory=list)   # one entry per evaluation
    losses: list[float] = field(default_factory=list)   # the (global) training loss of every step this run made
    resumed_from: int = 0


def distributed() -> tuple[int, int]:
    """(world size, rank): (1, 0) unless a process group is up."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by `torchrun` (gloo: CPU); (world size, rank)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return distributed()


def fit(model, batches: Batches, loss: Callable, cfg: FitConfig, *, evaluate: Callable | None = None,
        checkpoint: Checkpoint | None = None, progress: bool = True) -> FitResult:
    """Train `model` in place; `loss(model, batch)` is the mean loss of a batch, `evaluate(model)` a dict of
    metrics holding `cfg.monitor` (or None: no evaluation). The best evaluated weights are restored at the end."""
    from tqdm.auto import tqdm

    world, rank = distributed()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = list(model.named_parameters())
    groups = ([{"params": [p for _, p in params], "weight_decay": cfg.weight_decay}] if cfg.decay_all else
              [{"params": [p for _, p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
               {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}])
    optim = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    loop = {"key": checkpoint.key if checkpoint else "", "step": 0, "best": float("inf"), "bad": 0,
            "history": [], "seconds": 0.0}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    resumed = 0
    if checkpoint and (checkpoint.folder / "state.json").is_file():
        saved = json.loads((checkpoint.folder / "state.json").read_text())
        if saved.get("key") != checkpoint.key:
            raise RecipeError(f"{checkpoint.folder} holds a checkpoint of a different run (recipe or data "
                              "changed); delete it or pass --restart to start over")
        loop, best_state = _load_checkpoint(checkpoint.folder, model, optim)
        loop.setdefault("best", loop.pop("best_val", float("inf")))   # checkpoints of the loop before fit()
        loop.setdefault("bad", loop.pop("bad_evals", 0))
        resumed = loop["step"]
        rng.bit_generator.state = loop["np_rng"]
    runner = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    t0 = time.perf_counter() - loop["seconds"]
    stopped, losses, evaluated = False, [], 0      # losses[evaluated:]: the steps since the last evaluation
    bar = tqdm(total=cfg.steps, initial=loop["step"], desc=cfg.desc, disable=not progress or rank > 0, unit="step")
    model.train()
    while loop["step"] < cfg.steps:
        step = loop["step"]
        batch = batches.draw(step, rng, world, rank)
        for g in optim.param_groups:
            g["lr"] = cfg.lr_at(step)
        value = loss(runner, batch)
        optim.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optim.step()
        logged = value.detach().clone()
        if world > 1:
            torch.distributed.all_reduce(logged)
            logged /= world
        losses.append(float(logged))
        loop["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        last = loop["step"] == cfg.steps
        if evaluate is not None and (loop["step"] % cfg.eval_every == 0 or last):
            metrics = evaluate(model)
            model.train()
            entry = {"step": loop["step"], "train_loss": round(float(np.mean(losses[evaluated:])), 4),
                     **{k: round(float(v), 4) for k, v in metrics.items()}}
            loop["history"].append(entry)
            evaluated = len(losses)
            value_now = float(metrics[cfg.monitor])
            bar.set_postfix({k: v for k, v in entry.items() if k != "step"})
            if value_now < loop["best"] - 1e-4:
                loop["best"], loop["bad"] = value_now, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                loop["bad"] += 1
                stopped = loop["bad"] >= cfg.patience
        loop["seconds"] = time.perf_counter() - t0
        if checkpoint and loop["step"] % cfg.checkpoint_every == 0 and not last and not stopped:
            loop["np_rng"] = rng.bit_generator.state
            if rank == 0:
                _save_checkpoint(checkpoint.folder, model, optim, best_state, loop)
            if world > 1:
                torch.distributed.barrier()
        if stopped:
            break
    bar.close()
    if loop["best"] < float("inf"):
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(steps=loop["step"], seconds=loop["seconds"], best=loop["best"], stopped_early=stopped,
                     history=loop["history"], losses=losses, resumed_from=resumed)


def _save_checkpoint(path: Path, model, optim, best_state, loop: dict) -> None:
    from safetensors.torch import save_file, save_model

    with atomic_dir(path, replace=INTERNAL) as tmp:
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
