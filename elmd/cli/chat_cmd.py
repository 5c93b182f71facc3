"""`elmd chat`: interactive multi-turn chat with a trained ELMD model (predicted emotion, retrieved
demonstration and response per turn; history kept; Ctrl-D ends it)."""

from __future__ import annotations

import click

from elmd.cli.common import friendly_errors


@click.command("chat")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False), help="A stage output folder of `elmd train`.")
@click.option("--video", default=None, type=click.Path(dir_okay=False), help="Video of your first utterance (later: a line '/video PATH').")
@click.option("--background", default="", help="Background B of the conversation.")
@click.option("--show-prompt", is_flag=True, help="Print each turn's full prompt (debugging).")
@click.option("--heads", default="", metavar="NAME[,NAME]", help="Downstream heads (sticker, avatar): their media per turn.")
@click.option("--media", default=None, type=click.Path(file_okay=False),
              help="Folder for the heads' media [default: a new temporary folder].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a field of the run's saved config, e.g. --set generate.greedy=true (repeatable).")
@friendly_errors
def cli(checkpoint, video, background, show_prompt, heads, media, overrides):
    """Type an utterance per line; end with Ctrl-D."""
    import sys

    from elmd.evaluation.chat import open_chat, run_chat

    session = open_chat(checkpoint, list(overrides), background, heads=[h for h in heads.split(",") if h.strip()],
                        media_dir=media)
    click.echo(f"elmd chat — {checkpoint} (stage {session.pipeline.spec.name}); one utterance per line, Ctrl-D to quit",
               err=True)
    try:
        run_chat(session, _lines(sys.stdin), click.echo, video, show_prompt)
    except KeyboardInterrupt:
        pass
    click.echo("bye")


def _lines(stream):
    """Lines of ``stream``; on a terminal with a prompt and line editing (input()), until Ctrl-D."""
    if not stream.isatty():
        yield from stream
        return
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    while True:
        try:
            yield input("用户> ")
        except EOFError:
            click.echo()
            return
