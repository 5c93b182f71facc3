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
@click.option("--overwrite", is_flag=True, help="Replace an index of other data / another encoder already at --out.")
@config_options
@friendly_errors
def build(data, retriever, encoder, out, factory, overwrite, config, overrides):
    """Embed every utterance u' and store index.faiss + table.jsonl + meta.json.

    With SSC the key is the concatenation of the s normalised sub-vectors divided by sqrt(s), so
    the inner product ranks by mean sub-vector cosine; otherwise the normalised embedding.
    """
    from elmd.io import atomic_dir
    from retrieval.build import build_index

    if retriever and encoder:
        raise click.UsageError("give --retriever or --encoder, not both")
    cfg = resolve(config, overrides)
    out, data, enc = out or cfg.index.path, data or cfg.data.train, retriever or encoder or cfg.retrieval.encoder
    if not overwrite:
        _refuse_other_index(out, data, enc)
    with atomic_dir(out) as staging:  # the old index stays whole until the new one is complete
        index = build_index(cfg, data, str(staging), enc, factory)
    click.echo(f"indexed {len(index)} pairs with {index.meta['encoder']['label']} ({index.scoring.describe()}; "
               f"{index.meta['degenerate_entries']} degenerate entries never returned) -> {out}")


def _refuse_other_index(out: str, data: str, encoder: str) -> None:
    """An index at ``out`` built from other data or by another encoder is not replaced silently."""
    from pathlib import Path

    from elmd.io import file_sha256
    from retrieval.builtin import is_builtin

    meta_file = Path(out) / "meta.json"
    if not meta_file.is_file():
        return
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except ValueError:
        raise ElmdError(f"{meta_file}: is not valid JSON — pass --overwrite to replace that index") from None
    same_data = Path(data).is_file() and meta.get("data", {}).get("sha256") == file_sha256(data)
    recorded = meta.get("encoder", {}).get("path")
    same_encoder = recorded == "encoder" if is_builtin(encoder) else \
        recorded == str(Path(encoder).resolve())
    if not (same_data and same_encoder):
        what = "other data" if not same_data else "another encoder"
        raise ElmdError(f"{out}: already holds an index of {what} ({meta.get('data', {}).get('path')}, "
                        f"{meta.get('encoder', {}).get('label')}) — pass --overwrite to replace it, or choose another --out")


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
