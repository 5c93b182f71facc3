"""Emotion-aware scoring of retrieved candidates (issue 13; extends Sec. 3.3's cosine retrieval).

The paper ranks the indexed utterances u' by cosine alone. The index already stores every u''s
emotion label, and the retriever's emotion head (:class:`retrieval.encoder.EmotionHead`) gives
``P(emotion | q)`` for a query, so a candidate's score can reward emotional agreement::

    cosine:  score = cos(q, u')
    soft:    score = cos(q, u') + beta * P~(emotion(u') | q)
    filter:  score = cos(q, u') + FILTER_BETA * [emotion(u') == argmax_e P~(e | q)]

    P~(e | q) = P(e | q) * pi_e^alpha / sum_e' P(e' | q) * pi_e'^alpha

``P(e | q)`` comes from ``source``: the retriever's emotion head (``head``), the TF-IDF
classifier of :mod:`retrieval.tfidf` (``tfidf``) or the mean of both (``mean``).

``pi`` is the frequency of each emotion among the index's u' and ``alpha`` (``prior``) a logit
adjustment: 0 leaves the head's posterior as it is; 1 multiplies the class prior back into a
head trained with the class-balanced loss (more of the frequent emotions: micro agreement up,
macro agreement down); tuning picks it on the valid split.

Scores are computed for the ``pool`` best cosine candidates (FAISS top-``pool``, plus as many as
same-dialogue exclusion may remove) and re-ranked. ``filter``'s bonus exceeds any cosine gap
(cosines lie in [-1, 1]), so u' of the predicted emotion come first in cosine order and, when
fewer than k candidates match (or none), the best remaining candidates follow in cosine order:
the fallback is plain cosine retrieval. With ``pool`` >= the index size, 'filter' is the nearest u'
of the predicted emotion, searched per emotion (:mod:`retrieval.partition`). A u' without a label
gets no bonus. Excluded entries
(the query's own dialogue, degenerate keys) get score -inf and are never returned.

``beta`` / ``pool`` / ``prior`` / ``source`` (soft) and ``pool`` / ``prior`` / ``source`` (filter) are
tuned on the valid split by
:func:`retrieval.tune.tune_scoring` and stored with the retriever (retriever.json ``scoring``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from elmd.errors import ElmdError

MODES = ("cosine", "soft", "filter")
SOURCES = ("head", "tfidf", "mean")
FILTER_BETA = 4.0
"""Bonus of a candidate of the predicted emotion under 'filter' (> 2, the largest cosine gap)."""


@dataclass(frozen=True)
class Scoring:
    """How candidates are ranked at search time (module docstring)."""

    mode: str = "cosine"
    """'cosine', 'soft' or 'filter'."""
    beta: float = 0.0
    """Weight of P(emotion(u') | q) under 'soft'."""
    pool: int = 20
    """Cosine candidates re-scored per query (ignored by 'cosine')."""
    prior: float = 0.0
    """Exponent alpha of the index's emotion frequencies multiplied into P(e | q) (0 = none)."""
    source: str = "head"
    """Classifier giving P(e | q): 'head', 'tfidf' or 'mean' (ignored by 'cosine')."""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ElmdError(f"scoring mode '{self.mode}' — allowed: {', '.join(MODES)}")
        if self.source not in SOURCES:
            raise ElmdError(f"scoring source '{self.source}' — allowed: {', '.join(SOURCES)}")
        if self.beta < 0 or self.pool < 1:
            raise ElmdError(f"scoring beta={self.beta} must be >= 0 and pool={self.pool} >= 1")

    @property
    def emotion_aware(self) -> bool:
        return self.mode != "cosine"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict | None) -> "Scoring":
        raw = raw or {}
        return cls(str(raw.get("mode", "cosine")), float(raw.get("beta", 0.0)), int(raw.get("pool", 20)),
                   float(raw.get("prior", 0.0)), str(raw.get("source", "head")))

    def describe(self) -> str:
        tail = (f" prior={self.prior:g}" if self.prior else "") + f" P={self.source}"
        pool = "all" if self.pool >= 10 ** 9 else self.pool  # retrieval.tune.WHOLE_INDEX
        if self.mode == "soft":
            return f"soft β={self.beta:g} pool={pool}{tail}"
        return f"filter pool={pool}{tail}" if self.mode == "filter" else "cosine"


def resolve_scoring(rc, info: dict, sources: tuple[str, ...]) -> Scoring:
    """The scoring that ``retrieval.scoring`` / ``beta`` / ``pool`` / ``emotion_classifier`` select for
    a retriever whose retriever.json is ``info`` (its tuned ``scoring``, if any) and whose emotion
    classifiers are ``sources`` (:attr:`retrieval.encoder.Retriever.classifiers`)."""
    tuned = Scoring.from_dict(info.get("scoring")) if sources else Scoring()
    mode = tuned.mode if rc.scoring == "auto" else rc.scoring
    if mode != "cosine" and not sources:
        raise ElmdError(f"retrieval.scoring={rc.scoring} needs a retriever with an emotion classifier — train one "
                        "with `elmd retriever train` (ERT on), or set retrieval.scoring=cosine")
    if mode == "cosine":
        return Scoring()
    source = tuned.source if rc.emotion_classifier == "auto" else rc.emotion_classifier
    if tuned.mode == "cosine" and rc.emotion_classifier == "auto":
        source = "tfidf" if "tfidf" in sources else sources[0]
    if source not in sources:
        raise ElmdError(f"retrieval.emotion_classifier={source}: the retriever has only {', '.join(sources)} — "
                        f"retrain it with retrieval.emotion_classifier={source}, or pick one of those")
    beta = rc.beta if rc.beta is not None else (tuned.beta if tuned.mode == "soft" else 1.0)
    pool = rc.pool if rc.pool is not None else (tuned.pool if tuned.mode != "cosine" else 20)
    return Scoring(mode, float(beta) if mode == "soft" else 0.0, int(pool), tuned.prior, source)


def adjust(probs: np.ndarray, prior: np.ndarray | None, alpha: float) -> np.ndarray:
    """``P~(e | q)`` of the module docstring (``probs`` itself when alpha is 0 or no prior is given)."""
    if not alpha or prior is None:
        return probs
    p = probs * np.power(np.maximum(prior, 1e-6), alpha)[None, :]
    return p / p.sum(axis=1, keepdims=True)


def emotion_bonus(labels: np.ndarray, probs: np.ndarray, scoring: Scoring) -> np.ndarray:
    """``(N, K)`` bonus of each candidate: ``beta * P(label | q)`` (soft) or ``FILTER_BETA`` when the
    label is the predicted one (filter); 0 for unlabelled candidates (label -1) and for 'cosine'.
    ``labels``: ``(N, K)`` class ids of the candidates; ``probs``: ``(N, C)``."""
    if not scoring.emotion_aware:
        return np.zeros(labels.shape, dtype=np.float32)
    known = labels >= 0
    safe = np.where(known, labels, 0)
    if scoring.mode == "soft":
        bonus = scoring.beta * np.take_along_axis(probs, safe, axis=1)
    else:
        bonus = FILTER_BETA * (safe == probs.argmax(axis=1)[:, None])
    return np.where(known, bonus, 0.0).astype(np.float32)


def rank(cosine: np.ndarray, labels: np.ndarray, allowed: np.ndarray, probs: np.ndarray | None,
         scoring: Scoring, k: int, prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank ``(N, K)`` candidates: returns ``(order, score)``, each ``(N, min(k, K))``: column
    positions of the best candidates and their scores (-inf where fewer than k are ``allowed``).
    Ties keep the cosine order (stable sort). ``prior``: ``(C,)`` emotion frequencies of the index."""
    if scoring.emotion_aware and probs is None:
        raise ElmdError("emotion-aware scoring needs P(emotion | q) — the retriever has no emotion classifier")
    bonus = emotion_bonus(labels, adjust(probs, prior, scoring.prior), scoring) if scoring.emotion_aware else 0.0
    score = np.where(allowed, cosine + bonus, -np.inf)
    kk = min(k, score.shape[1])
    order = np.argsort(-score, axis=1, kind="stable")[:, :kk]
    return order, np.take_along_axis(score, order, axis=1)
