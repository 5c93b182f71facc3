"""`elmd retriever train | tune | evaluate`: the emotional retriever (paper Sec. 3.3, issue 13)."""

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
    click.echo(f"retriever saved to {out} (best epoch {info.get('best_epoch')}, scoring {info.get('scoring', 'cosine')})")


@cli.command("tune")
@click.option("--retriever", "retriever_dir", required=True, help="Folder written by `elmd retriever train` (with an emotion head).")
@click.option("--data", default=None, help="Training JSONL indexed for tuning [default: data.train].")
@click.option("--valid", default=None, help="Validation JSONL whose utterances are the queries [default: data.valid].")
@config_options
@friendly_errors
def tune(retriever_dir, data, valid, config, overrides):
    """Choose the search-time scoring (cosine / soft beta, pool / filter pool, and the emotion
    classifier giving P(emotion | q): head / tfidf / mean) on the valid split
    and store it in the retriever's retriever.json (the weights, hence indexes built from them, are
    unchanged; rebuild an index to use the new scoring by default)."""
    from retrieval.tune import tune_retriever

    cfg = resolve(config, overrides)
    res = tune_retriever(cfg, retriever_dir, data or cfg.data.train, valid or cfg.data.valid)
    click.echo(f"scoring {res.scoring.describe()}: valid {res.valid} (cosine {res.cosine}) -> {retriever_dir}/retriever.json")


@cli.command("evaluate")
@click.option("--index", "indexes", multiple=True, required=True, help="Index folder (repeat to compare encoders).")
@click.option("--data", default=None, help="Test JSONL [default: data.test of the config].")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Hits per query for agreement@k.")
@click.option("--encoder", default=None, help="Search with this encoder folder instead of the one recorded in the index.")
@click.option("--out", default=None, help="Also write the results as JSON.")
@click.option("--no-baselines", is_flag=True, help="Leave out the random / majority-emotion retrievers.")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Paired-bootstrap resamples.")
@config_options
@friendly_errors
def evaluate(indexes, data, k, encoder, out, no_baselines, bootstrap, config, overrides):
    """Emotion agreement@1/@k (u vs u', r vs r'), macro agreement@1 and char-F1 of r' vs the gold
    response, with paired-bootstrap 95% intervals of the differences to the first --index.

    Entries from the query's own dialogue are excluded. With several --index the table compares
    them, e.g. base encoder vs +ERT vs +ERT+SSC; an emotion-aware index is scored with its stored
    scoring and with plain cosine; the random and majority-emotion retrievers are added.
    """
    from retrieval.evaluate import evaluate_indexes, format_table

    cfg = resolve(config, overrides)
    rows = evaluate_indexes(cfg, list(indexes), data or cfg.data.test, k, encoder, out, not no_baselines, bootstrap)
    click.echo(format_table(rows))
