"""A character n-gram TF-IDF logistic-regression emotion classifier for the query (issue 13).

The emotion head on the retriever's representation reaches only 0.25-0.27 accuracy on CPED's
test split; a linear model on TF-IDF-weighted character n-grams of the utterance does better
(0.31-0.34, class-balanced) and gives emotion-aware scoring (:mod:`retrieval.scoring`) a better
``P(emotion | q)``. For a text t with n-gram counts ``c_g``::

    x_g = (1 + ln c_g) * idf_g / || (1 + ln c) * idf ||_2      (sublinear tf, l2-normalised)
    idf_g = ln((1 + n) / (1 + df_g)) + 1                        (n training texts, df_g: texts with g)
    P(e | t) = softmax_e(W_e . x + b_e + V_e . x_prev + S_e . x_same)

**Dialogue context** (:func:`query_context`). A query in ELMD is a turn of a dialogue, and emotion
persists there (on CPED's train split, a speaker's turn has the emotion of that speaker's previous
turn in 50% of the cases). ``x_prev`` / ``x_same`` are the TF-IDF rows (same vocabulary and idf) of
the previous turn's text and of the same speaker's previous turn's text; only the *texts* of
earlier turns are used, never an emotion label. ``V`` and ``S`` are fitted with the features
scaled by the context weight w (chosen on valid; w = 0: no context, ``coef_ctx`` absent) and saved
with w folded in. A query without history (or searched without one) gets zero context rows.

The n-grams (:func:`char_ngrams`) are those of scikit-learn's ``char_wb`` analyzer (``wb=True``:
n-grams inside each whitespace-separated word, padded with one space on either side; CPED
transcripts separate phrases by spaces) or ``char`` (over the whole text). Fitting uses
scikit-learn (``TfidfVectorizer`` with this analyzer + multinomial ``LogisticRegression``,
``class_weight='balanced'`` as an option, L2 strength C); prediction is numpy only.

:func:`select_classifier` fits every setting of the grid (analyzer x n-gram range x C) on the
training turns and keeps the best on the valid split by the mean of accuracy and balanced
accuracy (= per-class mean recall: the micro and macro agreement@1 a filter on the prediction
would reach with an unlimited pool — the same average that scoring tuning maximises).

Saved without pickle in the retriever folder: ``emotion_tfidf.safetensors`` (``idf`` (V,),
``coef`` (C, V), ``intercept`` (C,), float32) and ``emotion_tfidf.json`` (the n-gram vocabulary
in column order, labels, analyzer settings, C, valid scores). Both files are part of the
retriever's fingerprint, so an index built with another classifier is refused.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from elmd.errors import ElmdError

WEIGHTS_FILE = "emotion_tfidf.safetensors"
VOCAB_FILE = "emotion_tfidf.json"
GRID_WB = (True, False)
GRID_NGRAMS = ((1, 2), (1, 3))
GRID_C = (0.3, 1.0, 3.0)
GRID_CONTEXT = (0.0, 0.5, 1.0)
_WHITE = re.compile(r"\s\s+")
DEFAULT = {"wb": True, "ngram": (1, 3), "C": 1.0, "context": 0.0}
"""Setting used when there is no valid split to choose on."""


def char_ngrams(text: str, lo: int, hi: int, wb: bool = True) -> list[str]:
    """Character n-grams (lo <= n <= hi) of the lower-cased text, as scikit-learn's ``char_wb``
    (``wb``) or ``char`` analyzer produces them (whitespace runs count as one space)."""
    text = _WHITE.sub(" ", text.lower())
    out: list[str] = []
    for word in (text.split() if wb else [text]):
        w = f" {word} " if wb else word
        for n in range(lo, hi + 1):
            if wb:  # a word shorter than n is one n-gram, and longer n add nothing
                out += [w[i : i + n] for i in range(max(1, len(w) - n + 1))]
                if len(w) <= n:
                    break
            else:
                out += [w[i : i + n] for i in range(len(w) - n + 1)]
    return out


def query_context(history, speaker: str | None) -> tuple[str, str]:
    """``(previous turn's text, the speaker's own previous turn's text)`` of a query whose earlier
    turns are ``history`` (oldest first; items with ``.speaker`` / ``.text``); '' where there is none."""
    history = list(history or ())
    prev = history[-1].text if history else ""
    same = next((t.text for t in reversed(history) if t.speaker == speaker), "") if speaker is not None else ""
    return prev or "", same or ""


def contexts_of(histories) -> list[tuple[str, str]] | None:
    """:func:`query_context` of each ``(history, speaker)`` pair (None stays None)."""
    return None if histories is None else [query_context(h, sp) for h, sp in histories]


def _pack(gram: str) -> int:
    """One int64 per n-gram of up to 3 characters: code point + 1 in 21-bit fields (0 = none)."""
    return sum((ord(c) + 1) << (21 * j) for j, c in enumerate(gram)) if len(gram) <= 3 else -1


@dataclass
class TfidfClassifier:
    """``P(emotion | text)`` of the module docstring; ``labels[i]`` is row i of ``coef``."""

    vocab: list[str]
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    labels: list[str]
    ngram: tuple[int, int] = (1, 3)
    wb: bool = True
    info: dict = field(default_factory=dict)
    coef_ctx: np.ndarray | None = None
    """``(2, C, V)`` weights of the previous turn's and the same speaker's previous turn's n-grams
    (context weight folded in); None = a classifier of the utterance alone."""

    def __post_init__(self):
        self._ids = {g: i for i, g in enumerate(self.vocab)}
        self._coef_t = np.ascontiguousarray(self.coef.T, dtype=np.float32)  # (V, C): one row per n-gram
        # (3V, C): the utterance's, the previous turn's and the same speaker's weights, stacked so that
        # one sparse pass over the 3N texts (column + block * V) scores all three
        self._all_t = (None if self.coef_ctx is None else
                       np.ascontiguousarray(np.concatenate([self.coef, *self.coef_ctx], axis=1).T, dtype=np.float32))

    def sparse(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The texts' TF-IDF rows as flat ``(cols, values, lengths)``: row i is the next
        ``lengths[i]`` entries (unknown n-grams dropped; values l2-normalised per row)."""
        v = max(len(self.vocab), 1)
        row, ids = self._gram_ids(texts) if self.ngram[1] <= 3 else self._gram_ids_slow(texts)
        keep = ids >= 0
        keys, counts = np.unique(row[keep] * v + ids[keep], return_counts=True)  # sorted by row, then column
        col = keys % v
        lengths = np.bincount(keys // v, minlength=len(texts)).astype(np.int64)
        vals = (1.0 + np.log(counts.astype(np.float32))) * self.idf[col]
        if len(col):
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[lengths > 0]
            norms = np.sqrt(np.add.reduceat(vals * vals, starts))
            vals = vals / np.repeat(norms, lengths[lengths > 0])
        return col, vals.astype(np.float32), lengths

    def _gram_ids_slow(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(text index, vocabulary column or -1) of every n-gram of every text, via :func:`char_ngrams`."""
        grams = [char_ngrams(t, *self.ngram, self.wb) for t in texts]
        get = self._ids.get
        ids = np.fromiter((get(g, -1) for gs in grams for g in gs), np.int64, sum(map(len, grams)))
        return np.repeat(np.arange(len(texts), dtype=np.int64), [len(g) for g in grams]), ids

    def _gram_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`_gram_ids_slow`, vectorised for n-grams of up to 3 characters: each n-gram is
        packed into one int64 (21 bits per code point + 1) and looked up by binary search."""
        if not hasattr(self, "_keys"):
            keys = np.array([_pack(g) for g in self.vocab], np.int64)
            order = np.argsort(keys)
            self._keys, self._key_cols = keys[order], order.astype(np.int64)
        segs = [[f" {w} " for w in _WHITE.sub(" ", t.lower()).split()] if self.wb else [_WHITE.sub(" ", t.lower())]
                for t in texts]
        flat = [w for ws in segs for w in ws]
        if not flat or not len(self._keys):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cp = np.frombuffer("".join(flat).encode("utf-32-le"), np.uint32).astype(np.int64) + 1
        seg_len = np.fromiter(map(len, flat), np.int64, len(flat))
        seg_text = np.repeat(np.arange(len(texts), dtype=np.int64), [len(ws) for ws in segs])
        pos_seg = np.repeat(np.arange(len(flat)), seg_len)
        left = np.repeat(np.cumsum(seg_len), seg_len) - np.arange(len(cp))  # characters left in the segment
        pad = np.concatenate([cp, np.zeros(3, np.int64)])
        rows, ids = [], []
        for n in range(self.ngram[0], self.ngram[1] + 1):
            at = np.flatnonzero(left >= n)
            key = sum(pad[at + j] << (21 * j) for j in range(n))
            hit = np.minimum(np.searchsorted(self._keys, key), len(self._keys) - 1)
            rows.append(seg_text[pos_seg[at]])
            ids.append(np.where(self._keys[hit] == key, self._key_cols[hit], -1))
        return np.concatenate(rows), np.concatenate(ids)

    def logits(self, texts: list[str], contexts: list[tuple[str, str]] | None = None) -> np.ndarray:
        """``(N, C)`` ``W x + b`` (+ the context terms when the classifier has them and ``contexts``,
        one :func:`query_context` pair per text, is given); a text without a known n-gram gets the
        intercept alone."""
        n = len(texts)
        use_ctx = self._all_t is not None and contexts is not None
        if use_ctx and len(contexts) != n:
            raise ValueError(f"{n} texts but {len(contexts)} contexts")
        rows = list(texts) + ([c[0] for c in contexts] + [c[1] for c in contexts] if use_ctx else [])
        z = np.zeros((len(rows), len(self.intercept)), np.float32)
        col, vals, lengths = self.sparse(rows)
        if len(col):
            if use_ctx:  # row r belongs to block r // n: its columns index that block's weights
                col = col + np.repeat(np.arange(len(rows)) // max(n, 1), lengths) * len(self.vocab)
            nz = lengths > 0
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nz]
            z[nz] = np.add.reduceat((self._all_t if use_ctx else self._coef_t)[col] * vals[:, None], starts, axis=0)
        return self.intercept.astype(np.float32)[None, :] + z.reshape(-1, n, z.shape[1]).sum(axis=0) if n else z

    def predict_proba(self, texts: list[str], contexts: list[tuple[str, str]] | None = None) -> np.ndarray:
        """``(N, C)`` float32 softmax of :meth:`logits`."""
        z = self.logits(list(texts), contexts)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        from elmd.io import atomic_write_json

        folder = Path(folder)
        tensors = {"idf": self.idf.astype(np.float32), "coef": self.coef.astype(np.float32),
                   "intercept": self.intercept.astype(np.float32)}
        if self.coef_ctx is not None:
            tensors["coef_ctx"] = self.coef_ctx.astype(np.float32)
        save_file(tensors, str(folder / WEIGHTS_FILE))
        atomic_write_json(folder / VOCAB_FILE, {"format": "elmd-emotion-tfidf/1", "labels": self.labels,
                                                "ngram": list(self.ngram), "wb": self.wb, "info": self.info,
                                                "vocab": self.vocab})

    @classmethod
    def load(cls, folder: str | Path) -> "TfidfClassifier":
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
            w = load_file(str(folder / WEIGHTS_FILE))
            clf = cls(list(meta["vocab"]), w["idf"], w["coef"], w["intercept"], list(meta["labels"]),
                      tuple(meta["ngram"]), bool(meta["wb"]), dict(meta.get("info") or {}), w.get("coef_ctx"))
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise ElmdError(f"{folder}: unreadable TF-IDF emotion classifier ({WEIGHTS_FILE} + {VOCAB_FILE}: "
                            f"{type(e).__name__}: {e}) — retrain it with `elmd retriever train`") from None
        ctx_ok = clf.coef_ctx is None or clf.coef_ctx.shape == (2, *clf.coef.shape)
        if clf.coef.shape != (len(clf.labels), len(clf.vocab)) or clf.idf.shape != (len(clf.vocab),) or not ctx_ok:
            raise ElmdError(f"{folder}: {WEIGHTS_FILE} shapes {clf.coef.shape} / {clf.idf.shape} do not match "
                            f"{len(clf.labels)} labels x {len(clf.vocab)} n-grams of {VOCAB_FILE} — retrain it")
        return clf


def fit_classifier(texts: list[str], labels: list[int], names: list[str], C: float = 1.0,
                   ngram: tuple[int, int] = (1, 3), wb: bool = True, balanced: bool = True,
                   contexts: list[tuple[str, str]] | None = None, context: float = 0.0) -> TfidfClassifier:
    """Fit TF-IDF + multinomial logistic regression (scikit-learn) on ``texts`` with class ids
    ``labels`` into ``names``; a class absent from the data never gets probability mass. With
    ``context`` > 0 and ``contexts`` (one :func:`query_context` pair per text) the features are
    ``[x ; w x_prev ; w x_same]`` (w = ``context``; same vocabulary and idf, fitted on ``texts``)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels)
    if len(set(y.tolist())) < 2:
        raise ElmdError(f"the TF-IDF emotion classifier needs labelled texts of at least two emotions, got "
                        f"{sorted({names[i] for i in set(y.tolist())})} — check the training data's labels")
    use_ctx = bool(context) and contexts is not None
    vec = TfidfVectorizer(analyzer=lambda t: char_ngrams(t, *ngram, wb), sublinear_tf=True, lowercase=False)
    x = vec.fit_transform(texts)
    if use_ctx:
        x = hstack([x] + [context * vec.transform([c[j] for c in contexts]) for j in (0, 1)]).tocsr()
    lr = LogisticRegression(C=C, class_weight="balanced" if balanced else None, max_iter=3000).fit(x, y)
    vocab = [None] * len(vec.vocabulary_)
    for g, i in vec.vocabulary_.items():
        vocab[i] = g
    v = len(vocab)
    coef = np.zeros((len(names), x.shape[1]), np.float32)
    intercept = np.full(len(names), -1e4, np.float32)
    if len(lr.classes_) == 2:  # binary sklearn keeps one row: p(class 1) = sigmoid(w.x + b) = softmax([0, w.x + b])
        coef[lr.classes_[1]], intercept[lr.classes_[1]] = lr.coef_[0], lr.intercept_[0]
        intercept[lr.classes_[0]] = 0.0
    else:
        coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    ctx = np.stack([coef[:, v:2 * v], coef[:, 2 * v:]]) * context if use_ctx else None
    return TfidfClassifier(vocab, vec.idf_.astype(np.float32), np.ascontiguousarray(coef[:, :v]), intercept,
                           list(names), tuple(ngram), wb,
                           {"C": C, "balanced": balanced, "context": context if use_ctx else 0.0,
                            "train_texts": len(texts)}, ctx)


def accuracy_balanced(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean per-class recall over the classes present in ``gold``)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    if not len(gold):
        return 0.0, 0.0
    recalls = [float((pred[gold == c] == c).mean()) for c in np.unique(gold)]
    return float((gold == pred).mean()), float(np.mean(recalls))


def select_classifier(texts, labels, names, valid_texts=None, valid_labels=None, balanced: bool = True,
                      grid=None, log=print, contexts=None, valid_contexts=None) -> TfidfClassifier:
    """Fit each setting of ``grid`` (dicts wb / ngram / C / context; default: the module's analyzer x
    n-gram range x C grid) and keep the best by valid (accuracy + balanced accuracy) / 2; the first
    setting wins ties. With ``contexts`` and ``valid_contexts`` (and the default grid) the context
    weights of :data:`GRID_CONTEXT` are then tried at the best setting (a second, cheaper stage: a
    context fit costs ~3 plain ones) and kept only when they score higher. Without valid data,
    :data:`DEFAULT` is fitted."""
    if not valid_texts:
        return fit_classifier(texts, labels, names, DEFAULT["C"], DEFAULT["ngram"], DEFAULT["wb"], balanced)
    staged = grid is None and contexts is not None and valid_contexts is not None
    grid = grid or [{"wb": wb, "ngram": ng, "C": c, "context": 0.0}
                    for wb, ng, c in itertools.product(GRID_WB, GRID_NGRAMS, GRID_C)]
    best, best_score, rows = None, -1.0, []

    def trial(g):
        nonlocal best, best_score
        clf = fit_classifier(texts, labels, names, g["C"], tuple(g["ngram"]), g["wb"], balanced, contexts,
                             g.get("context", 0.0))
        acc, bal = accuracy_balanced(valid_labels, clf.predict_proba(valid_texts, valid_contexts).argmax(axis=1))
        rows.append({**g, "ngram": list(g["ngram"]), "valid_acc": round(acc, 4), "valid_bal_acc": round(bal, 4)})
        if (acc + bal) / 2 > best_score:
            best, best_score = clf, (acc + bal) / 2
            best.info.update({"valid_acc": round(acc, 4), "valid_bal_acc": round(bal, 4)})

    for g in grid:
        trial(g)
    if staged:
        top = {"wb": best.wb, "ngram": best.ngram, "C": best.info["C"]}
        for w in GRID_CONTEXT:
            if w:
                trial({**top, "context": w})
    best.info["grid"] = rows
    log(f"TF-IDF emotion classifier: {'char_wb' if best.wb else 'char'} {best.ngram} C={best.info['C']} "
        f"context={best.info['context']:g} valid acc {best.info['valid_acc']} balanced {best.info['valid_bal_acc']} "
        f"({len(rows)} settings tried)")
    return best
