"""Metric functions: hand-computed cases and equality with the reference libraries (nltk, rouge_chinese)."""

from __future__ import annotations

import math

import jieba
import pytest
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu
from rouge_chinese import Rouge

from elmd.evaluation import metrics as M
from elmd.evaluation.tokenize import chars, words

PAIRS = [  # (hypothesis, reference): fixed Chinese pairs
    ("我今天很高兴，谢谢你来看我。", "我很高兴见到你，谢谢你。"),
    ("你别管我！我要一个人待着。", "别管我，走开！"),
    ("这件事情我们明天再说吧。", "明天再说吧，我今天太累了。"),
    ("好的好的，我知道了。", "知道了，你放心吧。"),
    ("你怎么又迟到了？", "对不起，路上堵车了。"),
]


# ---------------------------------------------------------------- BLEU

def test_bleu2_hand_computed_on_four_tokens():
    # unigram precision 3/4, bigram precision 2/3 (ab, bc match; cd does not), equal lengths -> BP 1
    assert M.sentence_bleu(list("abcd"), list("abce"), 2) == pytest.approx(math.sqrt(3 / 4 * 2 / 3))


def test_bleu2_brevity_penalty_hand_computed():
    # all n-grams match, hyp 3 vs ref 4 tokens -> BP = exp(1 - 4/3)
    assert M.sentence_bleu(list("abc"), list("abcd"), 2) == pytest.approx(math.exp(1 - 4 / 3))


def test_bleu2_method3_smoothing_hand_computed():
    # p1 = 2/4; no bigram matches among 3 -> method3 gives 1 / (2^1 * 3)
    assert M.sentence_bleu(list("abcd"), list("axcy"), 2) == pytest.approx(math.sqrt(2 / 4 * 1 / 6))


@pytest.mark.parametrize("n", [2, 4])
def test_sentence_bleu_equals_nltk_on_chinese_pairs(n):
    smooth = SmoothingFunction().method3
    for hyp, ref in PAIRS:
        expected = sentence_bleu([list(ref)], list(hyp), weights=(1 / n,) * n, smoothing_function=smooth)
        assert M.sentence_bleu(chars(hyp), chars(ref), n) == pytest.approx(expected, abs=1e-12)


def test_corpus_bleu_equals_nltk_and_differs_from_sentence_mean():
    hyps, refs = [chars(h) for h, _ in PAIRS], [chars(r) for _, r in PAIRS]
    expected = corpus_bleu([[r] for r in refs], hyps, smoothing_function=SmoothingFunction().method3)
    got = M.corpus_bleu(hyps, refs, 4)
    assert got == pytest.approx(expected, abs=1e-12)
    mean_sentence = sum(M.sentence_bleu(h, r, 4) for h, r in zip(hyps, refs)) / len(hyps)
    assert abs(got - mean_sentence) > 1e-3


def test_bleu_empty_hypothesis_or_reference_is_zero():
    assert M.sentence_bleu([], list("abc"), 4) == 0.0
    assert M.sentence_bleu(list("abc"), [], 4) == 0.0
    assert M.corpus_bleu([], [], 4) == 0.0
    # an empty hypothesis inside a corpus lowers the score through the brevity penalty, no crash
    assert 0 < M.corpus_bleu([list("abcd"), []], [list("abcd"), list("xyz")], 2) < 1


# ---------------------------------------------------------------- METEOR

def test_meteor_exact_match_hand_computed():
    # 2 matches, P = 1, R = 2/3; two chunks -> frag 1, penalty 0.5 * 1^3
    p, r = 1.0, 2 / 3
    fmean = p * r / (0.9 * p + 0.1 * r)
    assert M.meteor(["我", "高兴"], ["我", "很", "高兴"]) == pytest.approx(fmean * (1 - 0.5))
    # identical 3-token sentences: one chunk -> penalty 0.5 * (1/3)^3
    assert M.meteor(["我", "很", "高兴"], ["我", "很", "高兴"]) == pytest.approx(1 - 0.5 / 27)


def test_meteor_uses_stems_but_no_wordnet_synonyms():
    # Porter stems run/run match: one match, one chunk of one -> (1 - 0.5) * 1
    assert M.meteor(["runs"], ["running"]) == pytest.approx(0.5)
    # big/large are WordNet synonyms: no match without WordNet (and WordNet is never loaded)
    assert M.meteor(["big"], ["large"]) == 0.0
    assert M.meteor([], ["我"]) == 0.0 and M.meteor(["我"], []) == 0.0


# ---------------------------------------------------------------- ROUGE

def test_rouge1_from_overlap_counts():
    # distinct unigrams: hyp {我, 今天, 很, 高兴}, ref {我, 很, 开心}, overlap 2 -> P 2/4, R 2/3
    p, r = 2 / 4, 2 / 3
    got = M.rouge(["我", "今天", "很", "高兴"], ["我", "很", "开心"])
    assert got["rouge-1"] == pytest.approx(2 * p * r / (p + r), abs=1e-7)
    assert got["rouge-l"] == pytest.approx(2 * p * r / (p + r), abs=1e-7)  # LCS = 我 很


def test_rouge1_counts_distinct_unigrams_rougel_counts_lcs():
    got = M.rouge(["好", "好", "好"], ["好", "好"])
    assert got["rouge-1"] == pytest.approx(1.0, abs=1e-7)  # sets {好} and {好}
    assert got["rouge-l"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1), abs=1e-7)  # LCS 2: P 2/3, R 1


def test_rouge_equals_rouge_chinese_on_jieba_words():
    for hyp, ref in PAIRS:
        expected = Rouge().get_scores(" ".join(jieba.lcut(hyp)), " ".join(jieba.lcut(ref)))[0]
        got = M.rouge(words(hyp), words(ref))
        for k in ("rouge-1", "rouge-2", "rouge-l"):
            assert got[k] == pytest.approx(expected[k]["f"], abs=1e-12)


def test_rouge_empty_is_zero_where_rouge_chinese_raises():
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        Rouge().get_scores("", "我 很 好")
    assert M.rouge([], ["我", "很", "好"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert M.rouge(["我"], [])["rouge-l"] == 0.0


# ---------------------------------------------------------------- Dist-n

def test_distinct_hand_computed():
    hyps = [["a", "b", "a"], ["a", "c"], []]
    assert M.distinct(hyps, 1) == pytest.approx(3 / 5)  # a b a a c -> {a, b, c}
    assert M.distinct(hyps, 2) == pytest.approx(3 / 3)  # ab ba | ac (no n-gram across responses)
    assert M.distinct([["a", "a", "a"]], 2) == pytest.approx(1 / 2)
    assert M.distinct([[], ["a"]], 2) == 0.0


# ---------------------------------------------------------------- emotion

def test_emotion_accuracy_and_macro_f1_hand_computed():
    golds = ["happy", "happy", "sad", "neutral"]
    preds = ["happy", "sad", None, "neutral"]
    got = M.emotion_scores(preds, golds)
    assert got["accuracy"] == pytest.approx(2 / 4)
    # happy: P 1, R 1/2 -> F 2/3; sad: tp 0 -> 0; neutral: 1
    assert got["per_label"]["happy"]["f1"] == pytest.approx(2 / 3)
    assert got["per_label"]["sad"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_macro_f1_matches_sklearn_with_unparsable_as_extra_class():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    golds = ["happy", "sad", "anger", "sad", "fear", "neutral", "happy", "anger"]
    preds = ["happy", "anger", None, "sad", "surprise", None, "sad", "anger"]
    labels = sorted(set(golds) | {p for p in preds if p})  # surprise only predicted: counts
    expected = f1_score(golds, [p or "<none>" for p in preds], labels=labels, average="macro", zero_division=0)
    assert M.emotion_scores(preds, golds)["macro_f1"] == pytest.approx(expected)


def test_emotion_all_unparsable_scores_zero():
    got = M.emotion_scores([None, None], ["happy", "sad"])
    assert got["accuracy"] == 0.0 and got["macro_f1"] == 0.0


# ---------------------------------------------------------------- tokenisation

def test_tokenisations():
    assert chars("我 很\t好!") == ["我", "很", "好", "!"]
    assert words("  ") == [] and words("") == []
    assert words("我今天很高兴 OK") == [w for w in jieba.lcut("我今天很高兴 OK") if w.strip()]
    assert " " not in words("你好 世界")
