"""`roots-edge demo`: the main job on the embedded default model, end to end."""
from __future__ import annotations

import time

import click

DEMO_TARGETS = ("gguf-q4", "onnx-int8", "openvino-int4")


@click.command()
@click.option("--prompt", default="Return the", show_default=True)
@click.option("-n", "--max-new-tokens", type=int, default=40, show_default=True)
@click.option("-t", "--target", "targets", multiple=True, default=DEMO_TARGETS, show_default=True,
              help="Targets to export the default model to.")
@click.option("--bench-runs", type=int, default=3, show_default=True, help="Benchmark runs per artifact (0: skip).")
def demo(prompt, max_new_tokens, targets, bench_runs):
    """Build (or reuse) the default model, report its quality, generate a sample, export and verify it."""
    from roots_edge.exporters import load_source, plan_exports, run_exports, verification_table
    from roots_edge.model import LanguageModel
    from roots_edge.core.paths import home

    t0 = time.perf_counter()
    lm = LanguageModel.from_pretrained()
    m = lm.record["metrics"]
    click.echo(f"\ndefault model: {lm.path}  ({m['parameters'] / 1e6:.2f} M parameters, "
               f"{m['train_steps']} steps in {m['train_seconds']:.0f} s)")
    click.echo(f"validation perplexity  {m['val_perplexity']:8.2f}  ({m['val_tokens']:,} held-out tokens)")
    click.echo(f"unigram baseline       {m['unigram_perplexity']:8.2f}  "
               f"({m['unigram_perplexity'] / m['val_perplexity']:.1f}x worse)")
    click.echo(f"\nsample (greedy): {prompt}{lm.generate(prompt, max_new_tokens)}\n")

    source = load_source(lm)
    jobs = plan_exports(list(targets), lm.spec, lambda _name, target: home() / "artifacts" / "default" / target.name,
                        force=True)
    manifests = run_exports(source, jobs, reuse=True, log=click.echo)
    click.echo("\nverification against PyTorch (held-out validation text):")
    click.echo(verification_table(manifests))
    if bench_runs > 0:
        from roots_edge.runtimes.bench import BenchConfig, bench
        from roots_edge.runtimes.bench.report import to_markdown

        click.echo("\nbenchmark (this machine; PyTorch eager reference as the first row):")
        result = bench([job.out for job in jobs], BenchConfig(runs=bench_runs), reference=lm.path, texts=source.heldout)
        click.echo(to_markdown(result))
    click.echo(f"\ndone in {time.perf_counter() - t0:.1f} s")
