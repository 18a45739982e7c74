"""Options shared by several commands."""
from __future__ import annotations

import json
from pathlib import Path

import click

from roots_edge.core.paths import writable

model_option = click.option("-m", "--model", "model", default=None, metavar="MODEL",
                            help="Model folder (default: the embedded default model).")
download_option = click.option("--download", is_flag=True,
                               help="Allow fetching a Hugging Face Hub id (only when online).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def check_output_file(value: str, force: bool, option: str, example: str) -> Path:
    """One file output, before anything is measured: not empty, never an existing folder, absent unless `force`
    (which then replaces that file only), and under a folder this user can write."""
    from roots_edge.core.errors import OutputExistsError, OutputPathError

    if str(value).strip() == "":
        raise OutputPathError(f"{option} is empty; give a file to write, e.g. {example}")
    path = Path(value).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; give a file to write, e.g. {path / example} "
                              f"(--force replaces a file, never a folder)")
    if path.exists() and not force:
        raise OutputExistsError(f"{option} {path} already exists; choose another file or pass --force to replace it")
    return writable(path, option)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def sampling_options(max_new_tokens: int, stop_help: str = "Stop string (repeatable)."):
    """-n, --temperature, --top-k, --top-p, --seed and --stop, the same for every command that generates."""
    options = [
        click.option("-n", "--max-new-tokens", type=int, default=max_new_tokens, show_default=True),
        click.option("--temperature", type=float, default=0.0, show_default=True, help="0 is greedy."),
        click.option("--top-k", type=int, default=0, help="Sample among the k likeliest tokens (0: no limit)."),
        click.option("--top-p", type=float, default=1.0, help="Sample among the likeliest tokens holding this "
                                                               "much probability (1: no limit)."),
        click.option("--seed", type=int, help="Sampler seed: one seed gives one text on every backend."),
        click.option("--stop", multiple=True, help=stop_help),
    ]

    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply
