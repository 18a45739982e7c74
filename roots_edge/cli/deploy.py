"""`roots-edge bundle`: artifacts + the torch-free runtime + wheels, for a device, installable offline."""
from __future__ import annotations

from pathlib import Path

import click

from roots_edge.deploy.bundle import BUNDLE, PLATFORMS

from roots_edge.core.paths import check_output
from roots_edge.cli.common import echo_json


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--platform", "platform_name", required=True, type=click.Choice(list(PLATFORMS)),
              help="The device the bundle installs on.")
@click.option("-o", "--output", type=click.Path(), required=True, help="Bundle folder to write.")
@click.option("--tar", is_flag=True, help="Also write OUTPUT.tar.gz.")
@click.option("--python", help="The device's Python, e.g. 3.11 (default: the platform's, else this one).")
@click.option("--no-measure", is_flag=True, help="Skip measuring each artifact's peak memory here.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--json", "as_json", is_flag=True, help="Print the bundle record as JSON.")
def bundle(artifacts, platform_name, output, tar, python, no_measure, force, as_json):
    """Bundle ARTIFACTS for a device: copy the folder (or tarball) over, ./install.sh offline, ./run."""
    from roots_edge.deploy.bundle import bundle as make_bundle

    check_output(output, force, BUNDLE)
    info = make_bundle([Path(a) for a in artifacts], platform_name, Path(output), python=python, tar=tar,
                       force=force, measure=not no_measure,
                       log=lambda msg: click.echo(msg, err=True))
    if as_json:
        echo_json(info)
        return
    click.echo(f"bundle for {platform_name} (Python {info['python']}): {output}  "
               f"{info['bytes'] / 1e6:,.1f} MB, {len(info['wheels'])} wheels, {info['seconds']:.0f} s")
    if "tarball" in info:
        click.echo(f"tarball: {info['tarball']}  {info['tarball_bytes'] / 1e6:,.1f} MB")
    steps = r".\install.ps1, then .\run.cmd --help" if platform_name.startswith("windows") else \
        "./install.sh, then ./run --help"
    click.echo(f"on the device: {steps} (see {Path(output) / 'README.md'})")
