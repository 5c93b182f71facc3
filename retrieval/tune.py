"""Choosing the search-time scoring on the valid split (issue 13; :mod:`retrieval.scoring`).

The valid utterances are searched once per pool size in an index of the training samples (their
own dialogue excluded); every candidate scoring re-ranks the same candidates:

- ``cosine`` (always a candidate: it wins ties, so tuning never makes retrieval worse on valid);
- ``soft`` with ``beta`` in :data:`BETAS`, ``pool`` in :data:`POOLS`, ``prior`` in :data:`PRIORS`;
- ``filter`` with ``pool`` in :data:`POOLS` and ``prior`` in :data:`PRIORS`;

each with P(emotion | q) from every classifier the retriever has (``source``: the emotion head,
the TF-IDF classifier, their mean; ``retrieval.emotion_classifier`` other than 'auto' fixes it).
A pool of 50 lets 'filter' find a u' of the predicted emotion for nearly every query.

The objective (``retrieval.tune_metric``) is valid utterance-emotion agreement@1, macro
agreement@1, or their mean; scorings whose r' char-F1 falls below ``retrieval.min_f1_ratio`` times
plain cosine's are not eligible (relevance must not be traded away for emotion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrieval.metrics import emotion_agreement, macro_agreement, mean_char_f1
from retrieval.scoring import Scoring, adjust, rank
from retrieval.tfidf import query_context

WHOLE_INDEX = 1_000_000_000
"""``pool`` of the whole-index filter (any pool >= the index size is the whole index)."""
BETAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
POOLS = (5, 10, 20, 50)
PRIORS = (0.0, 0.25, 0.5, 1.0)


@dataclass
class TuneResult:
    """The chosen scoring, its valid metrics and plain cosine's, and every setting tried."""

    scoring: Scoring
    valid: dict
    cosine: dict
    grid: list[dict] = field(default_factory=list)


def objective(metrics: dict, metric: str) -> float:
    """The value tuning maximises (``retrieval.tune_metric``)."""
    if metric == "mean":
        return (metrics["utt_agree@1"] + metrics["macro_agree@1"]) / 2
    return metrics[metric]


def top1_metrics(index, cos, ids, allowed, probs, scoring: Scoring, samples, f1_cache: dict | None = None) -> dict:
    """utt_agree@1, macro_agree@1 and r' char-F1 of the top hit under ``scoring`` (``f1_cache``:
    (query, entry) -> char-F1, shared across the scorings of one tuning run)."""
    labels = np.where(ids >= 0, index._labels[np.maximum(ids, 0)], -1)
    order, score = rank(cos, labels, allowed, probs, scoring, 1, index.prior)
    top = [int(ids[i, order[i, 0]]) if np.isfinite(score[i, 0]) else -1 for i in range(len(samples))]
    gold = [s.utterance.emotion for s in samples]
    emo = [index.table[t]["utterance_emotion"] if t >= 0 else None for t in top]
    cache = f1_cache if f1_cache is not None else {}
    for i, t in enumerate(top):
        if (i, t) not in cache:
            cache[i, t] = mean_char_f1([index.table[t]["response"] if t >= 0 else None], [samples[i].response.text])
    return {"utt_agree@1": emotion_agreement(gold, [[e] for e in emo], 1),
            "macro_agree@1": macro_agreement(gold, emo),
            "r_char_f1": float(np.mean([cache[i, t] for i, t in enumerate(top)])) if top else 0.0}


def settings(pools=POOLS, betas=BETAS, priors=PRIORS, sources=("head",), whole: bool = False) -> list[Scoring]:
    """Cosine first (it wins ties), then per source soft (prior x pool x beta) and filter (prior x pool),
    with ``whole`` also filter over the whole index (prior)."""
    out = [Scoring()]
    for src in sources:
        for prior in priors:
            for pool in pools:
                out += [Scoring("soft", b, pool, prior, src) for b in betas] + [Scoring("filter", 0.0, pool, prior, src)]
            if whole:
                out.append(Scoring("filter", 0.0, WHOLE_INDEX, prior, src))
    return out


def tune_scoring(index, samples, metric: str = "mean", min_f1_ratio: float = 0.95, batch_size: int = 256,
                 grid: list[Scoring] | None = None, classifier: str = "auto", whole: bool = False) -> TuneResult:
    """Search ``samples`` (valid) in ``index`` (train) and pick the best scoring (module docstring);
    ``classifier``: 'auto' (every source the retriever has) or one source; ``whole``: also the
    whole-index filter (``retrieval.tune_whole_index``)."""
    samples = [s for s in samples if s.utterance.text.strip()]
    retriever = index.retriever
    sources = retriever.classifiers if classifier == "auto" else tuple(c for c in retriever.classifiers if c == classifier)
    grid = grid or settings(sources=sources, whole=whole)
    texts = [s.utterance.text for s in samples]
    q, head = retriever.encode(texts, batch_size=batch_size, with_probs=True)
    contexts = [query_context(s.history, s.utterance.speaker) for s in samples]
    probs = {src: retriever.emotion_probs(texts, src, head, contexts) for src in retriever.classifiers}
    exclude = [s.dialogue_id for s in samples]
    cands: dict[int, tuple] = {}
    rows, f1_cache = [], {}
    for sc in grid:
        if sc.emotion_aware and sc.source not in probs:
            continue
        depth = sc.pool if sc.emotion_aware else 1
        if sc.mode == "filter" and sc.pool >= len(index):  # per-emotion search, once per (source, prior)
            depth = ("whole", sc.source, sc.prior)
            if depth not in cands:
                pred = adjust(probs[sc.source], index.prior, sc.prior).argmax(1)
                cands[depth] = index.filter_candidates(q, 1, exclude, pred) or index.candidates(q, len(index), exclude)
        if depth not in cands:
            cands[depth] = index.candidates(q, depth, exclude)
        rows.append({"scoring": sc, **top1_metrics(index, *cands[depth], probs.get(sc.source), sc, samples, f1_cache)})
    cosine = next(r for r in rows if not r["scoring"].emotion_aware)
    floor = min_f1_ratio * cosine["r_char_f1"]
    best = cosine
    for r in rows:
        if r["r_char_f1"] >= floor and objective(r, metric) > objective(best, metric):
            best = r
    strip = lambda r: {k: round(v, 4) for k, v in r.items() if k != "scoring"}  # noqa: E731
    return TuneResult(best["scoring"], strip(best), strip(cosine),
                      [{**r["scoring"].to_dict(), **strip(r)} for r in rows])


def tune_retriever(cfg, retriever_dir: str, data: str, valid: str) -> TuneResult:
    """`elmd retriever tune`: tune on ``valid`` against an index of ``data`` and write the chosen
    scoring into ``retriever_dir``/retriever.json (atomically; the weights are untouched)."""
    from pathlib import Path

    from elmd.data.jsonl import read_samples
    from elmd.data.labels import label_set_from_config
    from elmd.errors import ElmdError
    from elmd.io import atomic_write_json
    from retrieval.encoder import INFO_FILE, load_retriever
    from retrieval.index import DemonstrationIndex

    rc = cfg.retrieval
    rc.check()
    retriever = load_retriever(retriever_dir, device=rc.device)
    if not retriever.classifiers:
        raise ElmdError(f"{retriever_dir}: no emotion classifier (emotion_head.safetensors / emotion_tfidf.*) to tune "
                        "a scoring for — train one with `elmd retriever train` (ERT on)")
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    for name, path in (("--data", data), ("--valid", valid)):
        if not Path(path).exists():
            raise ElmdError(f"{path}: {name} file not found — give the JSONL split")
    index = DemonstrationIndex.build(read_samples(data, labels, cfg.data.max_samples), retriever, "Flat",
                                     rc.encode_batch_size)
    res = tune_scoring(index, read_samples(valid, labels, rc.max_valid), rc.tune_metric, rc.min_f1_ratio,
                       rc.encode_batch_size, classifier=rc.emotion_classifier, whole=rc.tune_whole_index)
    retriever.info.update({"scoring": res.scoring.to_dict(), "scoring_valid": res.valid})
    atomic_write_json(Path(retriever_dir) / INFO_FILE, retriever.info)
    return res
