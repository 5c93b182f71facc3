"""`elmd sticker ...`: the bundled sticker set, sticker libraries, StickerConv import, a tiny SD folder."""

from __future__ import annotations

import click

from elmd.cli.common import config_options, friendly_errors, resolve


@click.group(name="sticker")
def cli():
    """Sticker head (PEGS-style): draw / build sticker libraries, import StickerConv."""


@cli.command("draw-library")
@click.option("--out", default="data/sample/stickers", show_default=True, help="Folder for images/ and stickers.jsonl (git-ignored).")
@click.option("--size", type=int, default=128, show_default=True, help="Sticker side in pixels.")
@click.option("--poses", type=int, default=2, show_default=True, help="Poses per character and emotion (1-3).")
@click.option("--force", is_flag=True, help="Redraw every sticker even when the cached one matches.")
@friendly_errors
def draw_library_cmd(out, size, poses, force):
    """Draw the bundled set: 7 emotions x 8 cartoon characters x poses, with Chinese descriptions."""
    from elmd.heads.sticker.draw import draw_library

    counts = draw_library(out, size=size, poses=poses, force=force)
    click.echo(" ".join(f"{k}={v}" for k, v in counts.items()) + f"  ->  {out}/stickers.jsonl")


@cli.command("build-library")
@click.option("--images", required=True, help="Folder the stickers.jsonl image paths are relative to.")
@click.option("--meta", required=True, help="stickers.jsonl: {id, image, emotion, description, recommendation?} per line.")
@click.option("--out", required=True, help="Library folder to write (index.faiss, table.jsonl, meta.json).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--encoder", type=click.Choice(["visual", "open_clip"]), default=None, help="Image encoder [sticker.image_encoder].")
@click.option("--encoder-path", default=None, help="BLIP-2 folder / open_clip checkpoint [sticker.encoder_path; visual: vision.path].")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Images per encoder batch.")
@config_options
@friendly_errors
def build_library_cmd(images, meta, out, overwrite, encoder, encoder_path, batch_size, config, overrides):
    """Embed every sticker with the frozen image encoder into a FAISS library folder."""
    from elmd.heads.sticker.workflows import build_library_from_config

    extra = ([f"sticker.image_encoder={encoder}"] if encoder else []) + ([f"sticker.encoder_path={encoder_path}"] if encoder_path else [])
    cfg = resolve(config, list(overrides) + extra)
    rep = build_library_from_config(images, meta, out, cfg, overwrite=overwrite, batch_size=batch_size)
    click.echo(f"{rep.size} stickers, {rep.dim}-d, in {rep.seconds:.1f} s (encoding {rep.encode_seconds:.1f} s); "
               f"per emotion {rep.per_emotion}  ->  {rep.out}")


@cli.command("import-stickerconv")
@click.option("--input", "input_path", required=True, help="StickerConv conversations (JSON list or JSONL of sessions).")
@click.option("--out", required=True, help="Canonical dialogue JSONL to write (replies carry a 'sticker' field).")
@click.option("--stickers-out", default=None, help="Also write the unique stickers as stickers.jsonl rows.")
@click.option("--default-emotion", default=None, help="Label of replies without a sticker (default: unlabelled, context only).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@friendly_errors
def import_stickerconv_cmd(input_path, out, stickers_out, default_emotion, overwrite):
    """Turn StickerConv's conversation JSON into canonical dialogues with stickers."""
    from elmd.heads.sticker.workflows import import_stickerconv

    r = import_stickerconv(input_path, out, stickers_out, default_emotion=default_emotion, overwrite=overwrite)
    click.echo(f"{r.dialogues} dialogues, {r.turns} turns ({r.turns_with_sticker} with a sticker); "
               f"{r.replies_with_sticker}/{r.replies} replies with a sticker; {r.stickers} unique stickers  ->  {out}")


@cli.command("make-tiny-sd")
@click.option("--out", required=True, help="Folder for a tiny random Stable Diffusion pipeline (diffusers layout).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@friendly_errors
def make_tiny_sd_cmd(out, seed, overwrite):
    """Write a seeded random SD pipeline that runs in seconds on a CPU (tests, tiny preset)."""
    from elmd.heads.sticker.diffusion import write_tiny_sd

    click.echo(f"wrote {write_tiny_sd(out, seed=seed, overwrite=overwrite)}")


@cli.command("attach")
@click.option("--data", "data_path", required=True, help="Canonical dialogue JSONL (e.g. data/sample/dialogues.jsonl).")
@click.option("--stickers", "meta", default="data/sample/stickers/stickers.jsonl", show_default=True, help="stickers.jsonl to pick from.")
@click.option("--out", required=True, help="Dialogue JSONL to write, replies with a 'sticker' field.")
@click.option("--share", type=float, default=0.6, show_default=True, help="Share of labelled replies that get a sticker.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@friendly_errors
def attach_cmd(data_path, meta, out, share, seed, overwrite):
    """Give a share of the replies a sticker of their own emotion (deterministic), like StickerConv's system side."""
    from elmd.heads.sticker.data import attach_stickers_file

    c = attach_stickers_file(data_path, meta, out, share=share, seed=seed, overwrite=overwrite)
    click.echo(f"{c['with_sticker']}/{c['replies']} replies got a sticker"
               + (f" ({c['no_sticker_of_emotion']} drawn but no sticker of their emotion)" if c["no_sticker_of_emotion"] else "")
               + f"  ->  {out}")


@cli.command("search")
@click.option("--library", required=True, help="Library folder (`elmd sticker build-library`).")
@click.option("--image", required=True, help="Query image: the stickers that look most like it are listed.")
@click.option("--emotion", default=None, help="Reply emotion that steers the choice (label id).")
@click.option("-k", "k", type=int, default=5, show_default=True)
@click.option("--mode", type=click.Choice(["prefer", "filter", "ignore"]), default="prefer", show_default=True)
@config_options
@friendly_errors
def search_cmd(library, image, emotion, k, mode, config, overrides):
    """List the library stickers nearest to an image (checks a library and its encoder)."""
    from elmd.heads.sticker.workflows import search_library

    cfg = resolve(config, overrides, quiet=True)
    for h in search_library(library, image, cfg, emotion=emotion, k=k, mode=mode):
        click.echo(f"{h.score:.4f}  {h.emotion:<8}  {h.id}  {h.image}")
