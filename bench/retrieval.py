"""Benchmark of the demonstration index (issue 3, item 9). Prints a Markdown table.

    .venv/bin/python bench/retrieval.py [--data runs/cped/data/train.jsonl] [--n 20000] [--encoder PATH]

- index build (encode + FAISS add + table) vs pure encoding of the same texts (target: within 10%);
- search queries/s at batch 1 and 1000, end to end (encode + search) and on vectors only;
- FAISS (Flat, inner product) vs numpy brute force (matmul + argpartition) on the same vectors
  (target: batched FAISS >= 1.5x numpy);
- emotion-aware scoring (issue 13) at batch 1000: the extra time of a search with soft / filter
  scoring (emotion head on the query vectors + FAISS top-pool + re-rank) over the same search
  with plain cosine, relative to the plain FAISS search (target: <= 20%). Without --retriever a
  freshly initialised emotion head is attached (same cost as a trained one);
- the TF-IDF emotion classifier of the query (retrieval/tfidf.py, fitted here on the entries'
  labels): P(e | q) for the same 1000 query texts, vs the FAISS search and vs end-to-end search.

Without --data, or when the file is missing, synthetic Chinese sentences are used. Samples are
repeated (with new ids) up to --n entries so the sizes are comparable across data sets.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elmd.data.schema import Sample, Turn  # noqa: E402
from retrieval.encoder import load_retriever  # noqa: E402
from retrieval.index import DemonstrationIndex, make_faiss_index  # noqa: E402

CHARS = "我你他她们的了是不在有这个人来去说好吗吧呢啊什么怎么为没事情天今明想知道要会能心开难过生气高兴害怕"


def load_samples(data: str | None, n: int) -> list[Sample]:
    if data and Path(data).exists():
        from elmd.data.jsonl import read_samples

        base = read_samples(data)
    else:
        rng = random.Random(0)
        emos = ["happy", "sad", "anger", "neutral"]
        base = [Sample(f"d{i // 5}#{i}", f"d{i // 5}", "s", "", [],
                       Turn("A", "".join(rng.choices(CHARS, k=rng.randint(4, 20))), rng.choice(emos)),
                       Turn("B", "".join(rng.choices(CHARS, k=rng.randint(4, 20))), rng.choice(emos)))
                for i in range(2000)]
    out = []
    for rep in range(max(1, -(-n // len(base)))):
        tag = "" if rep == 0 else str(rep)  # keeps repeated texts (and their vectors) distinct
        out += [replace(s, sample_id=f"{s.sample_id}/{rep}", dialogue_id=f"{s.dialogue_id}/{rep}",
                        utterance=replace(s.utterance, text=s.utterance.text + tag)) for s in base]
    return out[:n]


def timed(fn, repeat: int = 3):
    """Best wall time of ``repeat`` runs and the last result."""
    best, res = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def numpy_topk(q: np.ndarray, x: np.ndarray, k: int):
    scores = q @ x.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="runs/cped/data/train.jsonl")
    ap.add_argument("--n", type=int, default=20000, help="index entries")
    ap.add_argument("--encoder", default="builtin:char")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch + FAISS threads (0 = library defaults)")
    ap.add_argument("--pool", type=int, default=20, help="candidates re-scored by emotion-aware scoring")
    args = ap.parse_args(argv)
    if args.threads > 0:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)

    samples = load_samples(args.data, args.n)
    texts = [s.utterance.text for s in samples]
    retriever = load_retriever(args.encoder, texts=texts, device="auto")
    retriever.encode(texts[:256])  # warm-up
    t_enc = t_build = float("inf")
    for _ in range(5):  # interleaved so that load changes on a shared machine hit both alike
        t, vectors = timed(lambda: retriever.encode(texts, batch_size=256), 1)
        t_enc = min(t_enc, t)
        t, index = timed(lambda: DemonstrationIndex.build(samples, retriever, "Flat", 256), 1)
        t_build = min(t_build, t)
    rows = [("entries", f"{len(samples)}", f"dim {vectors.shape[1]}, encoder {args.encoder}, threads {args.threads or 'default'}"),
            ("pure encoding", f"{t_enc:.3f} s", f"{len(texts) / t_enc:,.0f} texts/s"),
            ("index build (Flat)", f"{t_build:.3f} s", f"{t_build / t_enc - 1:+.1%} vs encoding (target <= +10%)")]

    rng = np.random.default_rng(0)
    qi = rng.choice(len(texts), 1000, replace=False)
    qtexts = [texts[i] for i in qi]
    t1, _ = timed(lambda: [index.search([t], args.k) for t in qtexts[:200]])
    t1000, _ = timed(lambda: index.search(qtexts, args.k, batch_size=1000))
    rows += [("search end-to-end, batch 1", f"{200 / t1:,.0f} q/s", "encode + FAISS, one query per call"),
             ("search end-to-end, batch 1000", f"{1000 / t1000:,.0f} q/s", "encode + FAISS, one call")]

    flat = make_faiss_index(vectors, "Flat")
    q = vectors[qi]
    for b in (1, 1000):
        qb = q[:b]
        reps = 200 if b == 1 else 1
        t_f, (s_f, _) = timed(lambda: [flat.search(qb, args.k) for _ in range(reps)][-1])
        t_n, ids_n = timed(lambda: [numpy_topk(qb, vectors, args.k) for _ in range(reps)][-1])
        s_n = np.take_along_axis(qb @ vectors.T, ids_n, axis=1)
        gap = float(np.abs(s_f - s_n).max())  # same top-k scores (ids may differ only on ties)
        rows.append((f"vectors only, batch {b}: FAISS / numpy", f"{b * reps / t_f:,.0f} / {b * reps / t_n:,.0f} q/s",
                     f"FAISS {t_n / t_f:.2f}x numpy (target >= 1.5x at 1000); max top-k score gap {gap:.1e}"))
    rows += scoring_rows(index, q, args.k, args.pool)
    rows += tfidf_rows(index, qtexts, q, args.k, t1000)
    print("| measurement | value | note |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


def scoring_rows(index: DemonstrationIndex, q: np.ndarray, k: int, pool: int) -> list[tuple]:
    """Emotion-aware scoring vs plain cosine search on the same 1000 query vectors (no exclusion)."""
    import torch

    from retrieval.encoder import EmotionHead
    from retrieval.scoring import Scoring

    retriever = index.retriever
    if retriever.emotion_head is None:
        labels = sorted({r["utterance_emotion"] for r in index.table if r["utterance_emotion"]})
        retriever.emotion_head, retriever.info["emotion_labels"] = EmotionHead(q.shape[1], len(labels)), labels
        index = DemonstrationIndex(index.faiss, index.table, index.meta, retriever)

    def probs():
        with torch.no_grad():
            return torch.softmax(retriever.emotion_head(torch.from_numpy(q)), -1).numpy()

    t_faiss = t_cos = t_soft = t_filter = float("inf")
    for _ in range(5):  # interleaved, best of 5
        t_faiss = min(t_faiss, timed(lambda: index.faiss.search(q, k), 1)[0])
        t_cos = min(t_cos, timed(lambda: index.search_vectors(q, k, scoring=Scoring()), 1)[0])
        t_soft = min(t_soft, timed(lambda: index.search_vectors(q, k, probs=probs(), scoring=Scoring("soft", 0.3, pool)), 1)[0])
        t_filter = min(t_filter, timed(lambda: index.search_vectors(q, k, probs=probs(), scoring=Scoring("filter", 0, pool)), 1)[0])
    note = "vs plain FAISS search {:.1f} ms (target <= +20%)"
    return [("search_vectors, batch 1000, cosine", f"{t_cos * 1e3:.1f} ms", f"FAISS search alone {t_faiss * 1e3:.1f} ms (k={k})"),
            (f"+ soft scoring (pool {pool}), batch 1000", f"{(t_soft - t_cos) * 1e3:+.1f} ms",
             f"{(t_soft - t_cos) / t_faiss:+.1%} " + note.format(t_faiss * 1e3)),
            (f"+ filter scoring (pool {pool}), batch 1000", f"{(t_filter - t_cos) * 1e3:+.1f} ms",
             f"{(t_filter - t_cos) / t_faiss:+.1%} " + note.format(t_faiss * 1e3))]


def tfidf_rows(index: DemonstrationIndex, qtexts: list[str], q: np.ndarray, k: int, t_e2e: float) -> list[tuple]:
    """P(e | q) from the TF-IDF classifier for 1000 query texts, vs FAISS search and end-to-end search;
    also with dialogue context (the previous turn and the same speaker's previous turn: here the
    two query texts before each query), by a context classifier (the retriever's, or one fitted here)."""
    from retrieval.tfidf import fit_classifier

    clf = index.retriever.tfidf
    rows = [r for r in index.table if r["utterance_emotion"]][:5000]
    names = sorted({r["utterance_emotion"] for r in rows})
    fit = lambda w: fit_classifier([r["utterance"] for r in rows], [names.index(r["utterance_emotion"]) for r in rows],  # noqa: E731
                                   names, contexts=[(rows[i - 1]["utterance"], rows[i - 2]["utterance"]) for i in range(len(rows))],
                                   context=w)
    clf = clf or fit(0.0)
    ctx_clf = clf if clf.coef_ctx is not None else fit(0.5)
    ctx = [(qtexts[i - 1], qtexts[i - 2]) for i in range(len(qtexts))]
    t_faiss = t_tf = t_ctx = float("inf")
    for _ in range(5):
        t_faiss = min(t_faiss, timed(lambda: index.faiss.search(q, k), 1)[0])
        t_tf = min(t_tf, timed(lambda: clf.predict_proba(qtexts), 1)[0])
        t_ctx = min(t_ctx, timed(lambda: ctx_clf.predict_proba(qtexts, ctx), 1)[0])
    return [("TF-IDF P(e | q), batch 1000", f"{t_tf * 1e3:.1f} ms",
             f"{t_tf / t_faiss:+.1%} of plain FAISS search ({t_faiss * 1e3:.1f} ms); {t_tf / t_e2e:+.1%} of end-to-end "
             f"search ({t_e2e * 1e3:.0f} ms, encode + FAISS); {len(clf.vocab):,} n-grams"),
            ("TF-IDF P(e | q) with dialogue context (3 texts per query), batch 1000", f"{t_ctx * 1e3:.1f} ms",
             f"{t_ctx / t_faiss:+.1%} of plain FAISS search; {t_ctx / t_e2e:+.1%} of end-to-end search")]


if __name__ == "__main__":
    main()
