"""`roots-edge demo`: the main job on the embedded default model."""
from __future__ import annotations

import time

import click


@click.command()
@click.option("--prompt", default="Return the", show_default=True)
@click.option("-n", "--max-new-tokens", type=int, default=40, show_default=True)
def demo(prompt, max_new_tokens):
    """Build (or reuse) the default model, report its quality and generate a sample."""
    from roots_edge.model import LanguageModel

    t0 = time.perf_counter()
    lm = LanguageModel.from_pretrained()
    m = lm.record["metrics"]
    click.echo(f"\ndefault model: {lm.path}  ({m['parameters'] / 1e6:.2f} M parameters, "
               f"{m['train_steps']} steps in {m['train_seconds']:.0f} s)")
    click.echo(f"validation perplexity  {m['val_perplexity']:8.2f}  ({m['val_tokens']:,} held-out tokens)")
    click.echo(f"unigram baseline       {m['unigram_perplexity']:8.2f}  "
               f"({m['unigram_perplexity'] / m['val_perplexity']:.1f}x worse)")
    click.echo(f"\nsample (greedy): {prompt}{lm.generate(prompt, max_new_tokens)}")
    click.echo(f"\ndone in {time.perf_counter() - t0:.1f} s")
