"""The FAISS demonstration index (paper Sec. 3.3, Fig. 2: retrieving R for every prompt).

Every sample (u', r') of the training JSONL (:func:`elmd.data.schema.build_samples`) is one entry.
The key is u''s search representation (:func:`retrieval.ssc.search_representation`: the normalised
``e_u``, or with SSC the concatenated normalised sub-vectors, so inner product = mean block
cosine). An index folder holds::

    index.faiss   FAISS inner-product index built from a factory string ('Flat', 'IVF256,Flat', 'HNSW32')
    table.jsonl   one row per entry: id, dialogue_id, utterance, response, utterance_emotion, response_emotion
                  (+ "degenerate": true for an entry whose u' has no in-vocabulary token)
    meta.json     size, dim, factory, the encoder's path, label and fingerprint, the data file's sha256,
                  the search-time scoring (:mod:`retrieval.scoring`), degenerate_entries (count),
                  emotion_classifier (source + fingerprint of the P(emotion | q) files, when emotion-aware)
    encoder/      the builtin encoder when the index was built with 'builtin:char'

Searching with another encoder than the one that built the index is refused (fingerprints differ),
and so is searching with another emotion classifier than the one the scoring was built for.
Queries may name their dialogue: entries of the same dialogue are then never returned (no leakage).
**Degenerate entries** (empty u', or only characters the encoder never saw: all map to one constant
vector that became the top hit of a third of all queries on CPED, issue 13) get a zero key and
are never returned. Candidates are ranked by :func:`retrieval.scoring.rank`: plain cosine, or
cosine plus an emotion bonus from the retriever's emotion classifier and the stored u' labels;
'filter' with a pool as large as the index searches each query's predicted emotion only
(:mod:`retrieval.partition`). A search may pass each query's earlier turns (``histories``): their
texts are the dialogue context of a TF-IDF emotion classifier fitted with it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from elmd.errors import ElmdError
from elmd.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl
from retrieval.partition import EmotionPartition
from retrieval.scoring import Scoring, adjust, rank
from retrieval.tfidf import contexts_of

_GPU_RESOURCES: list = []
TABLE_FIELDS = ("id", "dialogue_id", "utterance", "response", "utterance_emotion", "response_emotion")


@dataclass
class Hit:
    """One retrieved demonstration: the indexed pair (u', r'), their emotions and the score."""

    id: str
    dialogue_id: str
    utterance: str
    response: str
    utterance_emotion: str | None
    response_emotion: str | None
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def table_from_samples(samples) -> list[dict]:
    return [
        {"id": s.sample_id, "dialogue_id": s.dialogue_id, "utterance": s.utterance.text, "response": s.response.text,
         "utterance_emotion": s.utterance.emotion, "response_emotion": s.response.emotion}
        for s in samples
    ]


def make_faiss_index(vectors: np.ndarray, factory: str = "Flat", nprobe: int = 16):
    """A CPU FAISS inner-product index over ``vectors`` built from ``factory`` (trained if needed)."""
    import faiss

    n, d = vectors.shape
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ElmdError(f"bad FAISS factory string '{factory}' ({str(e).splitlines()[-1][:120]}) — use e.g. Flat, IVF256,Flat, HNSW32") from None
    if not index.is_trained:
        nlist = getattr(faiss.extract_index_ivf(index), "nlist", 0) if "IVF" in factory else 0
        if nlist and n < nlist:
            raise ElmdError(f"factory '{factory}' needs at least {nlist} entries to train, the data has {n} — use Flat or fewer lists")
        index.train(vectors)
    index.add(vectors)
    set_nprobe(index, nprobe)
    return index


def set_nprobe(index, nprobe: int) -> None:
    import faiss

    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except (RuntimeError, AttributeError):
        pass


def set_threads(threads: int) -> None:
    """Set FAISS's OpenMP thread count (process-wide); 0 leaves FAISS's default."""
    import faiss

    if threads > 0:
        faiss.omp_set_num_threads(threads)


def maybe_to_gpu(index, use_gpu: bool = True):
    """Move the index to GPU 0 when faiss-gpu and a CUDA device are present; else return it as is."""
    import faiss

    if not use_gpu or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return index
    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())  # must outlive every GPU index
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)


class DemonstrationIndex:
    """Entries (u', r') with a FAISS index; :meth:`search` retrieves in one batched call."""

    def __init__(self, faiss_index, table: list[dict], meta: dict, retriever=None, scoring: Scoring | None = None):
        if faiss_index.ntotal != len(table):
            raise ElmdError(f"index has {faiss_index.ntotal} vectors but the table {len(table)} rows — rebuild the index")
        self.faiss, self.table, self.meta, self.retriever = faiss_index, table, meta, retriever
        counts = Counter(r["dialogue_id"] for r in table)
        self.max_per_dialogue = max(counts.values(), default=0)
        self._codes = {d: i for i, d in enumerate(counts)}
        self._dialogue = np.array([self._codes[r["dialogue_id"]] for r in table], dtype=np.int64)
        self._blocked = np.array([bool(r.get("degenerate")) for r in table], dtype=bool)
        names = list(getattr(retriever, "emotion_labels", []) or [])
        ids = {e: i for i, e in enumerate(names)}
        self._labels = np.array([ids.get(r["utterance_emotion"], -1) for r in table], dtype=np.int64)
        known = self._labels[(self._labels >= 0) & ~self._blocked]
        counts = np.bincount(known, minlength=len(names)).astype(np.float64)
        self.prior = counts / counts.sum() if counts.sum() else None  # emotion frequencies of the entries
        self.scoring = scoring or Scoring.from_dict(meta.get("scoring"))
        self.set_scoring(self.scoring)
        self._partition = None  # per-emotion search of the whole-index filter, built on first use

    def set_scoring(self, scoring: Scoring) -> None:
        """Rank later searches with ``scoring``; emotion-aware scoring needs the retriever's emotion head."""
        have = tuple(getattr(self.retriever, "classifiers", ()) or ())
        if scoring.emotion_aware and self.retriever is not None and scoring.source not in have:
            raise ElmdError(f"scoring '{scoring.describe()}' needs the retriever's '{scoring.source}' emotion "
                            f"classifier, but '{self.meta.get('encoder', {}).get('label')}' has "
                            f"{', '.join(have) or 'none'} — use retrieval.scoring=cosine or another classifier")
        self.scoring = scoring

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def build(cls, samples, retriever, factory: str = "Flat", batch_size: int = 256, progress: bool = False,
              nprobe: int = 16, use_gpu: bool = False, scoring: Scoring | None = None) -> "DemonstrationIndex":
        """Encode every sample's utterance u' and index it (in memory; :meth:`save` writes it)."""
        if not samples:
            raise ElmdError("no samples to index — the data has no utterance followed by a labelled response")
        table = table_from_samples(samples)
        texts = [r["utterance"] for r in table]
        degenerate = np.zeros(len(texts), dtype=bool)
        vectors = retriever.encode(texts, batch_size=batch_size, progress=progress, degenerate=degenerate)
        vectors[degenerate] = 0.0
        for i in np.flatnonzero(degenerate):
            table[i]["degenerate"] = True
        index = make_faiss_index(vectors, factory, nprobe)
        scoring = scoring or Scoring()
        meta = {"format": "elmd-index/1", "size": len(table), "dim": int(vectors.shape[1]), "factory": factory,
                "encoder": {"label": retriever.label, "path": retriever.path}, "scoring": scoring.to_dict(),
                "degenerate_entries": int(degenerate.sum())}
        return cls(maybe_to_gpu(index, use_gpu), table, meta, retriever, scoring)

    def save(self, out: str | Path) -> Path:
        import faiss

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        index = self.faiss
        if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
            index = faiss.index_gpu_to_cpu(index)
        atomic_write_bytes(out / "index.faiss", faiss.serialize_index(index).tobytes())
        atomic_write_jsonl(out / "table.jsonl", self.table)
        atomic_write_json(out / "meta.json", self.meta)
        return out

    @classmethod
    def load(cls, index_dir: str | Path, encoder=None, nprobe: int = 16, use_gpu: bool = True, device: str = "auto",
             scoring: Scoring | None = None):
        """Open an index folder. ``encoder``: None (the encoder recorded in meta.json), a folder path
        or a :class:`~retrieval.encoder.Retriever`; one whose fingerprint differs is refused.
        ``scoring``: None = the scoring stored in meta.json at build time (cosine for old indexes)."""
        import faiss

        index_dir = Path(index_dir)
        for name in ("index.faiss", "table.jsonl", "meta.json"):
            if not (index_dir / name).exists():
                raise ElmdError(f"{index_dir}: no {name} — not an index folder; build one with `elmd index build`")
        meta = json.loads((index_dir / "meta.json").read_text(encoding="utf-8"))
        with (index_dir / "table.jsonl").open(encoding="utf-8") as f:
            table = [json.loads(line) for line in f if line.strip()]
        index = faiss.deserialize_index(np.frombuffer((index_dir / "index.faiss").read_bytes(), dtype=np.uint8))
        set_nprobe(index, nprobe)
        retriever = resolve_encoder(index_dir, meta, encoder, device)
        return cls(maybe_to_gpu(index, use_gpu), table, meta, retriever, scoring)

    def candidates(self, q: np.ndarray, depth: int, exclude_dialogue_ids=None):
        """FAISS top-``depth`` (+ as many as exclusion can remove) of query vectors ``q`` (N, D):
        ``(cosine, ids, allowed)``, each ``(N, K)``; ``allowed`` is False for padding, entries of the
        query's own dialogue and degenerate entries."""
        n = len(q)
        exclude = list(exclude_dialogue_ids) if exclude_dialogue_ids is not None else [None] * n
        if len(exclude) != n:
            raise ValueError(f"{n} queries but {len(exclude)} exclude_dialogue_ids")
        # At most max_per_dialogue (+ degenerate) entries are excluded per query, so that many extra suffice.
        extra = (self.max_per_dialogue if any(e is not None for e in exclude) else 0) + int(self._blocked.sum())
        kk = min(len(self), depth + extra)
        scores, ids = self.faiss.search(np.ascontiguousarray(q, dtype=np.float32), kk)
        safe = np.maximum(ids, 0)
        own = np.array([self._codes.get(e, -1) if e is not None else -1 for e in exclude], dtype=np.int64)
        allowed = (ids >= 0) & ~self._blocked[safe] & (self._dialogue[safe] != own[:, None])
        return scores, ids, allowed

    def filter_candidates(self, q: np.ndarray, k: int, exclude_dialogue_ids, pred: np.ndarray):
        """Candidates of 'filter' with a pool of the whole index (:mod:`retrieval.partition`): the top
        entries of each query's predicted class ``pred``, then, for queries with fewer than k allowed
        of those, the plain top entries of the other classes; None when the index cannot be partitioned."""
        if self._partition is None:
            self._partition = EmotionPartition.of(self.faiss, self._labels, self._blocked) or False
        if not self._partition:
            return None
        n = len(q)
        exclude = list(exclude_dialogue_ids) if exclude_dialogue_ids is not None else [None] * n
        extra = self.max_per_dialogue if any(e is not None for e in exclude) else 0
        cos, ids = self._partition.candidates(q, pred, k + extra)
        own = np.array([self._codes.get(e, -1) if e is not None else -1 for e in exclude], dtype=np.int64)
        allowed = (ids >= 0) & (self._dialogue[np.maximum(ids, 0)] != own[:, None])
        need = np.flatnonzero(allowed.sum(axis=1) < k)
        if len(need):  # the fallback: plain cosine order among the other classes
            c2, i2, a2 = self.candidates(q[need], k, [exclude[i] for i in need])
            a2 &= self._labels[np.maximum(i2, 0)] != pred[need][:, None]
            w = cos.shape[1]
            pad = lambda x, v: np.concatenate([x, np.full((n, i2.shape[1]), v, dtype=x.dtype)], axis=1)  # noqa: E731
            cos, ids, allowed = pad(cos, -np.inf), pad(ids, -1), pad(allowed, False)
            cos[need, w:], ids[need, w:], allowed[need, w:] = c2, i2, a2
        return cos, ids, allowed

    def search_vectors(self, q: np.ndarray, k: int, exclude_dialogue_ids=None, probs: np.ndarray | None = None,
                       scoring: Scoring | None = None) -> list[list[Hit]]:
        """Top-k hits for query vectors ``q`` (N, D) ranked by ``scoring`` (default: the index's);
        ``probs`` (N, C) = P(emotion | query) for emotion-aware scoring; entries of
        ``exclude_dialogue_ids[i]`` and degenerate entries skipped."""
        if k < 1:
            raise ElmdError(f"k must be >= 1, got {k}")
        scoring = scoring or self.scoring
        if len(q) == 0 or len(self) == 0:
            return [[] for _ in range(len(q))]
        got = None
        if scoring.mode == "filter" and scoring.pool >= len(self) and probs is not None:
            got = self.filter_candidates(q, k, exclude_dialogue_ids, adjust(probs, self.prior, scoring.prior).argmax(1))
        if got is None:
            got = self.candidates(q, max(k, scoring.pool) if scoring.emotion_aware else k, exclude_dialogue_ids)
        cos, ids, allowed = got
        labels = np.where(ids >= 0, self._labels[np.maximum(ids, 0)], -1)
        order, score = rank(cos, labels, allowed, probs, scoring, k, self.prior)
        out = []
        for qi in range(len(q)):
            hits = []
            for col, sc in zip(order[qi], score[qi]):
                if not np.isfinite(sc):
                    break
                row = self.table[ids[qi, col]]
                hits.append(Hit(**{f: row[f] for f in TABLE_FIELDS}, score=float(sc)))
            out.append(hits)
        return out

    def search(self, texts: list[str], k: int = 1, exclude_dialogue_ids=None, batch_size: int = 256,
               progress: bool = False, scoring: Scoring | None = None, histories=None) -> list[list[Hit]]:
        """Encode ``texts`` with the index's encoder and return the top-k hits of each (batched).
        ``histories``: one ``(earlier turns, speaker of the query)`` pair per text, or None; only the
        earlier turns' texts are read, by a TF-IDF emotion classifier with dialogue context
        (:func:`retrieval.tfidf.query_context`)."""
        if self.retriever is None:
            raise ElmdError("this index has no encoder loaded — pass encoder= to DemonstrationIndex.load")
        scoring = scoring or self.scoring
        if scoring.emotion_aware:
            want_head = scoring.source != "tfidf"
            enc = self.retriever.encode(list(texts), batch_size=batch_size, progress=progress, with_probs=want_head)
            q, head = enc if want_head else (enc, None)
            probs = self.retriever.emotion_probs(list(texts), scoring.source, head, contexts_of(histories))
        else:
            q, probs = self.retriever.encode(list(texts), batch_size=batch_size, progress=progress), None
        return self.search_vectors(q, k, exclude_dialogue_ids, probs, scoring)


def resolve_encoder(index_dir: Path, meta: dict, encoder, device: str = "auto"):
    """The retriever to search ``index_dir`` with, checked against the fingerprint in meta.json."""
    from retrieval.encoder import Retriever, load_retriever

    want = meta.get("encoder", {})
    if encoder is None:
        path = want.get("path")
        if not path:
            raise ElmdError(f"{index_dir}: meta.json names no encoder — pass --encoder PATH")
        full = index_dir / path if not Path(path).is_absolute() else Path(path)
        if not full.exists():
            raise ElmdError(f"{index_dir}: its encoder {full} is missing — pass --encoder with the folder that built it")
        encoder = str(full)
    retriever = encoder if isinstance(encoder, Retriever) else load_retriever(str(encoder), device=device)
    clf = meta.get("emotion_classifier") or {}
    if clf.get("fingerprint") and retriever.path and clf["fingerprint"] != retriever.classifier_fingerprint(clf["source"]):
        raise ElmdError(
            f"{index_dir}: index was built with emotion classifier '{clf['source']}' (fingerprint "
            f"{clf['fingerprint'][:12]}) but retriever {retriever.path} has another one — search with the retriever "
            "that built it, or rebuild the index with `elmd index build`")
    got = retriever.fingerprint
    if want.get("fingerprint") and got != want["fingerprint"]:
        raise ElmdError(
            f"{index_dir}: index was built by encoder '{want.get('label')}' (fingerprint {want['fingerprint'][:12]}) "
            f"but the search encoder {retriever.path} has fingerprint {got[:12]} — search with the encoder that "
            "built it, or rebuild the index with `elmd index build`"
        )
    return retriever
