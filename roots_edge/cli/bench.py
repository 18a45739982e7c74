"""`roots-edge bench`: latency, throughput, memory, size and quality of artifacts, side by side."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("artifacts", nargs=-1)
@click.option("--reference", type=click.Path(), help="PyTorch model folder: benchmarked as one more row and "
              "used for KL / top-1 / agreement (default: the artifacts' source model, from their manifest).")
@click.option("--threads", type=int, help="CPU threads for every backend.")
@click.option("--runs", type=int, default=3, show_default=True, help="Measured runs per artifact (mean ± sd).")
@click.option("--warmup", type=int, default=1, show_default=True, help="Unmeasured runs first.")
@click.option("--prompt-tokens", type=int, default=128, show_default=True, help="pp{P}.")
@click.option("--gen-tokens", type=int, default=64, show_default=True, help="tg{G}.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu", "apple"]),
              help="Where every artifact runs.")
@click.option("--data", type=click.Path(), help="Held-out text (decoders) or text,label rows (classifiers).")
@click.option("--no-reference", is_flag=True, help="Skip the PyTorch row and the quality comparison.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(), help="Write the table here as well.")
@click.option("--plot", type=click.Path(), help="Write a PNG comparing the artifacts.")
def bench(artifacts, reference, threads, runs, warmup, prompt_tokens, gen_tokens, device, data, no_reference, fmt,
          output, plot):
    """Benchmark ARTIFACTs (GGUF, ONNX, OpenVINO folders; a model folder counts too)."""

    from roots_edge.paths import write_text_atomic
    from roots_edge.runtimes.bench import BenchConfig, BenchError, bench as run_bench
    from roots_edge.runtimes.bench.report import plot as draw, to_csv, to_json, to_markdown

    if not artifacts and not reference:
        raise click.UsageError("give at least one ARTIFACT (or --reference)")
    if reference is None and not no_reference:
        from roots_edge.manifest import Manifest

        for a in artifacts:
            m = Manifest.read(a) if Path(a).is_dir() else None
            if m is not None:
                src = Path(m.source.path)
                if (src / "config.json").is_file():
                    reference = str(src)
                    break
    texts = truth = None
    if data:
        from roots_edge.data import looks_labeled, read_corpus, read_labeled

        if looks_labeled(data):
            rows = read_labeled(data)
            texts, truth = rows.texts, rows.labels
        else:
            texts = read_corpus([data]).val
    cfg = BenchConfig(prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, runs=runs, warmup=warmup, threads=threads,
                      device=device)
    try:
        result = run_bench([Path(a) for a in artifacts], cfg,
                           None if no_reference else (Path(reference) if reference else None), texts, truth)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    text = {"md": to_markdown, "csv": to_csv, "json": to_json}[fmt](result)
    click.echo(text)
    if fmt != "md":                      # the markdown table carries them itself
        for warning in result["warnings"]:
            click.echo(f"warning: {warning}", err=True)
    if output:
        write_text_atomic(Path(output), text)
    if plot:
        click.echo(f"plot: {draw(result, Path(plot))}", err=True)
