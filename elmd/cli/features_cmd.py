"""`elmd features extract`: cache the frozen ViT + Q-Former features of every video (Sec. 3.4);
`elmd features pretrain-encoder`: pre-train the tiny stand-in encoder on synthetic faces."""

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
    """Encode every video of DATA once; a second run only reads the cache. Under `torchrun
    --nproc_per_node N -m elmd.cli.main features extract ...` the videos are split across the N
    processes, which fill the same cache."""
    from elmd.models.features import extract_features
    from elmd.training.dist import cleanup, init_distributed

    info = init_distributed("cpu")  # joins torchrun's group (gloo); a single process otherwise
    cfg = resolve(config, overrides, quiet=not info.is_main)
    out = out or cfg.vision.feature_cache
    if not out:
        raise ElmdError("no cache folder — pass --out DIR or set vision.feature_cache")
    try:
        stats = extract_features(data, out, cfg.vision)
    finally:
        cleanup(info)
    if not info.is_main:
        return
    click.echo(f"videos: {stats.hits + stats.misses + stats.zeroed}  cached before (hits): {stats.hits}  "
               f"encoded now (misses): {stats.misses}  zeroed (bad videos): {stats.zeroed}  -> {out}")
    for p in stats.bad_videos:
        click.echo(f"  zeroed: {p}", err=True)


@cli.command("pretrain-encoder")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder (BLIP-2 layout); then run with --set vision.path=OUT.")
@click.option("--force", is_flag=True, help="Retrain even when OUT holds an encoder with the same settings.")
@config_options
@friendly_errors
def pretrain_encoder(out, force, config, overrides):
    """Pre-train the tiny ViT + Q-Former on synthetic face attributes (vision_pretrain.*; a CPU
    stand-in for BLIP-2's pre-training; not needed with a real vision.path)."""
    from elmd.training.vision_pretrain import pretrain_tiny_encoder

    cfg = resolve(config, overrides)
    meta = pretrain_tiny_encoder(cfg.vision_pretrain, cfg.vision, out, force=force)
    r2 = meta["valid_r2"]
    how = "reused (same settings)" if meta["reused"] else f"trained in {meta['seconds']:.0f} s"
    click.echo(f"tiny encoder {how}: held-out R^2 mean {sum(r2.values()) / max(len(r2), 1):.3f} "
               f"({', '.join(f'{k} {v:.2f}' for k, v in r2.items())}) -> {out}")
