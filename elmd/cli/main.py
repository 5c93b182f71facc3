"""Entry point of the ``elmd`` console script."""

from __future__ import annotations

import importlib

import click

from elmd import __version__

# Command modules: each defines a click command or group named `cli` registered under its name.
COMMANDS = {
    "config": "elmd.cli.config_cmd",
    "data": "elmd.cli.data_cmd",
    "retriever": "elmd.cli.retriever_cmd",
    "index": "elmd.cli.index_cmd",
    "convert": "elmd.cli.convert_cmd",
    "features": "elmd.cli.features_cmd",
    "lm": "elmd.cli.lm_cmd",
    "train": "elmd.cli.train_cmd",
    "generate": "elmd.cli.generate_cmd",
    "evaluate": "elmd.cli.evaluate_cmd",
    "report": "elmd.cli.report_cmd",
    "chat": "elmd.cli.chat_cmd",
    "plan": "elmd.cli.plan_cmd",
    "sticker": "elmd.cli.sticker_cmd",
    "avatar": "elmd.cli.avatar_cmd",
    "serve": "elmd.cli.serve_cmd",
}


def _load(name: str):
    """The command object of ``name``; None while its module is not written yet."""
    module = COMMANDS[name]
    try:
        return importlib.import_module(module).cli
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise


class LazyGroup(click.Group):
    """Imports a command's module only when it is used (keeps `elmd --help` fast)."""

    def list_commands(self, ctx):
        return sorted(n for n in COMMANDS if _load(n) is not None)

    def get_command(self, ctx, name):
        return _load(name) if name in COMMANDS else None


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="elmd")
@click.option("-v", "--verbose", is_flag=True, help="Print each command's whole resolved config.")
def main(verbose):
    """ELMD: emotion-guided multimodal dialogue generation (ICMR 2024).

    First steps: `elmd data prepare`, then `elmd index build`.
    """
    from elmd.cli.common import VERBOSE

    VERBOSE["on"] = verbose


if __name__ == "__main__":
    main()
