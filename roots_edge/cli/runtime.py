"""`roots-edge run | chat | predict | devices`: artifacts through the one runtime API (no torch needed)."""
from __future__ import annotations

import itertools
import sys

import click

from roots_edge.core.text import check_unicode

from roots_edge.cli.common import echo_json, json_option, sampling_options

device_option = click.option("--device", default="auto", show_default=True,
                             type=click.Choice(["auto", "cpu", "gpu", "apple"]), help="Where to run.")
threads_option = click.option("--threads", type=int, help="CPU threads (default: the backend's choice).")


def _load(artifact, device, threads, context=None):
    from roots_edge.runtimes import load

    return load(artifact, device=device, threads=threads, context=context)


context_option = click.option("--context", type=int, help="Tokens the model holds, prompt and reply (and what "
                              "llama.cpp sizes its KV cache for); default 2048 or the model's maximum if smaller.")


def text_stdin() -> None:
    """Read standard input as Python reads argv: bytes that are not UTF-8 arrive as surrogate escapes (0xff as
    U+DCFF), so the one text check names the line, the character and the byte, instead of input() failing
    with a UnicodeDecodeError traceback."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")


def _run_guarded(fn):
    """Run `fn` now (a streamed generation starts inside it): its RootsEdgeError becomes a one-line CLI error.
    Anything else is a bug and keeps its traceback."""
    from roots_edge.core.errors import RootsEdgeError

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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (text, finish_reason, prompt_tokens, "
              "completion_tokens, tokens_per_second) instead of streaming.")
@click.option("--quiet", is_flag=True, help="No closing line (tokens, tokens/s, why it stopped) on stderr.")
def run(artifact, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, truncate, context, device, threads,
        as_json, quiet):
    """Stream the continuation of PROMPT from ARTIFACT (GGUF, ONNX, OpenVINO or a model folder)."""
    check_unicode(prompt, "--prompt")          # before loading: argv bytes that were not UTF-8

    def go():
        model = _load(artifact, device, threads, context)
        options = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop=stop, truncate=truncate)
        if as_json:
            return echo_json(model.generate(prompt, max_new_tokens, details=True, **options))
        pieces = model.generate(prompt, max_new_tokens, stream=True, **options)
        first = next(pieces, "")           # a prompt the context cannot hold fails here, before it is echoed
        click.echo(prompt + first, nl=False)
        for piece in pieces:
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()
        if not quiet:
            click.echo(closing_line(pieces.outcome), err=True)

    _run_guarded(go)


def closing_line(outcome) -> str:
    """`[40 tokens, 52.3 tokens/s; finish: length]`, with why when the context ended it, on stderr."""
    rate = f", {outcome.tokens_per_second:.1f} tokens/s" if outcome.tokens_per_second else ""
    why = {"stop": "stop (end of text)", "length": "length (-n reached)"}.get(outcome.finish_reason,
                                                                         outcome.finish_reason)
    if outcome.finish_reason == "stop" and outcome.detail:
        why = f"stop ({outcome.detail})"
    if outcome.finish_reason == "context":
        why = f"context ({outcome.detail}; --context N opens a larger one where the model allows)"
    cut = (f"; the prompt was cut to its last {outcome.prompt_tokens} of {outcome.prompt_tokens_given} tokens"
           if outcome.prompt_tokens_given > outcome.prompt_tokens else "")
    return f"[{outcome.completion_tokens} tokens{rate}; finish: {why}{cut}]"


@click.command()
@click.argument("artifact")
@sampling_options(256, stop_help="Stop string (repeatable).")
@click.option("--system", help="A system message that opens the conversation (chat-template mode).")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False),
              help="A Jinja chat template file, for a model that carries none (or to replace its own).")
@context_option
@device_option
@threads_option
@click.option("--quiet", is_flag=True, help="No notes on stderr (a reply cut by -n or the context, tokens/s at the end).")
def chat(artifact, max_new_tokens, temperature, top_k, top_p, seed, stop, system, chat_template, context, device,
         threads, quiet):
    """A REPL over ARTIFACT that keeps the conversation. Turns go through the model's own chat template (GGUF
    header, chat_template.jinja or tokenizer_config.json) and replies end at its end-of-turn tokens; a model
    without one continues a plain-text transcript. An empty line or Ctrl-D ends it."""
    if system:
        check_unicode(system, "--system")
    text_stdin()

    def go():
        from pathlib import Path

        from roots_edge.core.errors import ContextOverflowError

        model = _load(artifact, device, threads, context)
        template = Path(chat_template).read_text(encoding="utf-8") if chat_template else None
        templated = bool(template or model.backend.chat_facts().template)
        ctx = model.info().get("context_length", 0)
        mode = "its chat template" if templated else \
            "plain text (it has no chat template; --chat-template FILE.jinja gives it one)"
        click.echo(f"chatting with {artifact} ({ctx} tokens of context) through {mode}; an empty line ends")
        messages = [{"role": "system", "content": system}] if system else []
        history = ""
        outcomes = []
        for turn in itertools.count(1):
            try:
                line = input("you> ")
            except EOFError:
                break
            if not line.strip():
                break
            check_unicode(line, f"line {turn} of standard input")
            click.echo("model> ", nl=False)
            reply = ""
            if templated:
                messages.append({"role": "user", "content": line})
                while True:
                    try:
                        pieces = model.chat(messages, max_new_tokens, chat_template=template, temperature=temperature,
                                            top_k=top_k, top_p=top_p, seed=seed, stop=stop, stream=True)
                        first = next(pieces, "")
                        break
                    except ContextOverflowError:   # forget the oldest exchange, keep the system message
                        start = 1 if system else 0
                        if len(messages) - start <= 1:
                            raise
                        del messages[start:start + 2]
                for piece in (first, *pieces):
                    reply += piece
                    click.echo(piece, nl=False)
                    sys.stdout.flush()
                messages.append({"role": "assistant", "content": reply.strip()})
            else:
                history += f"{line}\n"
                pieces = model.generate(history, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                        seed=seed, stop=("\n\n", *stop), truncate=True, stream=True)
                for piece in pieces:
                    reply += piece
                    click.echo(piece, nl=False)
                    sys.stdout.flush()
                history += reply.strip("\n") + "\n\n"
            click.echo()
            outcomes.append(pieces.outcome)
            if not quiet and pieces.outcome.finish_reason in ("length", "context"):
                click.echo(closing_line(pieces.outcome), err=True)     # a reply that did not end by itself
        if not quiet and outcomes:
            click.echo(chat_summary(outcomes), err=True)

    _run_guarded(go)


def chat_summary(outcomes) -> str:
    """`[3 replies, 96 tokens, 48.1 tokens/s]`: decode speed over the whole conversation."""
    tokens = sum(o.completion_tokens for o in outcomes)
    decoded = sum(max(o.completion_tokens - 1, 0) for o in outcomes)
    seconds = sum(o.seconds - (o.first_token_seconds or 0.0) for o in outcomes)
    rate = f", {decoded / seconds:.1f} tokens/s" if decoded and seconds > 0 else ""
    return f"[{len(outcomes)} repl{'y' if len(outcomes) == 1 else 'ies'}, {tokens} tokens{rate}]"


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

    from roots_edge.data.corpora import read_text

    texts = [check_unicode(t, f"TEXT {i}") for i, t in enumerate(texts, 1)]
    if text_file:
        texts += [line.strip() for line in read_text(Path(text_file)).splitlines() if line.strip()]
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
    from roots_edge.runtimes import backends
    from roots_edge.runtimes.devices import present

    table = {}
    for backend in sorted(cls.facts.module for cls in backends().values()):
        try:
            table[backend] = present(backend)
        except ImportError as exc:
            table[backend] = {"error": f"not installed ({exc.name})"}
    if as_json:
        return echo_json(table)
    for backend, offered in table.items():
        click.echo(f"{backend:<12} " + ", ".join(f"{d}: {s}" for d, s in offered.items()))
