"""`elmd index build | search`: the FAISS demonstration index (paper Sec. 3.3, Fig. 2)."""

from __future__ import annotations

import json

import click

from elmd.cli.common import config_options, friendly_errors, resolve
from elmd.errors import ElmdError


@click.group(name="index")
def cli():
    """Build and search the demonstration index of (u', r') pairs."""


@cli.command("build")
@click.option("--data", default=None, help="Training JSONL whose samples (u', r') are indexed [default: data.train].")
@click.option("--retriever", default=None, help="Folder written by `elmd retriever train`.")
@click.option("--encoder", default=None, help="Untrained encoder instead: local sentence-transformers folder or builtin:char [default: retrieval.encoder].")
@click.option("--out", default=None, help="Index folder [default: index.path].")
@click.option("--factory", default=None, help="FAISS factory string: Flat, IVF256,Flat, HNSW32, ... [default: index.factory].")
@config_options
@friendly_errors
def build(data, retriever, encoder, out, factory, config, overrides):
    """Embed every utterance u' and store index.faiss + table.jsonl + meta.json.

    With SSC the key is the concatenation of the s normalised sub-vectors divided by sqrt(s), so
    the inner product ranks by mean sub-vector cosine; otherwise the normalised embedding.
    """
    from retrieval.build import build_index

    if retriever and encoder:
        raise click.UsageError("give --retriever or --encoder, not both")
    cfg = resolve(config, overrides)
    out = out or cfg.index.path
    index = build_index(cfg, data or cfg.data.train, out, retriever or encoder or cfg.retrieval.encoder, factory)
    click.echo(f"indexed {len(index)} pairs with {index.meta['encoder']['label']} ({index.scoring.describe()}; "
               f"{index.meta['degenerate_entries']} degenerate entries never returned) -> {out}")


@cli.command("search")
@click.option("--index", "index_dir", default=None, help="Index folder [default: index.path].")
@click.option("--query", default=None, help="One query text.")
@click.option("--queries", default=None, help="JSONL of queries (format above).")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Hits per query.")
@click.option("--encoder", default=None, help="Encoder folder (default: the one recorded in the index; another one is refused).")
@click.option("--out", default=None, help="Write the results as JSONL to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSONL rows instead of a readable list.")
@config_options
@friendly_errors
def search(index_dir, query, queries, k, encoder, out, as_json, config, overrides):
    """Retrieve the top-k (u', r') pairs for one query or a batch.

    \b
    Query JSONL, one per line:  {"query_id": "q1", "text": "...", "dialogue_id": "d7"}
      query_id defaults to the line number; when dialogue_id is given, entries of that
      dialogue are excluded (no leakage).
    Output JSONL, one row per query:
      {"query_id": "q1", "hits": [{"id", "dialogue_id", "utterance", "response",
                                   "utterance_emotion", "response_emotion", "score"}]}
    """
    from retrieval.build import read_queries, search_index

    if (query is None) == (queries is None):
        raise click.UsageError("give exactly one of --query TEXT or --queries FILE.jsonl")
    if query is not None and not query.strip():
        raise ElmdError("--query is empty — give a non-empty text")
    cfg = resolve(config, overrides, quiet=True)
    rows_in = read_queries(queries) if queries else [{"query_id": "0", "text": query.strip(), "dialogue_id": None}]
    rows = search_index(index_dir or cfg.index.path, rows_in, k, encoder, out, cfg)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False))
    elif not out or query is not None:
        for q, r in zip(rows_in, rows):
            click.echo(f"query {r['query_id']}: {q['text']}")
            for rank, h in enumerate(r["hits"], 1):
                click.echo(f"  {rank}. [{h['score']:.3f}] ({h['utterance_emotion']}) {h['utterance']} -> "
                           f"({h['response_emotion']}) {h['response']}  [{h['dialogue_id']}]")
    if out:
        click.echo(f"wrote {len(rows)} rows to {out}", err=True)
