"""`elmd convert chatglm2`: official ChatGLM2-6B checkpoint -> transformers GLM folder."""

from __future__ import annotations

import click

from elmd.cli.common import friendly_errors


@click.group(name="convert")
def cli():
    """Convert downloaded checkpoints to the layouts elmd loads."""


@cli.command("chatglm2")
@click.option("--src", required=True, type=click.Path(file_okay=False),
              help="Folder of the downloaded THUDM/chatglm2-6b (config.json + weight shards).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder (GlmForCausalLM safetensors shards); then set llm.path to it.")
@friendly_errors
def chatglm2(src, out):
    """Convert ChatGLM2-6B shard by shard (resumable); prints the folder to use as llm.path."""
    from elmd.convert import convert_chatglm2

    path = convert_chatglm2(src, out)
    click.echo(f"converted to {path} — use --set llm.path={path} --set llm.tokenizer={path}/tokenizer.model")
