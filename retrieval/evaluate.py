"""`elmd retriever evaluate`: emotion agreement and r' relevance of retrieved demonstrations.

For each test sample (u, r), u is the query (entries of u's own dialogue excluded, no leakage):

- ``utt_agree@k``: query emotion (of u) vs the emotions of the retrieved u' (precision@k);
- ``macro_agree@1``: the per-class mean of agreement@1 (a majority-emotion bias cannot pass for
  emotion matching; issue 13's honest headline);
- ``resp_agree@k``: gold response emotion (of r) vs the emotions of the retrieved r';
- ``r_char_f1``: character-level F1 of the top hit's r' against the gold response r.

:func:`evaluate_indexes` scores every index with its stored scoring (and, for an emotion-aware
one, with plain cosine too), adds two degenerate retrievers on the first index's entries
(``random``: k random entries; ``majority``: random entries whose u' carries the index's most
frequent emotion) and, for every row, the difference to the first row (the reference, normally the
untrained base encoder) in utt_agree@1, macro_agree@1 and r_char_f1 with a paired-bootstrap 95%
interval (:func:`retrieval.metrics.paired_bootstrap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.io import atomic_write_json
from retrieval.index import DemonstrationIndex, set_threads
from retrieval.metrics import char_f1, emotion_agreement, macro_agreement, mean_char_f1, paired_bootstrap
from retrieval.scoring import Scoring

if TYPE_CHECKING:  # annotations only: retrieval does not import the ELMD config at run time
    from elmd.config import ELMDConfig

DIFF_METRICS = ("utt_agree@1", "macro_agree@1", "r_char_f1")


@dataclass
class Retrieved:
    """What one system returned for every query: top-k u' / r' emotions and the top r'."""

    name: str
    utt: list[list[str | None]]
    resp: list[list[str | None]]
    top_response: list[str | None]


def retrieve(index: DemonstrationIndex, samples, k: int, batch_size: int = 256, progress: bool = False,
             scoring: Scoring | None = None, name: str = "") -> Retrieved:
    hits = index.search([s.utterance.text for s in samples], k, [s.dialogue_id for s in samples],
                        batch_size=batch_size, progress=progress, scoring=scoring,
                        histories=[(s.history, s.utterance.speaker) for s in samples])
    return Retrieved(name, [[h.utterance_emotion for h in hs] for hs in hits],
                     [[h.response_emotion for h in hs] for hs in hits], [hs[0].response if hs else None for hs in hits])


def degenerate_retrieved(index: DemonstrationIndex, samples, k: int, kind: str, seed: int = 0) -> Retrieved:
    """``random`` (k random allowed entries) or ``majority`` (k random entries of the most frequent
    u' emotion) per query; the query's own dialogue and degenerate entries are never drawn."""
    rng = np.random.default_rng(seed)
    rows = [r for r in index.table if not r.get("degenerate")]
    if kind == "majority":
        top = Counter(r["utterance_emotion"] for r in rows if r["utterance_emotion"]).most_common(1)[0][0]
        rows, kind = [r for r in rows if r["utterance_emotion"] == top], f"majority ({top})"
    out = Retrieved(f"{kind} u'", [], [], [])
    for s in samples:
        pool = [r for r in rows if r["dialogue_id"] != s.dialogue_id]
        picks = [pool[i] for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False)] if pool else []
        out.utt.append([r["utterance_emotion"] for r in picks])
        out.resp.append([r["response_emotion"] for r in picks])
        out.top_response.append(picks[0]["response"] if picks else None)
    return out


def metrics_of(res: Retrieved, samples, k: int) -> dict:
    """The module docstring's metrics of one system."""
    utt_gold, resp_gold = [s.utterance.emotion for s in samples], [s.response.emotion for s in samples]
    out = {"queries": len(samples)}
    for kk in sorted({1, k}):
        out[f"utt_agree@{kk}"] = emotion_agreement(utt_gold, res.utt, kk)
        out[f"resp_agree@{kk}"] = emotion_agreement(resp_gold, res.resp, kk)
    out["macro_agree@1"] = macro_agreement(utt_gold, [r[0] if r else None for r in res.utt])
    out["r_char_f1"] = mean_char_f1(res.top_response, [s.response.text for s in samples])
    return out


def per_query(res: Retrieved, samples) -> dict[str, np.ndarray]:
    """Per-query values of :data:`DIFF_METRICS` (NaN where the query has no gold emotion)."""
    agree = [float("nan") if s.utterance.emotion is None else float(bool(u) and u[0] == s.utterance.emotion)
             for s, u in zip(samples, res.utt)]
    f1 = [char_f1(p, s.response.text) if p is not None else 0.0 for p, s in zip(res.top_response, samples)]
    return {"utt_agree@1": np.array(agree), "macro_agree@1": np.array(agree), "r_char_f1": np.array(f1)}


def evaluate_index(index: DemonstrationIndex, samples, k: int = 5, batch_size: int = 256,
                   progress: bool = False, scoring: Scoring | None = None) -> dict:
    """Metrics of the module docstring for ``samples`` against ``index`` (its scoring by default)."""
    return metrics_of(retrieve(index, samples, k, batch_size, progress, scoring), samples, k)


def compare(systems: list[Retrieved], samples, k: int, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per system with its metrics and, vs ``systems[0]``, ``d_<metric>`` = [diff, low, high]."""
    classes = {e: i for i, e in enumerate(sorted({s.utterance.emotion for s in samples if s.utterance.emotion}))}
    groups = np.array([classes.get(s.utterance.emotion, 0) for s in samples])
    ref = per_query(systems[0], samples)
    rows = []
    for res in systems:
        row = {"system": res.name, **metrics_of(res, samples, k)}
        vals = per_query(res, samples)
        for m in DIFF_METRICS:
            g = groups if m.startswith("macro") else None
            row[f"d_{m}"] = [round(x, 4) for x in paired_bootstrap(ref[m], vals[m], g, n_boot, seed)]
        rows.append(row)
    return rows


def evaluate_indexes(cfg: ELMDConfig, index_dirs: list[str], data: str, k: int = 5, encoder: str | None = None,
                     out: str | None = None, baselines: bool = True, n_boot: int = 1000) -> list[dict]:
    """Evaluate several indexes (e.g. base encoder, +ERT, +ERT+SSC) on the same test data; the
    first one is the reference of the differences (module docstring)."""
    from retrieval.build import check_classifier, scoring_override

    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    samples = read_samples(data, labels, cfg.data.max_samples)
    systems, first = [], None
    for d in index_dirs:
        set_threads(cfg.index.threads)
        index = DemonstrationIndex.load(d, encoder, nprobe=cfg.index.nprobe, use_gpu=cfg.index.use_gpu,
                                        device=cfg.retrieval.device)
        check_classifier(index, cfg)
        index.set_scoring(scoring_override(cfg, index.retriever) or index.scoring)
        first = first or index
        label = index.meta.get("encoder", {}).get("label", "?")
        variants = [Scoring(), index.scoring] if index.scoring.emotion_aware else [index.scoring]
        for sc in variants:
            name = f"{label} · {sc.describe()} [{d}]"
            systems.append(retrieve(index, samples, k, cfg.retrieval.encode_batch_size, True, sc, name))
    if baselines and first is not None:
        systems += [degenerate_retrieved(first, samples, k, kind, cfg.retrieval.seed) for kind in ("random", "majority")]
    rows = compare(systems, samples, k, n_boot, cfg.retrieval.seed)
    if out:
        atomic_write_json(Path(out), {"data": str(data), "k": k, "reference": systems[0].name, "rows": rows})
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table, one row per system; differences vs the first row with 95% intervals."""
    if not rows:
        return ""
    metrics = [c for c in rows[0] if c not in ("system", "queries") and not c.startswith("d_")]
    head = ["system", *metrics, *(f"Δ {m} [95% CI]" for m in DIFF_METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["system"])] + [f"{r[m]:.4f}" for m in metrics]
        cells += [f"{r[f'd_{m}'][0]:+.3f} [{r[f'd_{m}'][1]:+.3f}, {r[f'd_{m}'][2]:+.3f}]" for m in DIFF_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{rows[0]['queries']} queries; Δ = row − first row, paired bootstrap."
