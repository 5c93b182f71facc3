"""Shared pieces of the CLI: config options, one-line errors."""

from __future__ import annotations

import functools
import sys

import click

from elmd.config import ELMDConfig, format_config, load_config
from elmd.errors import ElmdError


def config_options(fn):
    """Add ``--config NAME|PATH`` and repeatable ``--set key=value`` to a command."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a config field, e.g. --set train.lr=1e-4 (repeatable).")(fn)
    fn = click.option("--config", "config", default="tiny", show_default=True,
                      help="Preset name (configs/NAME.yaml) or path to a YAML config.")(fn)
    return fn


VERBOSE = {"on": False}
"""Set by ``elmd -v``: commands print their whole resolved config."""


def resolve(config: str, overrides, quiet: bool = False) -> ELMDConfig:
    """Load the config and say so in one line (the whole resolved config with ``elmd -v``; every
    command also saves it beside what it writes)."""
    cfg = load_config(config, list(overrides))
    if not quiet:
        extra = f" + {len(overrides)} override{'s' * (len(overrides) != 1)}: {' '.join(overrides)}" if overrides else ""
        click.echo(f"# config: {config}{extra}  (elmd -v ... prints it whole)", err=True)
        if VERBOSE["on"]:
            click.echo(format_config(cfg, compact=True), err=True)
    return cfg


def os_error_line(e: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and what to check."""
    where = f"{e.filename}" + (f" -> {e.filename2}" if getattr(e, "filename2", None) else "") if e.filename else ""
    what = e.strerror or str(e)
    fixes = {FileExistsError: "it is in the way: choose another path or move it",
             FileNotFoundError: "check the path", IsADirectoryError: "give a file, not a folder",
             NotADirectoryError: "a part of the path is a file, not a folder: check the path",
             PermissionError: "check the permissions, or choose another path"}
    fix = next((v for k, v in fixes.items() if isinstance(e, k)), "check the path and the disk")
    return f"{where}: {what} — {fix}" if where else f"{what} — {fix}"


def friendly_errors(fn):
    """Turn :class:`ElmdError` into ``error: <message>`` on stderr and exit code 2; an
    :class:`OSError` (a path in the way, no permission, disk full) likewise, as one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ElmdError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except OSError as e:
            click.echo(f"error: {os_error_line(e)}", err=True)
            sys.exit(2)

    return wrapper
