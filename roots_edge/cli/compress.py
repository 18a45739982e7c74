"""`roots-edge prune`, `roots-edge distill` and `roots-edge compress`."""
from __future__ import annotations

from pathlib import Path

import click

from roots_edge.data.folder import MODEL_FOLDER

from roots_edge.core.paths import check_output
from roots_edge.cli.common import echo_json


@click.command()
@click.argument("model")
@click.option("--heads", type=float, default=1.0, show_default=True, help="Fraction of query heads to keep.")
@click.option("--kv-heads", type=float, default=1.0, show_default=True,
              help="Fraction of key/value groups to keep (grouped-query attention).")
@click.option("--ffn", type=float, default=1.0, show_default=True, help="Fraction of FFN channels to keep.")
@click.option("--layers", help="Layers to keep: a count (the most important) or indices, e.g. 0,1,5.")
@click.option("--hidden", type=float, default=1.0, show_default=True,
              help="Fraction of hidden (embedding) channels to keep (decoders).")
@click.option("--multiple-of", type=int, default=1, show_default=True,
              help="Round FFN and hidden widths down to a multiple (256 keeps llama.cpp's K-quants everywhere).")
@click.option("--calibration", type=click.Path(), help="Text to rank by (default: the standard-library docstrings).")
@click.option("-o", "--output", type=click.Path(), required=True, help="Model folder to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prune(model, heads, kv_heads, ffn, layers, hidden, multiple_of, calibration, output, force, quiet):
    """Prune MODEL to a smaller dense model of the same family, ranked on calibration text."""
    from roots_edge.pipelines.compress import text_data
    from roots_edge.model import LanguageModel
    from roots_edge.core.config import build
    from roots_edge.train.prune import PruneConfig, parse_layers

    cfg = build(PruneConfig, dict(heads=heads, kv_heads=kv_heads, ffn=ffn, layers=parse_layers(layers),
                                  hidden=hidden, multiple_of=multiple_of), "prune")
    out = check_output(output, force, MODEL_FOLDER)
    texts = text_data(calibration, "train") if calibration else None
    lm = LanguageModel.from_pretrained(model)
    small = lm.prune(cfg, texts, progress=not quiet)
    small.save_pretrained(out, overwrite=force)
    rec = small.record["pruned"]
    for axis, kept in rec["kept"].items():
        n = len(kept["kept"]) if isinstance(kept["kept"], list) else kept["kept"]
        click.echo(f"{axis:9s} {n} of {kept['of']}")
    p = rec["parameters"]
    click.echo(f"parameters {p['after'] / 1e6:.2f} M of {p['before'] / 1e6:.2f} M ({p['kept']:.1%}) -> {out}")


@click.command()
@click.option("--teacher", required=True, help="Teacher model folder.")
@click.option("--student", required=True, help="Student model folder (e.g. from `roots-edge prune`).")
@click.option("--data", required=True, help="Text (.txt/.jsonl/.csv) for LMs and embedders; text,label rows for "
              "classifiers; or stdlib-docstrings / stdlib-topics.")
@click.option("--unlabeled", type=click.Path(), help="Classifiers: more text that the teacher labels.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("-o", "--output", type=click.Path(), required=True, help="Model folder to write.")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option("--lr", type=float, help="Peak learning rate (default 1e-3 for LMs, 1e-4 for encoders).")
@click.option("--batch-size", type=int)
@click.option("--seq-len", type=int, default=256, show_default=True, help="LMs: tokens per window.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="Weight of the teacher's term (1 - alpha: labels / next tokens).")
@click.option("--top-k", type=int, default=0, show_default=True,
              help="LMs: compute the teacher's top-k logits once and cache them (0: run the teacher every step).")
@click.option("--embed-loss", type=click.Choice(["cosine", "mse"]), default="cosine", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--restart", is_flag=True, help="Ignore a checkpoint left by an interrupted run.")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def distill(teacher, student, data, unlabeled, text_column, label_column, output, steps, lr, batch_size, seq_len,
            temperature, alpha, top_k, embed_loss, seed, restart, force, quiet):
    """Distill TEACHER into STUDENT on --data (resumes an interrupted run; works under torchrun)."""
    import shutil

    from roots_edge.pipelines.compress import text_data
    from roots_edge.data.corpora import labeled_set
    from roots_edge.core.config import build
    from roots_edge.train.distill import DistillConfig
    from roots_edge.train.fit import init_distributed
    from roots_edge.model import LanguageModel

    _, rank = init_distributed()
    options = dict(steps=steps, lr=lr, batch_size=batch_size, seq_len=seq_len, temperature=temperature, alpha=alpha,
                   top_k=top_k, embed_loss=embed_loss, seed=seed)
    build(DistillConfig, options, "distill")
    out = check_output(output, force, MODEL_FOLDER)
    t = LanguageModel.from_pretrained(teacher)
    s = LanguageModel.from_pretrained(student)
    ckpt = out.parent / f".{out.name}.checkpoint"
    if restart and rank == 0:
        from roots_edge.train.distill import topk_cache

        shutil.rmtree(ckpt, ignore_errors=True)
        topk_cache(ckpt).unlink(missing_ok=True)
    kwargs = dict(checkpoint_dir=ckpt, progress=not quiet, **options)
    if s.spec.task == "classification":
        rows = labeled_set(data, text_column, label_column)[0]
        extra = text_data(unlabeled) if unlabeled else []
        metrics = s.distill(t, rows.texts, rows.labels, unlabeled=extra, **kwargs)
    else:
        metrics = s.distill(t, text_data(data), **kwargs)
    if rank == 0:
        from roots_edge.train.distill import topk_cache

        s.save_pretrained(out, overwrite=force)
        shutil.rmtree(ckpt, ignore_errors=True)
        topk_cache(ckpt).unlink(missing_ok=True)
        echo_json({k: v for k, v in metrics.items() if k not in ("history", "config")})
        click.echo(f"saved {out}")


@click.command()
@click.argument("model")
@click.option("--recipe", required=True, help="A compression recipe (.toml) or a shipped one: default-compress, "
              "minilm-compress.")
@click.option("-o", "--output", type=click.Path(), required=True, help="Folder for every stage and the report.")
@click.option("--force", is_flag=True, help="Write into an existing output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def compress(model, recipe, output, force, quiet):
    """Run a compression RECIPE on MODEL: finetune -> prune -> distill -> export -> bench, with a report."""
    from roots_edge.pipelines.compress import RUN_OUTPUT, load_compress_recipe, run_recipe

    r = load_compress_recipe(recipe)
    check_output(output, force, RUN_OUTPUT)
    report = run_recipe(model, r, Path(output), force=force, progress=not quiet, log=click.echo)
    click.echo(f"report: {Path(output) / 'report.md'} ({report['seconds']:.0f} s)")
