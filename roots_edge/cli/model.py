"""`roots-edge info | eval | generate | predict`: the PyTorch reference side."""
from __future__ import annotations

import click

from roots_edge.cli.common import download_option, echo_json, json_option, model_option, sampling_options


def _load(model, download):
    from roots_edge.model import LanguageModel

    return LanguageModel.from_pretrained(model, allow_download=download)


@click.command()
@click.argument("model", required=False)
@download_option
@json_option
def info(model, download, as_json):
    """Describe MODEL: family, architecture, sizes, labels and its training record."""
    lm = _load(model, download)
    data = lm.info()
    if as_json:
        return echo_json(data)
    s = lm.spec
    click.echo(f"path          {data['path']}")
    click.echo(f"architecture  {s.architecture} ({s.family}, {s.task})")
    click.echo(f"parameters    {data['parameters']:,}")
    click.echo(f"layers        {s.num_layers}, hidden {s.hidden_size}, ffn {s.intermediate_size}, "
               f"heads {s.num_heads}/{s.num_kv_heads} kv, vocab {s.vocab_size}, context {s.context_length}")
    if s.labels:
        click.echo(f"labels        {', '.join(s.labels)}")
    m = data.get("metrics") or {}
    if "val_perplexity" in m:
        click.echo(f"validation    perplexity {m['val_perplexity']:.2f} (unigram baseline {m['unigram_perplexity']:.2f})")


@click.command("eval")
@click.argument("model", required=False)
@click.option("--data", type=click.Path(), help="Text (LM) or text,label rows (classifier); "
              "default for an LM trained on the default corpus: its validation split.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@download_option
@json_option
def eval_cmd(model, data, text_column, label_column, download, as_json):
    """Evaluate MODEL: perplexity (LM) or accuracy, macro-F1 and confusion matrix (classifier)."""
    from roots_edge.data.corpora import labeled_set, text_corpus
    from roots_edge.core.errors import DataError

    lm = _load(model, download)
    if lm.spec.task == "classification":
        if not data:
            raise DataError("evaluating a classifier needs --data with text,label rows")
        rows = labeled_set(data, text_column, label_column)[0]
        rep = lm.evaluate(rows.texts, rows.labels)
        return echo_json(rep.to_dict()) if as_json else click.echo(rep.table())
    if lm.spec.task != "causal-lm":
        raise DataError(f"{lm.spec.architecture} is an encoder without a head: nothing to evaluate; finetune it first")
    if data:
        texts = text_corpus(data).documents
    else:
        sources = (lm.record.get("recipe") or {}).get("corpus")
        if not sources:
            raise DataError("this model has no record of its corpus; pass --data")
        texts = text_corpus(sources).val
    rep = lm.evaluate(texts)
    if as_json:
        return echo_json(rep.to_dict())
    click.echo(f"perplexity {rep.perplexity:.3f} over {rep.tokens:,} tokens")


@click.command()
@click.argument("prompt")
@model_option
@sampling_options(40)
@download_option
def generate(prompt, model, max_new_tokens, temperature, top_k, top_p, seed, stop, download):
    """Continue PROMPT with the PyTorch reference model."""
    lm = _load(model, download)
    click.echo(prompt + lm.generate(prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                                    top_p=top_p, seed=seed, stop=stop))
