"""`roots-edge bench`: latency, throughput, memory, size and quality of artifacts, side by side."""
from __future__ import annotations

from pathlib import Path

import click

from roots_edge.cli.common import check_output_file

count = click.IntRange(min=1)


def check_outputs(output: str | None, plot: str | None, force: bool) -> None:
    """-o and --plot (`check_output_file` each), and not the same file."""
    from roots_edge.core.errors import OutputPathError

    paths = [check_output_file(value, force, option, example) for value, option, example in
             ((output, "-o/--output", "bench.md"), (plot, "--plot", "bench.png")) if value is not None]
    if len(paths) == 2 and paths[0].resolve() == paths[1].resolve():
        raise OutputPathError(f"-o and --plot name the same file ({output}); give two different files")


@click.command()
@click.argument("artifacts", nargs=-1)
@click.option("--reference", type=click.Path(), help="PyTorch model folder: benchmarked as one more row and "
              "used for KL / top-1 / agreement (default: the artifacts' source model, from their manifest).")
@click.option("--threads", type=count, help="CPU threads for every backend.")
@click.option("--runs", type=count, default=3, show_default=True, help="Measured runs per artifact (mean ± sd).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Unmeasured runs first.")
@click.option("--prompt-tokens", type=count, default=128, show_default=True, help="pp{P}.")
@click.option("--gen-tokens", type=count, default=64, show_default=True, help="tg{G}.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu", "apple"]),
              help="Where every artifact runs.")
@click.option("--data", type=click.Path(), help="Held-out text (decoders) or text,label rows (classifiers).")
@click.option("--no-reference", is_flag=True, help="Skip the PyTorch row and the quality comparison.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(), help="Write the table here as well (a file that does not exist "
              "yet, unless --force).")
@click.option("--plot", type=click.Path(), help="Write a PNG comparing the artifacts (a file that does not exist "
              "yet, unless --force).")
@click.option("--force", is_flag=True, help="Replace an existing -o / --plot file (never a folder).")
def bench(artifacts, reference, threads, runs, warmup, prompt_tokens, gen_tokens, device, data, no_reference, fmt,
          output, plot, force):
    """Benchmark ARTIFACTs (GGUF, ONNX, OpenVINO folders; a model folder counts too).

    An artifact that cannot be measured (damaged, its device absent, the run past its context) fails its own
    row, with the reason in the table's "error" column (JSON: the row's "error"); the other rows are still
    measured, and the command then exits with status 1, so that a script or CI job sees the failure. A path
    that does not exist, and an -o / --plot that cannot be written, are refused before anything runs."""

    from roots_edge.core.paths import write_text_atomic
    from roots_edge.runtimes.bench import BenchConfig, bench as run_bench
    from roots_edge.runtimes.bench.harness import source_reference
    from roots_edge.runtimes.bench.report import failures, plot as draw, to_csv, to_json, to_markdown

    if not artifacts and not reference:
        raise click.UsageError("give at least one ARTIFACT (or --reference)")
    check_outputs(output, plot, force)
    if reference is None and not no_reference:
        reference = source_reference([Path(a) for a in artifacts])
    texts = truth = None
    if data:
        from roots_edge.data.corpora import labeled_set, looks_labeled, text_corpus

        if looks_labeled(data):
            rows = labeled_set(data)[0]
            texts, truth = rows.texts, rows.labels
        else:
            texts = text_corpus(data).val
    cfg = BenchConfig(prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, runs=runs, warmup=warmup, threads=threads,
                      device=device)
    result = run_bench([Path(a) for a in artifacts], cfg,
                       None if no_reference else (Path(reference) if reference else None), texts, truth)
    text = {"md": to_markdown, "csv": to_csv, "json": to_json}[fmt](result)
    click.echo(text)
    if fmt != "md":                      # the markdown table carries them itself
        for warning in result["warnings"]:
            click.echo(f"warning: {warning}", err=True)
    if output:
        write_text_atomic(Path(output), text)
    failed = failures(result)
    if plot and len(failed) < len(result["rows"]):
        click.echo(f"plot: {draw(result, Path(plot))}", err=True)
    if failed:
        unplotted = "; no row was measured, so --plot was not written" if plot and len(failed) == len(result["rows"]) \
            else ""
        raise click.ClickException(f"{len(failed)} of {len(result['rows'])} rows failed: " + "; ".join(failed)
                                   + unplotted)
