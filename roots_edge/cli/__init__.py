"""The `roots-edge` command. Subcommands live one group per module and load only when invoked,
so `roots-edge --help` imports neither torch nor any runtime library."""
from __future__ import annotations

import importlib
import importlib.util

import click

# What a verb needs beyond the runtime: PyTorch and transformers. An installation without them (`pip install
# roots-edge[gguf]`, a deployment bundle) offers the other verbs, and names the extra for these.
TRAIN_EXTRA = ("train", ("torch", "transformers"))
NEEDS = {name: TRAIN_EXTRA for name in ("train", "finetune", "eval", "generate", "import", "export", "demo",
                                        "prune", "distill", "compress")}

# command name -> (module, attribute, one-line help shown by --help without importing the module)
COMMANDS = {
    "train": ("train", "train", "Pretrain a Llama-architecture LM from a recipe on a corpus."),
    "finetune": ("train", "finetune", "Finetune a model on text (causal LM) or on text,label rows (classifier)."),
    "eval": ("model", "eval_cmd", "Perplexity of an LM, or accuracy / macro-F1 / confusion of a classifier."),
    "generate": ("model", "generate", "Generate text with the PyTorch reference model."),
    "predict": ("runtime", "predict", "Classify texts with a classifier artifact or model folder."),
    "run": ("runtime", "run", "Stream generated text from an artifact (GGUF, ONNX, OpenVINO, model folder)."),
    "chat": ("runtime", "chat", "A chat REPL over an artifact that keeps the conversation."),
    "devices": ("runtime", "devices", "What each runtime backend offers on this machine."),
    "info": ("model", "info", "Describe a model folder, an artifact (its verification, its files) or a GGUF file."),
    "import": ("export", "import_cmd", "Turn a GGUF file (any llama.cpp type) into a Hugging Face folder to export."),
    "export": ("export", "export", "Export a model to ONNX, OpenVINO IR or GGUF targets, verified against PyTorch."),
    "bench": ("bench", "bench", "Benchmark artifacts side by side: speed, memory, size and quality."),
    "demo": ("demo", "demo", "The main job on the embedded default model, end to end."),
    "prune": ("compress", "prune", "Prune heads, KV groups, FFN channels, layers, hidden width: a smaller dense model."),
    "distill": ("compress", "distill", "Distill a teacher into a student (LM logits, soft labels or embeddings)."),
    "compress": ("compress", "compress", "Run a compression recipe: finetune, prune, distill, export, bench, report."),
    "bundle": ("deploy", "bundle", "Bundle artifacts with the runtime and wheels for a device (Raspberry Pi ...)."),
}


def missing(name: str) -> tuple[str, list[str]] | None:
    """(extra, missing modules) when command `name` cannot run in this installation, else None. Looks the
    modules up without importing them."""
    extra, modules = NEEDS.get(name, (None, ()))
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return (extra, absent) if absent else None


def unavailable(name: str, extra: str, absent: list[str]) -> click.Command:
    """A stand-in for a command this installation cannot run: it says why and what to install."""
    def refuse(args):
        raise click.ClickException(
            f"`roots-edge {name}` needs {', '.join(absent)}, which this installation does not have (a deployment "
            f"bundle or a runtime-only install). Install roots-edge[{extra}] for it; artifacts run here with "
            f"`run`, `chat`, `predict` and `bench`")
    return click.Command(name, callback=refuse, context_settings={"ignore_unknown_options": True},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)], add_help_option=False)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        lack = missing(name)
        if lack:
            return unavailable(name, *lack)
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"roots_edge.cli.{module}"), attr)

    def format_commands(self, ctx, formatter):
        names = self.list_commands(ctx)
        absent = {name: lack for name in names if (lack := missing(name))}
        rows = [(name, COMMANDS[name][2]) for name in names if name not in absent]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        if absent:
            extras = sorted({extra for extra, _ in absent.values()})
            with formatter.section(f"Not in this installation (install roots-edge[{','.join(extras)}])"):
                formatter.write_text(", ".join(absent))

    def invoke(self, ctx):
        from roots_edge.core.errors import RootsEdgeError

        try:
            return super().invoke(ctx)
        except RootsEdgeError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt as exc:       # Ctrl-C, or SIGTERM through cli/interrupt.py: no traceback
            _interrupted(exc)


def _interrupted(exc: KeyboardInterrupt):
    status = getattr(exc, "status", 130)
    click.echo(f"\ninterrupted ({'SIGTERM' if status == 143 else 'SIGINT'}): stopped; nothing partial was left",
               err=True)
    raise SystemExit(status) from None


# Libraries' advice to their own developers, not to our users: deprecations inside transformers and torch's
# tracer, transformers' config notes (`loss_type=None`) and shard progress bars, INFO records of gguf-py and
# openvino-tokenizers.
# Set before any of them is imported (transformers reads its verbosity at import); errors still show.
QUIET_LOGGERS = ("gguf", "openvino_tokenizers", "nncf", "transformers", "torch.onnx", "onnxruntime")


def quiet_libraries() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # "Writing model shards" for a one-file model
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(transformers|torch|onnx|onnxruntime|nncf|"
                                                                    r"openvino|optimum|huggingface_hub)(\.|$)")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="roots-edge")
def main():
    """roots-edge: train, compress, export and run small language models on edge devices.

    Every command that takes a MODEL defaults to the embedded default model, built on first use
    from the Python standard library's docstrings and cached in $ROOTS_EDGE_HOME.
    """
    quiet_libraries()


def run() -> None:
    """The console script: `main` with SIGINT / SIGTERM stopping any command promptly (cli/interrupt.py), also
    while click parses the arguments (where click itself would print "Aborted!" and exit 1)."""
    import sys

    from roots_edge.cli.interrupt import install

    install()
    try:
        status = main(standalone_mode=False)
    except click.exceptions.Abort as exc:
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        _interrupted(exc.__context__)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:                   # `roots-edge run ... | head`: the reader left; as click does
        sys.stdout = None
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
