"""`roots-edge train` and `roots-edge finetune`."""
from __future__ import annotations

import click
from click.core import ParameterSource

from roots_edge.data.folder import MODEL_FOLDER

from roots_edge.core.paths import check_output
from roots_edge.cli.common import download_option, echo_json


@click.command()
@click.option("--recipe", default="default", show_default=True, help="Built-in recipe name or a .toml file.")
@click.option("--data", "data", multiple=True, type=click.Path(), help="Corpus files (.txt, .jsonl, .csv); default: the recipe's.")
@click.option("-o", "--output", type=click.Path(), required=True, help="Model folder to write.")
@click.option("--steps", type=int, help="Override the recipe's training steps.")
@click.option("--seq-len", type=int, help="Override the training window.")
@click.option("--lr", type=float, help="Override the peak learning rate.")
@click.option("--seed", type=int, help="Override the seed.")
@click.option("--vocab-size", type=int, help="Override the tokenizer vocabulary size.")
@click.option("--restart", is_flag=True, help="Ignore a checkpoint left by an interrupted run.")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(recipe, data, output, steps, seq_len, lr, seed, vocab_size, restart, force, quiet):
    """Pretrain a Llama-architecture causal LM from a RECIPE (resumes an interrupted run)."""
    from roots_edge.train.pretrain import build_from_recipe
    from roots_edge.train.fit import init_distributed
    from roots_edge.train.recipe import load_recipe

    init_distributed()  # launched by torchrun: join its process group (gloo); alone: nothing

    r = load_recipe(recipe)
    if data:
        r.corpus = list(data)
    for section, key, value in [("train", "steps", steps), ("train", "seq_len", seq_len), ("train", "lr", lr),
                                ("train", "seed", seed), ("tokenizer", "vocab_size", vocab_size)]:
        if value is not None:
            setattr(getattr(r, section), key, value)
    r.check(f"recipe {recipe!r} with the command-line overrides")
    out = check_output(output, force, MODEL_FOLDER)
    build_from_recipe(r, out, progress=not quiet, restart=restart, overwrite=force)


@click.command()
@click.argument("model", required=False)
@click.option("--data", type=click.Path(), required=True, help="CSV/JSONL with text,label rows (classifier) or text; "
              "stdlib-topics: the standard library's docstrings labeled by module (train split).")
@click.option("-o", "--output", type=click.Path(), required=True, help="Model folder to write.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Classifier: maximum epochs (early stopping).")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Causal LM: training steps.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate (default depends on the model).")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@download_option
def finetune(model, data, output, text_column, label_column, epochs, steps, lr, force, quiet, download):
    """Finetune MODEL (default: the embedded default) on --data and save it to --output."""
    from roots_edge.data.corpora import LABELED_NAMES, finetune_kind, labeled_set, text_corpus
    from roots_edge.model import LanguageModel

    out = check_output(output, force, MODEL_FOLDER)
    label_given = click.get_current_context().get_parameter_source("label_column") is not ParameterSource.DEFAULT
    # the data is read and checked before the model is loaded: a wrong file fails in a second, not after loading
    kind = "classification" if data in LABELED_NAMES else finetune_kind(data, text_column, label_column, label_given)
    rows = labeled_set(data, text_column, label_column)[0] if kind == "classification" else text_corpus(data)
    lm = LanguageModel.from_pretrained(model, allow_download=download)
    if kind == "classification":
        kwargs = {"epochs": epochs} | ({"lr": lr} if lr else {})
        metrics = lm.finetune(rows.texts, rows.labels, progress=not quiet, **kwargs)
        click.echo(f"labels: {lm.spec.labels}")
        for split in ("train", "val"):
            if split in metrics:
                click.echo(f"{split}: accuracy {metrics[split]['accuracy']:.4f}, macro-F1 {metrics[split]['macro_f1']:.4f}")
    else:
        kwargs = {"steps": steps} | ({"lr": lr} if lr else {})
        metrics = lm.finetune(rows.documents, progress=not quiet, **kwargs)
        echo_json(metrics)
    lm.save_pretrained(out, overwrite=force)
    click.echo(f"saved {out}")
