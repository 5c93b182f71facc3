"""`elmd evaluate`: BLEU-2/4, METEOR, ROUGE-1/L, Dist-1/2 and emotion accuracy / macro-F1 of a
prediction file (paper Table 2), written to report.json."""

from __future__ import annotations

import click

from elmd.cli.common import friendly_errors


@click.command(name="evaluate")
@click.option("--pred", "pred", required=True, metavar="PREDS.jsonl", help="Prediction file written by `elmd generate`.")
@click.option("--out", "out", required=True, metavar="PATH",
              help="report.json to write (a path not ending in .json is a folder that gets report.json).")
@click.option("--name", default=None, help="Row name for `elmd report` (default: the report's folder name).")
@click.option("--labels", default=None, metavar="ID,ID,...",
              help="Emotion label set [default: data.labels of PREDS.meta.json's config, else M3ED's seven].")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@friendly_errors
def cli(pred, out, name, labels, no_progress):
    """Score a prediction file; scores are x100 like the paper's Table 2 (definitions in report.json).
    Takes no --config: the label set comes from the predictions' .meta.json (or --labels)."""
    from elmd.evaluation.evaluate import evaluate_file, format_summary, resolve_out

    ids = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    if labels is not None and not ids:
        raise click.BadParameter("give at least one label id, e.g. --labels happy,sad,neutral", param_hint="--labels")
    report = evaluate_file(pred, out, name=name, progress=not no_progress, labels=ids)
    for line in report["warnings"]:
        click.echo(f"warning: {line}", err=True)
    click.echo(format_summary(report))
    click.echo(f"wrote {resolve_out(out)}")
