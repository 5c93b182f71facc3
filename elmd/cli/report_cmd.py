"""`elmd report`: Markdown tables in the layout of the paper's Tables 2 (models) and 3 (ablations)
plus bar charts, from folders written by `elmd evaluate`."""

from __future__ import annotations

import click

from elmd.cli.common import friendly_errors

_LIST_OPTIONS = ("--runs", "--ablations")


class _ListOptionsCommand(click.Command):
    """Lets ``--runs A B C`` mean ``--runs A --runs B --runs C`` (click options take one value)."""

    def parse_args(self, ctx, args):
        expanded, current = [], None
        for tok in args:
            if tok in _LIST_OPTIONS:
                current = tok
                expanded.append(tok)
            elif current and not tok.startswith("-") and expanded[-1] != current:
                expanded += [current, tok]
            else:
                if tok.startswith("-"):
                    current = None
                expanded.append(tok)
        return super().parse_args(ctx, expanded)


@click.command(name="report", cls=_ListOptionsCommand)
@click.option("--runs", multiple=True, metavar="DIR...",
              help="Evaluated runs (folders with report.json) for Table 2: one row each, in this order.")
@click.option("--ablations", multiple=True, metavar="DIR...",
              help="Evaluated ablation runs for Table 3 (list the full model here too to compare).")
@click.option("--out", required=True, metavar="DIR", help="Folder for table.md, table2.png and table3.png.")
@friendly_errors
def cli(runs, ablations, out):
    """Make the results tables (Markdown, printed and saved) and bar charts of evaluated runs."""
    from elmd.evaluation.report import make_report

    click.echo(make_report(runs, ablations, out), nl=False)
