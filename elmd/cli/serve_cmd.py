"""`elmd serve`: an OpenAI-compatible API and a web chat page over a trained run (:mod:`elmd.serve`)."""

from __future__ import annotations

import click

from elmd.cli.common import friendly_errors


@click.command("serve")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False), help="A stage output folder of `elmd train`.")
@click.option("--heads", default="", metavar="NAME[,NAME]", help="Downstream heads on every reply: sticker, avatar.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (non-loopback needs --api-key).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--api-key", default="", envvar="ELMD_API_KEY", help="Bearer token for the API (and the page's password) [env ELMD_API_KEY].")
@click.option("--max-batch", default=8, show_default=True, type=int, help="Most requests per model call.")
@click.option("--max-wait-ms", default=20.0, show_default=True, type=float, help="Longest wait to fill a batch.")
@click.option("--max-queue", default=64, show_default=True, type=int, help="Most waiting requests (then 503).")
@click.option("--timeout", "timeout_s", default=120.0, show_default=True, type=float, help="Per-request timeout (s).")
@click.option("--no-page", is_flag=True, help="API only (no web page at /).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a field of the run's saved config, e.g. --set generate.max_new_tokens=64 (repeatable).")
@friendly_errors
def cli(checkpoint, heads, host, port, api_key, max_batch, max_wait_ms, max_queue, timeout_s, no_page, device,
        overrides):
    """Answer OpenAI chat-completion requests and serve a chat page; Ctrl-C stops it."""
    from elmd.serve import ServeConfig, serve

    cfg = ServeConfig(host=host, port=port, api_key=api_key, heads=tuple(h.strip() for h in heads.split(",") if h.strip()),
                      max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, request_timeout_s=timeout_s,
                      page=not no_page)
    serve(checkpoint, cfg, list(overrides), device, log=lambda m: click.echo(m, err=True))
