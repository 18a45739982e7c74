"""Options shared by several commands."""
from __future__ import annotations

import json

import click

model_option = click.option("-m", "--model", "model", default=None, metavar="MODEL",
                            help="Model folder (default: the embedded default model).")
download_option = click.option("--download", is_flag=True,
                               help="Allow fetching a Hugging Face Hub id (only when online).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
