"""`roots-edge run | chat | predict | devices`: artifacts through the one runtime API (no torch needed)."""
from __future__ import annotations

import sys

import click

from .common import echo_json, json_option, sampling_options

device_option = click.option("--device", default="auto", show_default=True,
                             type=click.Choice(["auto", "cpu", "gpu", "apple"]), help="Where to run.")
threads_option = click.option("--threads", type=int, help="CPU threads (default: the backend's choice).")


def _load(artifact, device, threads, context=None):
    from roots_edge.runtimes import load

    return load(artifact, device=device, threads=threads, context=context)


context_option = click.option("--context", type=int, help="Tokens the model holds, prompt and reply (and what "
                              "llama.cpp sizes its KV cache for); default 2048 or the model's maximum if smaller.")


def _run_guarded(fn):
    """Run `fn` now (a streamed generation starts inside it): its RootsEdgeError becomes a one-line CLI error.
    Anything else is a bug and keeps its traceback."""
    from roots_edge.errors import RootsEdgeError

    try:
        return fn()
    except RootsEdgeError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("artifact")
@click.option("-p", "--prompt", required=True)
@sampling_options(64)
@click.option("--truncate", is_flag=True, help="Keep the prompt's tail if it exceeds the context.")
@context_option
@device_option
@threads_option
def run(artifact, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, truncate, context, device, threads):
    """Stream the continuation of PROMPT from ARTIFACT (GGUF, ONNX, OpenVINO or a model folder)."""
    def go():
        model = _load(artifact, device, threads, context)
        click.echo(prompt, nl=False)
        for piece in model.generate(prompt, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                    seed=seed, stop=stop, truncate=truncate, stream=True):
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()

    _run_guarded(go)


@click.command()
@click.argument("artifact")
@sampling_options(96, stop_help="Stop string (repeatable; a blank line always ends a reply).")
@context_option
@device_option
@threads_option
def chat(artifact, max_new_tokens, temperature, top_k, top_p, seed, stop, context, device, threads):
    """A REPL over ARTIFACT that keeps the conversation (the model sees all earlier turns). Empty line or
    Ctrl-D ends it."""
    def go():
        model = _load(artifact, device, threads, context)
        ctx = model.info().get("context_length", 0)
        history = ""
        click.echo(f"chatting with {artifact} ({ctx} tokens of context); an empty line ends")
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            if not line.strip():
                break
            history += f"{line}\n"
            click.echo("model> ", nl=False)
            reply = ""
            for piece in model.generate(history, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                        seed=seed, stop=("\n\n", *stop), truncate=True, stream=True):
                reply += piece
                click.echo(piece, nl=False)
                sys.stdout.flush()
            click.echo()
            history += reply.strip("\n") + "\n\n"

    _run_guarded(go)


@click.command()
@click.argument("artifact")
@click.argument("texts", nargs=-1)
@click.option("-f", "--file", "text_file", type=click.Path(exists=True, dir_okay=False),
              help="Also classify this file's non-empty lines, one text per line.")
@device_option
@threads_option
@json_option
def predict(artifact, texts, text_file, device, threads, as_json):
    """Classify TEXTS (and/or the lines of --file) with a classifier ARTIFACT (or model folder)."""
    from pathlib import Path

    texts = list(texts)
    if text_file:
        texts += [line.strip() for line in Path(text_file).read_text().splitlines() if line.strip()]
    if not texts:
        raise click.UsageError("give TEXTS or --file FILE")

    def go():
        preds = _load(artifact, device, threads).classify(texts)
        if as_json:
            return echo_json(preds)
        for text, p in zip(texts, preds):
            click.echo(f"{p['label']}\t{p['score']:.4f}\t{text}")

    _run_guarded(go)


@click.command()
@json_option
def devices(as_json):
    """What each backend offers on this machine (cpu, gpu, apple)."""
    from roots_edge.runtimes.devices import present

    table = {}
    for backend in ("onnxruntime", "openvino", "llamacpp", "torch"):
        try:
            table[backend] = present(backend)
        except ImportError as exc:
            table[backend] = {"error": f"not installed ({exc.name})"}
    if as_json:
        return echo_json(table)
    for backend, offered in table.items():
        click.echo(f"{backend:<12} " + ", ".join(f"{d}: {s}" for d, s in offered.items()))
