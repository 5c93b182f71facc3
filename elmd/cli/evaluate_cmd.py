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
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@friendly_errors
def cli(pred, out, name, no_progress):
    """Score a prediction file; scores are x100 like the paper's Table 2 (definitions in report.json)."""
    from elmd.evaluation.evaluate import evaluate_file, format_summary, resolve_out

    report = evaluate_file(pred, out, name=name, progress=not no_progress)
    click.echo(format_summary(report))
    click.echo(f"wrote {resolve_out(out)}")
