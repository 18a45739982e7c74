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
    """Describe MODEL: a model folder (family, sizes, labels, how it was made), an exported artifact (target,
    bits/weight, its verification against PyTorch, whether its files are intact) or a bare GGUF file."""
    from pathlib import Path

    if model is not None and Path(model).exists():
        from roots_edge.runtimes import detect_format

        if detect_format(model) != "torch":       # an artifact or a .gguf / .onnx / .xml file: no torch needed
            data = artifact_info(Path(model))
            return echo_json(data) if as_json else describe_artifact(data)
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise click.ClickException("describing a model folder needs torch, which this installation does not have "
                                   "(a bundle or a runtime-only install); install roots-edge[train], or give an "
                                   "artifact")
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


def artifact_info(path) -> dict:
    """What an artifact is and how it was verified, read from its manifest and files without loading it (no torch,
    no runtime library): its format, the weight bytes, the manifest, whether every listed file is still the one
    that was exported (sizes and sha256; a damaged artifact is refused with what is wrong), and for a GGUF file its
    header."""
    from roots_edge.formats.manifest import Manifest
    from roots_edge.runtimes import detect_format, facts
    from roots_edge.runtimes.base import check_files_against_manifest

    fmt = detect_format(path)
    folder = path if path.is_dir() else path.parent
    manifest = Manifest.read(folder)
    data = {"path": str(path), "format": fmt, "weight_bytes": facts(fmt).weight_bytes(path), "manifest": None}
    if fmt == "gguf":
        from roots_edge.formats.gguf import find_gguf, precision_name, read_header

        header = read_header(find_gguf(path))
        data["gguf"] = {k: v for k, v in header.items() if k not in ("index", "chat_template")}
        data["gguf"]["precision"] = precision_name(header.get("file_type"))
        data["gguf"]["chat_template"] = header.get("chat_template") is not None
    if manifest is not None:
        check_files_against_manifest(folder, "Export it again, or copy the whole artifact folder again.")
        data["manifest"] = manifest.to_dict()
        data["files_match_manifest"] = True
    return data


def describe_artifact(data: dict) -> None:
    m, g = data["manifest"], data.get("gguf")
    click.echo(f"path          {data['path']}")
    if g:
        click.echo(f"gguf          {g['architecture']} {g['precision']}: {g['layers']} layers, {g['elements']:,} weights "
                   f"in {g['tensors']} tensors, context {g['context_length']}, "
                   f"{'a' if g['chat_template'] else 'no'} chat template")
    if m is None:
        click.echo(f"format        {data['format']}, {data['weight_bytes'] / 1e6:.1f} MB of weights")
        click.echo("manifest      none: not exported by roots-edge, so no verification record (`roots-edge bench "
                   "ARTIFACT --reference MODEL` measures its drift from a PyTorch model)")
        return
    src, ver = m["source"], m["verification"]
    click.echo(f"target        {m['target']} ({m['format']}, {m['precision']})")
    click.echo(f"source        {src['path']} ({src['architecture']}, {src['family']}, {src['task']})"
               + (f"; labels {', '.join(src['labels'])}" if src.get("labels") else ""))
    params = f", {m['parameters']:,} parameters" if m.get("parameters") else ""
    click.echo(f"size          {m['size_bytes'] / 1e6:.1f} MB in {len(m['files'])} file{'s' * (len(m['files']) != 1)}, "
               f"{m['bits_per_weight']:.2f} bits/weight{params}")
    if ver.get("passed") is None:
        click.echo(f"verification  skipped ({ver.get('skipped') or 'not run'})")
    else:
        metrics, bound = ver.get("metrics", {}), ver.get("bound", {})
        shown = ", ".join(f"{k} {v:.4g}" + (f" (bound {bound[k]:g})" if bound.get(k) is not None else "")
                          for k, v in metrics.items() if k not in ("kind", "n") and isinstance(v, (int, float)))
        cpu = ver.get("cpu") or {}
        where = f"; on {cpu.get('model', '?')} ({', '.join(cpu.get('flags', []))})" if cpu else ""
        click.echo(f"verification  {'passed' if ver['passed'] else 'FAILED, kept with --allow-drift'}: against "
                   f"PyTorch on {ver.get('texts')} texts ({metrics.get('n')} positions): {shown}{where}")
        for failure in ver.get("failures", []):
            click.echo(f"              {failure}")
    click.echo(f"files         all {len(m['files'])} match the manifest (sizes and sha256)")
    libs = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    click.echo(f"exported      {m['created']} in {m['export_seconds']} s" + (f" with {libs}" if libs else ""))


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
