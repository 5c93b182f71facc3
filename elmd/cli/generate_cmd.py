"""`elmd generate`: batched, resumable generation of a trained ELMD model or a baseline for a split
(paper Sec. 4.3 decoding; Table 2's baselines), written as the JSONL that `elmd evaluate` scores."""

from __future__ import annotations

import click

from elmd.cli.common import friendly_errors
from elmd.evaluation.baselines import BASELINES


@click.command("generate")
@click.option("--checkpoint", required=True, type=click.Path(file_okay=False),
              help="A stage output folder of `elmd train` (eerg; a rep folder generates the emotion word).")
@click.option("--data", default=None, help="Split to generate for [default: the run's data.test].")
@click.option("--out", required=True, metavar="PREDS.jsonl", help="Prediction file (rows already in it are skipped).")
@click.option("--baseline", type=click.Choice(BASELINES), default="none", show_default=True,
              help="A Table-2 baseline instead of ELMD (see elmd/evaluation/baselines.py).")
@click.option("--greedy", is_flag=True, help="Greedy decoding (= --set generate.greedy=true).")
@click.option("--heads", default="", metavar="NAME[,NAME]",
              help="Downstream heads whose fields join each row (sticker, avatar); media go to <out stem>.media/.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a field of the run's saved config, e.g. --set generate.top_p=0.9 (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (written beside it, swapped in when complete).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@friendly_errors
def cli(checkpoint, data, out, baseline, greedy, heads, overrides, overwrite, no_progress):
    """Generate emotion + response for every sample of a split; appends to --out batch by batch."""
    from elmd.evaluation.generate import generate_file

    overrides = list(overrides) + (["generate.greedy=true"] if greedy else [])
    click.echo(f"# config: {checkpoint}/config.yaml {' '.join(overrides)}".rstrip(), err=True)
    meta = generate_file(checkpoint, data, out, baseline, overrides, progress=not no_progress,
                         log=lambda m: click.echo(m, err=True), heads=[h for h in heads.split(",") if h.strip()],
                         overwrite=overwrite)
    speed = f"  {meta['tokens_per_s']:.1f} tokens/s" if meta["tokens_per_s"] else ""
    click.echo(f"{baseline}: {meta['generated']} generated, {meta['skipped_existing']} already there, "
               f"{meta['rows']} rows ({meta['unparsable_emotions']} without a parsable emotion){speed} -> {out}")
    if "meta_parse" in meta:  # a train.target=meta run: its blocks' strict parse
        mp = meta["meta_parse"]
        click.echo(f"meta-response: {mp['parsed']} parsed, {mp['failed']} failed"
                   + (f" (first: {mp['errors'][0]})" if mp["errors"] else ""))
