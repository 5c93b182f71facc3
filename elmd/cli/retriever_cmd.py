"""`elmd retriever train | evaluate`: the emotional retriever (paper Sec. 3.3)."""

from __future__ import annotations

from pathlib import Path

import click

from elmd.cli.common import config_options, friendly_errors, resolve


@click.group(name="retriever")
def cli():
    """Train and evaluate the emotional retriever (ERT + SSC, paper Sec. 3.3)."""


@cli.command("train")
@click.option("--data", default=None, help="Training JSONL [default: data.train of the config].")
@click.option("--valid", default=None, help="Validation JSONL, searched after each epoch [default: data.valid if it exists].")
@click.option("--encoder", default=None, help="Local sentence-transformers folder (e.g. /models/m3e-base) or builtin:char [default: retrieval.encoder].")
@click.option("--out", required=True, help="Output folder: sentence-transformers model + SSC head + config + README.")
@click.option("--no-ert", is_flag=True, help="Ablation 'w/o ERT': drop the emotion-contrastive loss L_e.")
@click.option("--no-ssc", is_flag=True, help="Ablation 'w/o SSC': no self-separated sub-vectors.")
@click.option("--epochs", type=int, default=None, help="Epochs [default: retrieval.epochs]; 0 saves the untrained encoder.")
@config_options
@friendly_errors
def train(data, valid, encoder, out, no_ert, no_ssc, epochs, config, overrides):
    """Train with AdamW (paper: lr 5e-5, batch 32, s = 4, tau = 0.5); keeps the best epoch."""
    from retrieval.train import train_retriever

    extra = [*(["retrieval.ert=false"] if no_ert else []), *(["retrieval.ssc=false"] if no_ssc else []),
             *([f"retrieval.epochs={epochs}"] if epochs is not None else [])]
    cfg = resolve(config, [*overrides, *extra])
    if valid is None and Path(cfg.data.valid).exists():
        valid = cfg.data.valid
    info = train_retriever(cfg, data or cfg.data.train, out, valid=valid, encoder=encoder,
                           log=lambda m: click.echo(m, err=True))
    click.echo(f"retriever saved to {out} (best epoch {info.get('best_epoch')})")


@cli.command("evaluate")
@click.option("--index", "indexes", multiple=True, required=True, help="Index folder (repeat to compare encoders).")
@click.option("--data", default=None, help="Test JSONL [default: data.test of the config].")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Hits per query for agreement@k.")
@click.option("--encoder", default=None, help="Search with this encoder folder instead of the one recorded in the index.")
@click.option("--out", default=None, help="Also write the results as JSON.")
@config_options
@friendly_errors
def evaluate(indexes, data, k, encoder, out, config, overrides):
    """Emotion agreement@1/@k (u vs u', r vs r') and char-F1 of r' vs the gold response.

    Entries from the query's own dialogue are excluded. With several --index the table compares
    them, e.g. base encoder vs +ERT vs +ERT+SSC.
    """
    from retrieval.evaluate import evaluate_indexes, format_table

    cfg = resolve(config, overrides)
    rows = evaluate_indexes(cfg, list(indexes), data or cfg.data.test, k, encoder, out)
    click.echo(format_table(rows))
