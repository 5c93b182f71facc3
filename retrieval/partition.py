"""Per-emotion search for the whole-index 'filter' scoring (issue 13; :mod:`retrieval.scoring`).

'filter' ranks u' of the predicted emotion first, in cosine order. With a pool as large as the
index (``pool >= len(index)``) that is the cosine-nearest u' *among those of the predicted
emotion*, which a FAISS top-``pool`` search over every entry would find at the price of a full
sort (+370% of a plain search at 20,000 entries). Here each emotion's entries get their own flat
inner-product index, and a query searches only the one of its predicted emotion: about
``n_e / n`` of the work of a plain search. Only queries with fewer than k allowed hits there (a
rare emotion, or its entries all in the query's own dialogue) also get the plain search, whose
entries of the predicted emotion are then dropped (they are in the first list already), so the
result equals the generic re-rank with ``pool = len(index)``.

The per-emotion indexes are built from the main index's stored vectors on first use
(``reconstruct_n``: Flat and HNSW indexes; an index that cannot reconstruct, e.g. IVF without a
direct map, falls back to the generic path).
"""

from __future__ import annotations

import numpy as np


class EmotionPartition:
    """One flat inner-product FAISS index per emotion class over the entries of that class."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, blocked: np.ndarray):
        import faiss

        self.parts: dict[int, tuple] = {}
        for c in np.unique(labels[(labels >= 0) & ~blocked]):
            ids = np.flatnonzero((labels == c) & ~blocked)
            sub = faiss.IndexFlatIP(vectors.shape[1])
            sub.add(np.ascontiguousarray(vectors[ids], dtype=np.float32))
            self.parts[int(c)] = (sub, ids)

    @classmethod
    def of(cls, faiss_index, labels: np.ndarray, blocked: np.ndarray) -> "EmotionPartition | None":
        """The partition of an index's entries, or None when its vectors cannot be read back."""
        try:
            vectors = faiss_index.reconstruct_n(0, faiss_index.ntotal)
        except (RuntimeError, AttributeError):
            return None
        return cls(np.asarray(vectors, dtype=np.float32), labels, blocked)

    def candidates(self, q: np.ndarray, pred: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """``(cosine, ids)``, each ``(N, depth)``: the top-``depth`` entries of each query's predicted
        class ``pred[i]`` (padding: -inf / -1)."""
        cos = np.full((len(q), depth), -np.inf, dtype=np.float32)
        ids = np.full((len(q), depth), -1, dtype=np.int64)
        for c, (sub, gid) in self.parts.items():
            rows = np.flatnonzero(pred == c)
            if not len(rows):
                continue
            kk = min(depth, sub.ntotal)
            s, i = sub.search(np.ascontiguousarray(q[rows], dtype=np.float32), kk)
            cos[rows, :kk] = s
            ids[rows, :kk] = np.where(i >= 0, gid[np.maximum(i, 0)], -1)
        return cos, ids
