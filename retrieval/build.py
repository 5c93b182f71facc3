"""`elmd index build` and `elmd index search` as library functions (Sec. 3.3, Fig. 2).

Query file format (JSONL, one query per line)::

    {"query_id": "q1", "text": "你怎么才来", "dialogue_id": "d001"}

``query_id`` defaults to the line number; ``dialogue_id`` is optional: when given, entries of that
dialogue are excluded from the hits (no leakage). The output has one row per query::

    {"query_id": "q1", "hits": [{"id", "dialogue_id", "utterance", "response",
                                 "utterance_emotion", "response_emotion", "score"}, ...]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import time
from pathlib import Path

from elmd.configio import save_config
from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.errors import DataError, ElmdError
from elmd.io import iter_jsonl, atomic_write_jsonl, file_sha256
from retrieval.builtin import is_builtin
from retrieval.encoder import load_retriever
from retrieval.index import DemonstrationIndex, set_threads
from retrieval.scoring import Scoring, resolve_scoring

if TYPE_CHECKING:  # annotations only: retrieval does not import the ELMD config at run time
    from elmd.config import ELMDConfig


def build_index(cfg: ELMDConfig, data: str, out: str, encoder: str, factory: str | None = None,
                progress: bool = True) -> DemonstrationIndex:
    """Index every sample (u', r') of ``data`` with ``encoder`` (retriever folder, sentence-transformers
    folder or builtin:char, which is then built from ``data`` and saved under ``out/encoder``)."""
    rc, out_dir = cfg.retrieval, Path(out)
    rc.check()
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    samples = read_samples(data, labels, cfg.data.max_samples)
    retriever = load_retriever(encoder, texts=[s.utterance.text for s in samples], device=rc.device,
                               dim=rc.builtin_dim, vocab=rc.builtin_vocab, seed=rc.seed)
    if is_builtin(encoder):
        retriever.save(out_dir / "encoder")  # the index folder then carries its own encoder
    t0 = time.perf_counter()
    scoring = resolve_scoring(rc, retriever.info, retriever.classifiers)
    index = DemonstrationIndex.build(samples, retriever, factory or cfg.index.factory, rc.encode_batch_size,
                                     progress, cfg.index.nprobe, scoring=scoring)
    index.meta["encoder"] = {"label": retriever.label, "fingerprint": retriever.fingerprint,
                             "path": "encoder" if is_builtin(encoder) else str(Path(encoder).resolve())}
    if scoring.emotion_aware:
        index.meta["emotion_classifier"] = {"source": scoring.source,
                                            "fingerprint": retriever.classifier_fingerprint(scoring.source)}
    index.meta["data"] = {"path": str(Path(data).resolve()), "sha256": file_sha256(data)}
    index.meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    index.save(out_dir)
    save_config(cfg, out_dir / "config.yaml")
    return index


def scoring_override(cfg: ELMDConfig, retriever) -> Scoring | None:
    """The scoring ``retrieval.scoring`` / ``beta`` / ``pool`` ask for at search time, or None
    ('auto' with no beta / pool: keep the scoring stored in the index at build time)."""
    rc = cfg.retrieval
    rc.check()
    if rc.scoring == "auto" and rc.beta is None and rc.pool is None and rc.emotion_classifier == "auto":
        return None
    return resolve_scoring(rc, retriever.info, retriever.classifiers)


def check_classifier(index: DemonstrationIndex, cfg: ELMDConfig) -> None:
    """Refuse a search asking (``retrieval.emotion_classifier``) for another emotion classifier than
    the one the index's emotion-aware scoring was built for."""
    want, built = cfg.retrieval.emotion_classifier, (index.meta.get("emotion_classifier") or {}).get("source")
    if want != "auto" and built and want != built and cfg.retrieval.scoring != "cosine":
        raise ElmdError(f"retrieval.emotion_classifier={want}, but the index was built for '{built}' (meta.json "
                        f"emotion_classifier) — rebuild it with `elmd index build --set retrieval.emotion_classifier="
                        f"{want}`, or search with {built}")


def read_queries(path: str | Path) -> list[dict]:
    """Rows ``{"query_id", "text", "dialogue_id"?}`` of a query JSONL (see module docstring)."""
    path = Path(path)
    rows = []
    for lineno, raw in iter_jsonl(path, "query file", "give a JSONL file with one {\"query_id\", \"text\"} per line"):
        text = raw.get("text") if isinstance(raw, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, "query has no 'text'", "write {\"query_id\": ..., \"text\": \"...\"}", lineno)
        did = raw.get("dialogue_id")
        rows.append({"query_id": str(raw.get("query_id", lineno)), "text": text.strip(),
                     "dialogue_id": None if did is None else str(did)})
    if not rows:
        raise DataError(path, "contains no queries", "write one JSON object per line")
    return rows


def search_index(index_dir: str, queries: list[dict], k: int, encoder: str | None = None,
                 out: str | None = None, cfg: ELMDConfig | None = None) -> list[dict]:
    """Search ``queries`` (rows of :func:`read_queries`) in one batch; rows as in the module docstring."""
    if cfg is None:
        from elmd.config import ELMDConfig as _Defaults

        cfg = _Defaults()
    set_threads(cfg.index.threads)
    index = DemonstrationIndex.load(index_dir, encoder, nprobe=cfg.index.nprobe, use_gpu=cfg.index.use_gpu,
                                    device=cfg.retrieval.device)
    if k < 1:
        raise ElmdError(f"-k must be >= 1, got {k}")
    check_classifier(index, cfg)
    index.set_scoring(scoring_override(cfg, index.retriever) or index.scoring)
    hits = index.search([q["text"] for q in queries], k, [q.get("dialogue_id") for q in queries],
                        batch_size=cfg.retrieval.encode_batch_size, progress=len(queries) > 1000)
    rows = [{"query_id": q["query_id"], "hits": [h.to_dict() for h in hs]} for q, hs in zip(queries, hits)]
    if out:
        atomic_write_jsonl(out, rows)
    return rows
