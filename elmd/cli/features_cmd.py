"""`elmd features extract`: cache the frozen ViT + Q-Former features of every video (Sec. 3.4)."""

from __future__ import annotations

import click

from elmd.cli.common import config_options, friendly_errors, resolve
from elmd.errors import ElmdError


@click.group("features")
def cli():
    """Visual feature cache (frozen ViT + Q-Former outputs, m x 32 x q per video)."""


@cli.command("extract")
@click.option("--data", "data", required=True, type=click.Path(dir_okay=False), help="Dialogue JSONL whose turn videos are encoded.")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Cache folder (default: vision.feature_cache of the config).")
@config_options
@friendly_errors
def extract(data, out, config, overrides):
    """Encode every video of DATA once; a second run only reads the cache."""
    from elmd.models.features import extract_features

    cfg = resolve(config, overrides)
    out = out or cfg.vision.feature_cache
    if not out:
        raise ElmdError("no cache folder — pass --out DIR or set vision.feature_cache")
    stats = extract_features(data, out, cfg.vision)
    click.echo(f"videos: {stats.hits + stats.misses + stats.zeroed}  cached before (hits): {stats.hits}  "
               f"encoded now (misses): {stats.misses}  zeroed (bad videos): {stats.zeroed}  -> {out}")
    for p in stats.bad_videos:
        click.echo(f"  zeroed: {p}", err=True)
