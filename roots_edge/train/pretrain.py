"""Build a decoder from a recipe: corpus -> tokenizer -> Llama model -> trained, evaluated folder.

The embedded default is `models/default.toml` on the standard library's docstrings, cached in
`$ROOTS_EDGE_HOME/models/default` and built on first use.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from roots_edge.data.corpora import Corpus, text_corpus
from roots_edge.data.folder import RECORD, check_folder, default_model_dir, read_record, save_folder
from roots_edge.train.recipe import Recipe, load_recipe


def checkpoint_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.checkpoint"


def build_from_recipe(recipe: Recipe, out: Path, *, corpus: Corpus | None = None, progress: bool = True,
                      restart: bool = False, overwrite: bool = False, log=print) -> Path:
    """Train `recipe` into the model folder `out`; resumes from `out`'s checkpoint if one is there. Under
    `torchrun` every process builds the same corpus, tokenizer and model, `fit` splits each batch between
    them, and rank 0 alone logs and writes."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from roots_edge.train.fit import distributed
    from roots_edge.data.tokenizer import to_transformers, train_bpe
    from roots_edge.train.lm import TokenStream, llama_config, run_key, stream_nll, train_lm, unigram_nll

    world, rank = distributed()
    if rank > 0:
        log = lambda *_: None  # noqa: E731
    out = Path(out)
    t_start = time.perf_counter()
    corpus = corpus or text_corpus(recipe.corpus)
    log(f"corpus: {corpus.source}: {len(corpus.train)} train / {len(corpus.val)} validation documents, "
        f"{corpus.n_chars / 1e6:.2f} M characters (sha256 {corpus.sha256[:12]})")
    tok = train_bpe(corpus.train, recipe.tokenizer.vocab_size, recipe.tokenizer.min_frequency)
    streams = TokenStream.encode(tok, corpus)
    log(f"tokenizer: byte-level BPE, {tok.get_vocab_size()} tokens; {len(streams.train):,} train / "
        f"{len(streams.val):,} validation tokens")
    cfg = llama_config(recipe.model, tok.get_vocab_size(), tok.token_to_id("<s>"), tok.token_to_id("</s>"),
                       tok.token_to_id("<pad>"))
    torch.manual_seed(recipe.train.seed)
    model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: Llama, {recipe.model.num_layers} layers, hidden {recipe.model.hidden_size}, "
        f"{n_params / 1e6:.2f} M parameters")
    ckpt = checkpoint_dir_for(out)
    if restart and ckpt.exists() and rank == 0:
        shutil.rmtree(ckpt)
    if world > 1:
        torch.distributed.barrier()
    key = run_key(recipe.to_dict(), corpus.sha256, tok.get_vocab_size())
    result = train_lm(model, streams, recipe.train, checkpoint_dir=ckpt, key=key, progress=progress,
                      desc=recipe.name)
    val_nll, targets = stream_nll(model, streams.val, recipe.train.seq_len, recipe.train.max_eval_tokens)
    base_nll = unigram_nll(streams.train, targets, tok.get_vocab_size())
    metrics = {
        "val_perplexity": round(math.exp(val_nll), 3),
        "unigram_perplexity": round(math.exp(base_nll), 3),
        "val_tokens": int(len(targets)),
        "train_steps": result.steps,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 1),
        "parameters": n_params,
        "history": result.history,
    }
    model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                                               pad_token_id=cfg.pad_token_id)
    record = {
        "kind": "pretrained",
        "recipe": recipe.to_dict(),
        "data": {"source": corpus.source, "sha256": corpus.sha256, **corpus.extra,
                 "train_documents": len(corpus.train), "val_documents": len(corpus.val),
                 "train_tokens": int(len(streams.train)), "val_tokens": int(len(streams.val))},
        "seed": recipe.train.seed,
        "metrics": metrics,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - t_start, 1),
    }
    if rank == 0:
        save_folder(model, to_transformers(tok, recipe.model.context_length), out, record, overwrite=overwrite)
        shutil.rmtree(ckpt, ignore_errors=True)
    if world > 1:
        torch.distributed.barrier()
    log(f"validation perplexity {metrics['val_perplexity']:.1f} vs unigram baseline "
        f"{metrics['unigram_perplexity']:.1f} ({result.steps} steps, {result.seconds:.0f} s) -> {out}")
    return out


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            pass
        yield


def ensure_default_model(*, progress: bool = True, log=print) -> Path:
    """The default model folder, trained on first use (about 3 minutes on 2 cores) and cached."""
    out = default_model_dir()
    recipe = load_recipe("default")
    with _lock(out.parent / ".default.lock"):
        if (out / RECORD).is_file() and read_record(out).get("recipe") == recipe.to_dict():
            check_folder(out)
            return out
        log(f"building the default model into {out} (first use; cached afterwards)")
        return build_from_recipe(recipe, out, progress=progress, overwrite=True, log=log)
