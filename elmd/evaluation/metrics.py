"""Response and emotion metrics of the paper's Tables 2 and 3 (Sec. 5.1), as pure functions.

Every function takes already tokenised text (see :mod:`elmd.evaluation.tokenize`) and returns a
score in [0, 1]; :mod:`elmd.evaluation.evaluate` averages them and multiplies by 100.

* **BLEU-n** (:func:`sentence_bleu`): ``nltk.translate.bleu_score.sentence_bleu`` with uniform
  weights (BLEU-2: 1/2, 1/2; BLEU-4: 1/4 each) and ``SmoothingFunction().method3`` (NIST geometric
  smoothing), i.e. what ChatGLM2's ``ptuning/main.py`` computes for BLEU-4.
  :func:`corpus_bleu` is the corpus-level variant (same smoothing) reported as an extra.
* **METEOR** (:func:`meteor`): ``nltk.translate.meteor_score.meteor_score`` (alpha 0.9, beta 3,
  gamma 0.5, lower-casing, Porter stemmer) with exact and stem matching only. nltk's third stage,
  WordNet synonym matching, is English-only and WordNet cannot be downloaded here, so a stand-in
  with no synsets is passed (:class:`NoSynonyms`): a deviation from the paper's METEOR, which
  therefore can differ from ours wherever English synonyms occur (never for Chinese words).
* **ROUGE-1 / ROUGE-L F** (:func:`rouge`): rouge_chinese's ``Rouge`` on space-joined words. Like the
  ``rouge`` package it derives from, ROUGE-N counts *distinct* n-grams (``exclusive=True``), and
  ROUGE-L is the LCS F-measure; F = 2PR / (P + R + 1e-8).
* **Dist-n** (:func:`distinct`): distinct n-grams / all n-grams over all hypotheses (n-grams never
  cross two hypotheses); 0 when there are none.
* **Emotion accuracy / macro-F1** (:func:`emotion_scores`): a ``None`` prediction (label could not
  be parsed) is wrong; macro-F1 averages per-label F1 over the labels present in references or
  predictions (a ``None`` prediction adds a false negative to its gold label and no false positive).

Empty input never raises: a pair whose hypothesis or reference has no tokens scores 0 on BLEU,
METEOR and ROUGE (rouge_chinese itself raises "Hypothesis is empty").
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from nltk.translate import bleu_score as _bleu
from nltk.translate.meteor_score import meteor_score as _nltk_meteor
from rouge_chinese import Rouge

BLEU_SMOOTHING = "method3"
"""Name of the nltk SmoothingFunction method used by every BLEU score here."""


def bleu_weights(n: int) -> tuple[float, ...]:
    """Uniform weights of BLEU-n."""
    if n < 1:
        raise ValueError(f"BLEU order must be >= 1, got {n}")
    return (1.0 / n,) * n


def _smoothing():
    return getattr(_bleu.SmoothingFunction(), BLEU_SMOOTHING)


def sentence_bleu(hyp: Sequence[str], ref: Sequence[str], n: int = 4) -> float:
    """Smoothed sentence BLEU-n of one hypothesis against one reference; 0 if either is empty."""
    if not hyp or not ref:
        return 0.0
    return float(_bleu.sentence_bleu([list(ref)], list(hyp), weights=bleu_weights(n), smoothing_function=_smoothing()))


def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], n: int = 4) -> float:
    """Corpus BLEU-n (n-gram counts summed over all pairs before dividing); empty pairs count."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        return 0.0
    score = _bleu.corpus_bleu([[list(r)] for r in refs], [list(h) for h in hyps],
                              weights=bleu_weights(n), smoothing_function=_smoothing())
    return float(score)


class NoSynonyms:
    """WordNet stand-in for nltk's METEOR: no word has synonyms, so only exact and stem
    matches count (and nltk never tries to load the WordNet corpus)."""

    def synsets(self, word):
        return []


_NO_SYNONYMS = NoSynonyms()


def meteor(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """nltk METEOR with exact + Porter-stem matching (no WordNet synonyms); 0 if either is empty."""
    if not hyp or not ref:
        return 0.0
    return float(_nltk_meteor([list(ref)], list(hyp), wordnet=_NO_SYNONYMS))


def rouge(hyp: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    """rouge_chinese F-scores ``{"rouge-1", "rouge-2", "rouge-l"}`` of two word lists; all 0 if
    either is empty."""
    keys = ("rouge-1", "rouge-2", "rouge-l")
    if not hyp or not ref:
        return dict.fromkeys(keys, 0.0)
    scores = Rouge(metrics=list(keys), stats=["f"]).get_scores(" ".join(hyp), " ".join(ref))[0]
    return {k: float(scores[k]["f"]) for k in keys}


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct(hyps: Sequence[Sequence[str]], n: int) -> float:
    """Dist-n: number of distinct n-grams / number of n-grams, over all hypotheses."""
    counts = Counter(g for h in hyps for g in ngrams(h, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def emotion_scores(preds: Sequence[str | None], golds: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-label precision/recall/F1/support of emotion predictions.

    ``None`` in ``preds`` is an unparsable prediction: wrong, and no label's false positive.
    Macro-F1 is the unweighted mean over the labels in ``golds`` ∪ ``preds``.
    """
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions but {len(golds)} gold labels")
    if not golds:
        return {"accuracy": 0.0, "macro_f1": 0.0, "per_label": {}}
    labels = sorted(set(golds) | {p for p in preds if p is not None})
    tp, fp, fn = Counter(), Counter(), Counter()
    for p, g in zip(preds, golds):
        if p == g:
            tp[g] += 1
        else:
            fn[g] += 1
            if p is not None:
                fp[p] += 1
    per_label = {lab: _prf(tp[lab], fp[lab], fn[lab]) for lab in labels}
    return {
        "accuracy": sum(tp.values()) / len(golds),
        "macro_f1": sum(v["f1"] for v in per_label.values()) / len(labels),
        "per_label": per_label,
    }


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn}
