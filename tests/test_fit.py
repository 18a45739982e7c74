"""The one training loop: schedules, and the same loss curve on 1 process and on 2 (torchrun, DDP over gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from roots_edge.train.fit import FitConfig

# Trains a tiny Llama (built from a config, seeded) for 8 steps with a global batch of 4; rank 0 writes the
# per-step (global) losses and the evaluations.
SCRIPT = """
import json, sys, numpy as np, torch
from transformers import LlamaConfig, LlamaForCausalLM
from roots_edge.train.fit import init_distributed
from roots_edge.train.recipe import TrainConfig
from roots_edge.train.lm import TokenStream, train_lm

world, rank = init_distributed()
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
tokens = np.tile(np.arange(64), 80)[np.random.default_rng(0).integers(0, 32, 5000)]   # a learnable stream
streams = TokenStream(tokens[:4500], tokens[4500:])
cfg = TrainConfig(steps=8, batch_size=4, seq_len=16, lr=1e-2, warmup=0.25, eval_every=4, patience=10,
                  checkpoint_every=10**9, max_eval_tokens=256)
result = train_lm(model, streams, cfg, progress=False)
if rank == 0:
    json.dump({"world": world, "losses": result.losses, "history": result.history}, open(sys.argv[1], "w"))
"""


def _run(tmp_path, procs: int) -> dict:
    script, out = tmp_path / "train.py", tmp_path / f"out{procs}.json"
    script.write_text(SCRIPT)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    cmd = [*(launcher if procs > 1 else [sys.executable]), str(script), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_processes_give_one_process_loss_curve(tmp_path):
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    assert (one["world"], two["world"]) == (1, 2)
    assert len(one["losses"]) == len(two["losses"]) == 8
    assert one["losses"][-1] < one["losses"][0]                      # it learns
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-4)
    assert [h["val_nll"] for h in one["history"]] == pytest.approx([h["val_nll"] for h in two["history"]], rel=1e-4)


def test_schedules():
    cos = FitConfig(steps=100, lr=1.0, warmup=0.1, decay="cosine", floor=0.1)
    assert cos.lr_at(0) == pytest.approx(0.1) and cos.lr_at(9) == pytest.approx(1.0)
    assert cos.lr_at(99) == pytest.approx(0.1, abs=1e-3)
    lin = FitConfig(steps=100, lr=2.0, decay="linear", floor=0.05)
    assert lin.lr_at(0) == 2.0 and lin.lr_at(50) == pytest.approx(1.0) and lin.lr_at(99) == pytest.approx(0.1)
