"""`elmd config show`: print a resolved config with every field's documentation."""

from __future__ import annotations

import click

from elmd.cli.common import config_options, friendly_errors
from elmd.config import format_config, load_config


@click.group(name="config")
def cli():
    """Inspect configurations."""


@cli.command("show")
@config_options
@click.option("--docs/--no-docs", default=True, help="Print field documentation as comments.")
@friendly_errors
def show(config, overrides, docs):
    """Print the resolved config (preset + overrides) as YAML."""
    click.echo(format_config(load_config(config, list(overrides)), with_docs=docs), nl=False)
