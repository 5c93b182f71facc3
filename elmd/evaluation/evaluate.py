"""`elmd evaluate`: score a prediction file with the metrics of the paper's Table 2 (Sec. 5.1).

Prediction file (written by `elmd generate`; schema :mod:`elmd.inference.predictions`), one JSON
object per line::

    {"sample_id": "d1#3", "emotion_pred": "happy" | null, "response": "...", "reference": "...",
     "reference_emotion": "happy", "demonstration": "...", "generated": "..."}

``emotion_pred`` is null when no label could be parsed from the generated text; ``response`` is
"" when nothing was generated (what `elmd generate` writes; null, as other tools write, is read as
""). Neither makes evaluation fail: both are counted in ``report.json``. A row *without* a
``response`` key, or an ``emotion_pred`` / ``reference_emotion`` outside the label set, is an error
naming ``file:line`` (a misspelt label would silently change Emo-F1). The label set is, in order:
``--labels``, else ``data.labels`` of the run config in the predictions' ``<stem>.meta.json``
(written by `elmd generate`), else M3ED's seven. A file without its ``.meta.json`` is scored with a
warning (what produced it cannot be checked).

Scores (× 100, like Table 2) are *means of per-sample scores* (sentence level), the same
definition as ChatGLM2's ``ptuning/main.py`` so numbers are comparable with ChatGLM2-based work;
Dist-n is a corpus statistic and the corpus-level BLEU is given under ``extra``. Samples with an
empty response stay in every mean with score 0 (dropping them would reward empty outputs).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

import json

from elmd import __version__
from elmd.data.labels import M3ED_LABELS
from elmd.evaluation import metrics as M
from elmd.evaluation.tokenize import CHARS_DOC, WORDS_DOC, chars, words
from elmd.inference.predictions import Prediction, read_predictions  # noqa: F401  (the row schema)
from elmd.io import atomic_write_json, file_sha256

METRICS = ("BLEU-2", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-L", "Dist-1", "Dist-2", "Emo-Acc", "Emo-F1")
"""Columns of Tables 2 and 3, in order; the keys of ``report.json["metrics"]``."""

TOKENISATION = {
    "BLEU-2": CHARS_DOC, "BLEU-4": CHARS_DOC,
    "METEOR": WORDS_DOC, "ROUGE-1": WORDS_DOC, "ROUGE-L": WORDS_DOC,
    "Dist-1": WORDS_DOC, "Dist-2": WORDS_DOC,
    "Emo-Acc": "label ids from the prediction file", "Emo-F1": "label ids from the prediction file",
}

DEFINITIONS = {
    "BLEU-2": f"mean over samples of nltk sentence_bleu, weights (1/2,1/2), SmoothingFunction().{M.BLEU_SMOOTHING}",
    "BLEU-4": f"mean over samples of nltk sentence_bleu, weights (1/4,)*4, SmoothingFunction().{M.BLEU_SMOOTHING}",
    "METEOR": "mean over samples of nltk meteor_score (alpha 0.9, beta 3, gamma 0.5), exact + Porter-stem "
              "matching only: WordNet synonyms disabled (English-only, not available offline)",
    "ROUGE-1": "mean over samples of rouge_chinese rouge-1 F (distinct unigrams)",
    "ROUGE-L": "mean over samples of rouge_chinese rouge-l F (longest common subsequence)",
    "Dist-1": "distinct unigrams / all unigrams over all responses",
    "Dist-2": "distinct bigrams / all bigrams over all responses (within a response)",
    "Emo-Acc": "share of samples whose predicted label equals the reference label (unparsable = wrong)",
    "Emo-F1": "unweighted mean of per-label F1 over labels in references ∪ predictions (unparsable = wrong)",
}

HEAD_METRICS = {"sticker": ("elmd.heads.sticker.evaluate:sticker_metrics", "elmd.heads.sticker.evaluate:format_sticker_summary"),
                "meta": ("elmd.evaluation.generate:meta_scores", "elmd.evaluation.generate:format_meta_summary")}
"""A head's scores: name -> (``module:fn(pred_path) -> dict | None`` (None = the rows carry nothing of that
head), ``module:fn(scores) -> str`` for the terminal); reported under ``report["heads"][name]``."""


def _function(target: str):
    import importlib

    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)


def head_scores(pred_path: str | Path) -> dict:
    """``{head: scores}`` of the heads whose output the prediction rows carry (see :data:`HEAD_METRICS`)."""
    out = {}
    for name, (score, _) in HEAD_METRICS.items():
        scores = _function(score)(pred_path)
        if scores is not None:
            out[name] = scores
    return out


def meta_file(pred_path: str | Path) -> Path:
    """``<stem>.meta.json`` beside a prediction file (what `elmd generate` writes)."""
    pred_path = Path(pred_path)
    return pred_path.with_name(pred_path.stem + ".meta.json")


def label_set_of(pred_path: str | Path, labels=None) -> tuple[tuple[str, ...], str, list[str]]:
    """(label ids, where they came from, warnings) for scoring ``pred_path`` (module docstring)."""
    meta = meta_file(pred_path)
    warnings = []
    config_labels = None
    if meta.is_file():
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            config_labels = ((info.get("config") or {}).get("data") or {}).get("labels")
            if info.get("complete") is False:
                warnings.append(f"{meta}: generation did not finish — scoring the rows written so far "
                                "(run the same `elmd generate` again to complete it)")
        except (ValueError, AttributeError):
            warnings.append(f"{meta}: not valid JSON — its label set is ignored")
    else:
        warnings.append(f"{meta}: not found — scoring {Path(pred_path).name} without checking what produced it "
                        "(files written by `elmd generate` have one)")
    if labels:
        return tuple(labels), "--labels", warnings
    if config_labels:
        return tuple(config_labels), str(meta), warnings
    return M3ED_LABELS, "M3ED's seven (default)", warnings


def read_checked(pred_path: str | Path, labels: tuple[str, ...], source: str) -> list[Prediction]:
    """The rows of ``pred_path`` checked against ``labels`` (see :func:`read_predictions`)."""
    return read_predictions(pred_path, labels, source)


def score_predictions(preds: list[Prediction], progress: bool = False) -> dict:
    """Metrics (× 100), extras, counts and per-label emotion scores of ``preds``."""
    sums = dict.fromkeys(("BLEU-2", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-2", "ROUGE-L"), 0.0)
    hyp_chars, ref_chars, hyp_words = [], [], []
    for p in tqdm(preds, desc="scoring", unit="sample", disable=None if progress else True):
        hc, rc, hw, rw = chars(p.response), chars(p.reference), words(p.response), words(p.reference)
        sums["BLEU-2"] += M.sentence_bleu(hc, rc, 2)
        sums["BLEU-4"] += M.sentence_bleu(hc, rc, 4)
        sums["METEOR"] += M.meteor(hw, rw)
        r = M.rouge(hw, rw)
        sums["ROUGE-1"] += r["rouge-1"]
        sums["ROUGE-2"] += r["rouge-2"]
        sums["ROUGE-L"] += r["rouge-l"]
        hyp_chars.append(hc)
        ref_chars.append(rc)
        hyp_words.append(hw)
    n = len(preds)
    metrics = {k: 100 * sums[k] / n for k in ("BLEU-2", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-L")}
    metrics["Dist-1"] = 100 * M.distinct(hyp_words, 1)
    metrics["Dist-2"] = 100 * M.distinct(hyp_words, 2)
    emo_items = [p for p in preds if p.reference_emotion is not None]
    emo = M.emotion_scores([p.emotion_pred for p in emo_items], [p.reference_emotion for p in emo_items]) if emo_items else None
    metrics["Emo-Acc"] = 100 * emo["accuracy"] if emo else None
    metrics["Emo-F1"] = 100 * emo["macro_f1"] if emo else None
    extra = {
        "ROUGE-2": 100 * sums["ROUGE-2"] / n,
        "BLEU-2 (corpus)": 100 * M.corpus_bleu(hyp_chars, ref_chars, 2),
        "BLEU-4 (corpus)": 100 * M.corpus_bleu(hyp_chars, ref_chars, 4),
        "Dist-1 (chars)": 100 * M.distinct(hyp_chars, 1),
        "Dist-2 (chars)": 100 * M.distinct(hyp_chars, 2),
    }
    counts = {
        "samples": n,
        "empty_hypotheses": sum(1 for h in hyp_chars if not h),
        "empty_references": sum(1 for r in ref_chars if not r),
        "emotion_samples": len(emo_items),
        "unparsable_emotions": sum(1 for p in emo_items if p.emotion_pred is None),
    }
    return {"metrics": metrics, "extra": extra, "counts": counts,
            "emotion_per_label": emo["per_label"] if emo else {}}


def resolve_out(out: str | Path) -> Path:
    """``--out`` is the report file when it ends in .json, else the folder to put report.json in."""
    out = Path(out)
    return out if out.suffix == ".json" else out / "report.json"


def evaluate_file(pred_path: str | Path, out: str | Path, name: str | None = None, progress: bool = True,
                  labels=None) -> dict:
    """Score ``pred_path`` and write the report (atomically) to ``out``; returns the report
    (``report["warnings"]``: lines for the user, e.g. a missing ``.meta.json``)."""
    pred_path = Path(pred_path)
    label_ids, source, warnings = label_set_of(pred_path, labels)
    preds = read_checked(pred_path, label_ids, source)
    report = {"name": name} if name else {}
    report.update(score_predictions(preds, progress=progress))
    heads = head_scores(pred_path)
    if heads:
        report["heads"] = heads
    report["labels"] = {"ids": list(label_ids), "from": source}
    report["warnings"] = warnings
    report["scale"] = "scores x 100; per-sample means except Dist-n and the corpus BLEU extras"
    report["tokenisation"] = dict(TOKENISATION)
    report["definitions"] = dict(DEFINITIONS)
    report["extra_definitions"] = {
        "ROUGE-2": "mean over samples of rouge_chinese rouge-2 F (jieba words, distinct bigrams)",
        "BLEU-n (corpus)": f"nltk corpus_bleu over all samples (characters, SmoothingFunction().{M.BLEU_SMOOTHING})",
        "Dist-n (chars)": "Dist-n over characters instead of jieba words",
    }
    report["empty_handling"] = "an empty response or reference scores 0 on BLEU/METEOR/ROUGE and stays in the mean"
    report["predictions"] = {"path": str(pred_path.resolve()), "sha256": file_sha256(pred_path)}
    report["elmd_version"] = __version__
    atomic_write_json(resolve_out(out), report)
    return report


def format_summary(report: dict) -> str:
    """A few lines for the terminal: the Table-2 metrics and the counts."""
    m, c = report["metrics"], report["counts"]
    vals = "  ".join(f"{k} {'-' if m[k] is None else format(m[k], '.2f')}" for k in METRICS)
    heads = "".join("\n" + _function(HEAD_METRICS[n][1])(v) for n, v in report.get("heads", {}).items() if n in HEAD_METRICS)
    return (f"{vals}\nsamples {c['samples']}  empty responses {c['empty_hypotheses']}  "
            f"empty references {c['empty_references']}  unparsable emotions {c['unparsable_emotions']}") + heads
