"""`elmd data ...`: prepare corpora into canonical splits, show stats, generate sample videos."""

from __future__ import annotations

import json
from pathlib import Path

import click

from elmd.cli.common import config_options, friendly_errors, resolve
from elmd.data.prepare import FORMATS, format_stats, leak_warnings, prepare
from elmd.errors import DataError


@click.group(name="data")
def cli():
    """Prepare dialogue data (canonical JSONL splits)."""


@cli.command("prepare")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Input format.")
@click.option("--input", "input_path", required=True, help="M3ED annotation.json, CPED *_split.csv or canonical JSONL.")
@click.option("--out", required=True, help="Output folder for train/valid/test.jsonl, stats.json, config.yaml.")
@click.option("--split-by", type=click.Choice(["dialogue", "series"]), default=None, help="Split unit [data.split_by].")
@click.option("--seed", type=int, default=None, help="Split seed [data.seed].")
@click.option("--keep-negative-other", is_flag=True, help="CPED: keep 'negative-other' as its own label instead of dropping it.")
@click.option("--video-template", default=None,
              help="Video path per sentence, e.g. 'videos/{series}/{dialogue_id}/{utterance_id}.mp4' (M3ED/CPED).")
@click.option("--encoding", default=None, metavar="NAME",
              help="Text encoding of --input when it is not UTF-8, e.g. gbk (default: UTF-8, BOM optional).")
@click.option("--overwrite", is_flag=True, help="Replace other splits already in --out (the same splits are rewritten anyway).")
@config_options
@friendly_errors
def prepare_cmd(fmt, input_path, out, split_by, seed, keep_negative_other, video_template, encoding, overwrite, config, overrides):
    """Import a corpus, merge same-speaker runs, split 8:1:1 and write the canonical splits."""
    flags = ([f"data.split_by={split_by}"] if split_by else []) + ([f"data.seed={seed}"] if seed is not None else [])
    cfg = resolve(config, list(overrides) + flags)  # the flags are validated like --set
    stats = prepare(fmt, input_path, out, cfg.data, keep_negative_other=keep_negative_other, video_template=video_template,
                    encoding=encoding, config=cfg, overwrite=overwrite)
    click.echo(format_stats(stats))
    for line in leak_warnings(stats):
        click.echo(line, err=True)
    click.echo(f"wrote {out}/{{train,valid,test}}.jsonl, stats.json, config.yaml")


@cli.command("stats")
@click.argument("folder")
@friendly_errors
def stats_cmd(folder):
    """Print the table of a prepared folder's stats.json."""
    path = Path(folder) / "stats.json"
    if not path.exists():
        raise DataError(path, "not found", "run `elmd data prepare ... --out FOLDER` first")
    click.echo(format_stats(json.loads(path.read_text(encoding="utf-8"))))


@cli.command("make-videos")
@click.option("--data", "data_path", default="data/sample/dialogues.jsonl", show_default=True, help="Dialogues whose turn videos to draw.")
@click.option("--force", is_flag=True, help="Redraw every video even when the cached one matches.")
@friendly_errors
def make_videos(data_path, force):
    """Generate the bundled sample's face videos into its (git-ignored) videos/ cache."""
    from elmd.data.sample_videos import generate_videos

    counts = generate_videos(data_path, force=force)
    click.echo(" ".join(f"{k}={v}" for k, v in counts.items()))
