"""`elmd retriever evaluate`: emotion agreement and r' relevance of retrieved demonstrations.

For each test sample (u, r), u is the query (entries of u's own dialogue excluded, no leakage):

- ``utt_agree@k``: query emotion (of u) vs the emotions of the retrieved u' (precision@k);
- ``resp_agree@k``: gold response emotion (of r) vs the emotions of the retrieved r';
- ``r_char_f1``: character-level F1 of the top hit's r' against the gold response r.
"""

from __future__ import annotations

from pathlib import Path

from elmd.config import ELMDConfig
from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.io import atomic_write_json
from retrieval.index import DemonstrationIndex, set_threads
from retrieval.metrics import emotion_agreement, mean_char_f1


def evaluate_index(index: DemonstrationIndex, samples, k: int = 5, batch_size: int = 256,
                   progress: bool = False) -> dict:
    """Metrics of the module docstring for ``samples`` against ``index``."""
    hits = index.search([s.utterance.text for s in samples], k, [s.dialogue_id for s in samples],
                        batch_size=batch_size, progress=progress)
    utt_gold = [s.utterance.emotion for s in samples]
    resp_gold = [s.response.emotion for s in samples]
    utt_ret = [[h.utterance_emotion for h in hs] for hs in hits]
    resp_ret = [[h.response_emotion for h in hs] for hs in hits]
    out = {"queries": len(samples)}
    for kk in sorted({1, k}):
        out[f"utt_agree@{kk}"] = emotion_agreement(utt_gold, utt_ret, kk)
        out[f"resp_agree@{kk}"] = emotion_agreement(resp_gold, resp_ret, kk)
    out["r_char_f1"] = mean_char_f1([hs[0].response if hs else None for hs in hits], [s.response.text for s in samples])
    return out


def evaluate_indexes(cfg: ELMDConfig, index_dirs: list[str], data: str, k: int = 5, encoder: str | None = None,
                     out: str | None = None) -> list[dict]:
    """Evaluate several indexes (e.g. base encoder, +ERT, +ERT+SSC) on the same test data."""
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    samples = read_samples(data, labels, cfg.data.max_samples)
    rows = []
    for d in index_dirs:
        set_threads(cfg.index.threads)
        index = DemonstrationIndex.load(d, encoder, nprobe=cfg.index.nprobe, use_gpu=cfg.index.use_gpu,
                                        device=cfg.retrieval.device)
        row = {"index": str(d), "encoder": index.meta.get("encoder", {}).get("label", "?")}
        row.update(evaluate_index(index, samples, k, cfg.retrieval.encode_batch_size, progress=True))
        rows.append(row)
    if out:
        atomic_write_json(Path(out), {"data": str(data), "k": k, "rows": rows})
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table, one row per index."""
    if not rows:
        return ""
    metrics = [c for c in rows[0] if c not in ("index", "encoder", "queries")]
    head = ["index", "encoder", "queries", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["index"]), str(r["encoder"]), str(r["queries"])] + [f"{r[m]:.4f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
