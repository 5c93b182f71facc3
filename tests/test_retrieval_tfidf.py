"""The TF-IDF emotion classifier of the query (retrieval/tfidf.py): hand-computed probabilities,
agreement with scikit-learn, save / load without pickle, selection on valid, and its use by
emotion-aware scoring (tuning picks it; an index built with another classifier is refused)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from retrieval.tfidf import (VOCAB_FILE, WEIGHTS_FILE, TfidfClassifier, accuracy_balanced, char_ngrams,
                             fit_classifier, select_classifier)

NAMES = ["happy", "sad", "anger"]
TEXTS = ["好 开心", "开心 开心 啊", "好 难过", "难过 想哭", "气 死了", "滚 气死"]
LABELS = [0, 0, 1, 1, 2, 2]


def test_char_ngrams_match_sklearn_analyzers():
    from sklearn.feature_extraction.text import TfidfVectorizer

    for text in ["你好 我是谁啊  AB", "a", "我\t  你  x", "", "太好了"]:
        for wb, ng in [(True, (1, 2)), (True, (1, 3)), (True, (2, 5)), (False, (1, 3))]:
            sk = TfidfVectorizer(analyzer="char_wb" if wb else "char", ngram_range=ng).build_analyzer()
            assert char_ngrams(text, *ng, wb) == sk(text)
    assert char_ngrams("好 气", 1, 2) == [" ", "好", " ", " 好", "好 ", " ", "气", " ", " 气", "气 "]


def test_hand_computed_probabilities():
    # vocabulary {好, 气}, idf (1, 2); "好好气": counts 好 2, 气 1 -> sublinear tf (1 + ln 2, 1)
    clf = TfidfClassifier(["好", "气"], np.array([1.0, 2.0], np.float32),
                          np.array([[2.0, 0.0], [0.0, 1.0]], np.float32), np.array([0.0, 0.5], np.float32),
                          ["happy", "anger"], ngram=(1, 1), wb=False)
    v = np.array([1 + math.log(2), 2.0])
    x = v / np.linalg.norm(v)  # (0.646, 0.763): logits (1.292, 1.263)
    z = np.array([2 * x[0], x[1] + 0.5])
    want = np.exp(z) / np.exp(z).sum()
    got = clf.predict_proba(["好好气", "未知"])
    assert got[0] == pytest.approx(want, abs=1e-6) and got[0] == pytest.approx([0.5073, 0.4927], abs=1e-4)
    # no known n-gram: the intercept alone
    assert got[1] == pytest.approx(np.exp([0, 0.5]) / np.exp([0, 0.5]).sum(), abs=1e-6)


@pytest.mark.parametrize("wb,ngram,balanced", [(True, (1, 2), True), (False, (1, 3), False)])
def test_fit_matches_sklearn_pipeline(wb, ngram, balanced):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    clf = fit_classifier(TEXTS, LABELS, NAMES, C=2.0, ngram=ngram, wb=wb, balanced=balanced)
    vec = TfidfVectorizer(analyzer="char_wb" if wb else "char", ngram_range=ngram, sublinear_tf=True)
    lr = LogisticRegression(C=2.0, class_weight="balanced" if balanced else None, max_iter=3000)
    lr.fit(vec.fit_transform(TEXTS), LABELS)
    new = ["开心 死了", "想哭 啊 难过", "完全 未见"]
    assert clf.predict_proba(new) == pytest.approx(lr.predict_proba(vec.transform(new)), abs=1e-5)
    assert clf.predict_proba(["开心"]).argmax() == 0 and clf.predict_proba(["难过"]).argmax() == 1


def test_absent_class_gets_no_mass_and_two_classes_work():
    clf = fit_classifier(TEXTS[:4], LABELS[:4], NAMES, C=1.0)  # 'anger' never seen: binary sklearn model
    p = clf.predict_proba(["开心", "难过"])
    assert p[:, 2] == pytest.approx([0, 0], abs=1e-6) and p.argmax(1).tolist() == [0, 1]
    assert p.sum(1) == pytest.approx([1, 1])


def test_save_load_round_trip_without_pickle(tmp_path):
    from safetensors.numpy import load_file

    clf = fit_classifier(TEXTS, LABELS, NAMES, C=1.0)
    clf.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [VOCAB_FILE, WEIGHTS_FILE]
    meta = json.loads((tmp_path / VOCAB_FILE).read_text(encoding="utf-8"))  # plain JSON: vocabulary, labels, settings
    assert meta["labels"] == NAMES and meta["vocab"] == clf.vocab and meta["ngram"] == [1, 3] and meta["wb"] is True
    assert set(load_file(str(tmp_path / WEIGHTS_FILE))) == {"idf", "coef", "intercept"}
    back = TfidfClassifier.load(tmp_path)
    assert back.predict_proba(TEXTS) == pytest.approx(clf.predict_proba(TEXTS), abs=1e-7)
    meta["vocab"] = meta["vocab"][:-1]  # a vocabulary that does not fit the weights: one-line error
    (tmp_path / VOCAB_FILE).write_text(json.dumps(meta), encoding="utf-8")
    from elmd.errors import ElmdError

    with pytest.raises(ElmdError, match="do not match"):
        TfidfClassifier.load(tmp_path)


def test_accuracy_balanced_and_selection_on_valid():
    acc, bal = accuracy_balanced(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    assert (acc, bal) == (0.75, 0.5)
    # character 3-grams see nothing of the 2-character valid texts (intercept only: one class for
    # all, accuracy 1/3); word-bounded 1-2-grams classify all three
    grid = [{"wb": False, "ngram": (3, 3), "C": 10.0}, {"wb": True, "ngram": (1, 2), "C": 10.0}]
    clf = select_classifier(TEXTS, LABELS, NAMES, ["开心", "难过", "气死"], [0, 1, 2], grid=grid, log=lambda m: None)
    assert clf.wb and clf.ngram == (1, 2) and clf.info["valid_acc"] == 1.0 and clf.info["valid_bal_acc"] == 1.0
    assert clf.info["grid"][0]["valid_acc"] == pytest.approx(1 / 3, abs=1e-4) and len(clf.info["grid"]) == 2


def test_tuning_picks_the_classifier_that_is_right():
    from elmd.data.schema import Sample, Turn
    from retrieval.index import DemonstrationIndex
    from retrieval.scoring import Scoring
    from retrieval.tune import settings, tune_scoring
    from test_retrieval_scoring import FakeRetriever, unit

    def sample(i, text, emo):
        return Sample(f"d{i}#0", f"d{i}", "s", "", [], Turn("A", text, emo), Turn("B", "好", "happy"))

    # cosine prefers x (happy) for both queries; the head predicts happy for both (wrong for qa),
    # the TF-IDF classifier is right for both: only P from 'tfidf' gets both queries right.
    vecs = {"x": unit(0), "y": unit(90), "qa": unit(30), "qb": unit(20)}
    head = {"qa": [0.9, 0.1], "qb": [0.9, 0.1]}
    tfidf = {"qa": [0.1, 0.9], "qb": [0.9, 0.1]}
    index = DemonstrationIndex.build([sample(0, "x", "happy"), sample(1, "y", "sad")], FakeRetriever(vecs, head, tfidf))
    valid = [sample(2, "qa", "sad"), sample(3, "qb", "happy")]
    grid = settings(pools=(5,), betas=(1.0,), priors=(0.0,), sources=("head", "tfidf", "mean"))
    res = tune_scoring(index, valid, "mean", min_f1_ratio=0.0, grid=grid)
    assert res.scoring == Scoring("soft", 1.0, 5, 0.0, "tfidf") and res.valid["utt_agree@1"] == 1.0
    by = {(r["mode"], r["source"]): r["utt_agree@1"] for r in res.grid}
    assert by[("soft", "head")] == 0.5 and by[("soft", "mean")] == 0.5 and by[("filter", "tfidf")] == 1.0
    # 'head' only: the TF-IDF settings are not candidates
    res = tune_scoring(index, valid, "mean", min_f1_ratio=0.0, classifier="head")
    assert {r["source"] for r in res.grid if r["mode"] != "cosine"} == {"head"}


def test_vectorised_ngram_lookup_equals_the_plain_one():
    from collections import Counter

    odd = ["", "  ", "😀 开心 😀😀", "A  b\tC", "开心开心 啊 啊啊啊 难过", "x"]
    for wb, ngram in [(True, (1, 3)), (False, (1, 3)), (True, (2, 2))]:
        clf = fit_classifier(TEXTS + ["😀 开心", "A b c"], LABELS + [0, 2], NAMES, ngram=ngram, wb=wb)
        fast, slow = clf._gram_ids(TEXTS + odd), clf._gram_ids_slow(TEXTS + odd)
        assert Counter(zip(*map(list, fast))) == Counter(zip(*map(list, slow))) and (fast[1] >= 0).sum() > 20
