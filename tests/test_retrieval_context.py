"""Dialogue context in the TF-IDF emotion classifier of the query (retrieval/tfidf.py, issue 13):
which earlier turns are read, hand-computed context terms, agreement with scikit-learn on the
stacked features, save / load, the context weight chosen on valid, and the search reading a
query's history (index.search(histories=...), demonstrations_for)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from elmd.data.schema import Sample, Turn
from retrieval.tfidf import TfidfClassifier, contexts_of, fit_classifier, query_context, select_classifier

NAMES = ["happy", "sad"]


def test_query_context_reads_the_previous_and_the_same_speakers_previous_turn():
    h = [Turn("A", "早", None), Turn("B", "你好", "happy"), Turn("A", "吃了吗", None), Turn("B", "没", "sad")]
    assert query_context(h, "A") == ("没", "吃了吗")
    assert query_context(h, "B") == ("没", "没")
    assert query_context(h, "C") == ("没", "")  # the speaker has not spoken yet
    assert query_context([], "A") == ("", "") and query_context((), None) == ("", "")
    assert contexts_of([(h[:2], "A"), ([], "B")]) == [("你好", "早"), ("", "")] and contexts_of(None) is None


def test_context_terms_hand_computed():
    # utterance weights all 0; the previous turn's 气 votes sad (weight 2), the same speaker's 好 happy (1)
    coef_ctx = np.zeros((2, 2, 2), np.float32)
    coef_ctx[0, 1, 1] = 2.0  # prev, class sad, n-gram 气
    coef_ctx[1, 0, 0] = 1.0  # same speaker, class happy, n-gram 好
    clf = TfidfClassifier(["好", "气"], np.array([1.0, 1.0], np.float32), np.zeros((2, 2), np.float32),
                          np.zeros(2, np.float32), NAMES, ngram=(1, 1), wb=False, coef_ctx=coef_ctx)
    p = clf.predict_proba(["嗯", "嗯", "嗯"], [("气", ""), ("气", "好"), ("好气", "")])
    assert p[0] == pytest.approx([1 / (1 + math.e ** 2), math.e ** 2 / (1 + math.e ** 2)], abs=1e-6)
    assert p[1] == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)], abs=1e-6)  # logits (1, 2)
    s = 2 / math.sqrt(2)  # "好气": x_prev = (1, 1) / sqrt 2 -> sad logit sqrt 2
    assert p[2] == pytest.approx([1 / (1 + math.e ** s), math.e ** s / (1 + math.e ** s)], abs=1e-6)
    assert clf.predict_proba(["嗯"]) == pytest.approx(np.array([[0.5, 0.5]]))  # searched without history
    with pytest.raises(ValueError, match="1 texts but 2 contexts"):
        clf.predict_proba(["嗯"], [("", ""), ("", "")])


TEXTS = ["嗯", "好吧", "嗯 好吧", "是吗", "嗯", "是吗 好吧"]
CONTEXTS = [("太开心了", ""), ("开心 好玩", "开心"), ("哈哈 开心", ""), ("难过 想哭", "哭"), ("想哭", "难过"), ("哭 难过", "")]
LABELS = [0, 0, 0, 1, 1, 1]


def test_fit_with_context_matches_sklearn_on_stacked_features():
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    clf = fit_classifier(TEXTS, LABELS, NAMES, C=2.0, ngram=(1, 2), contexts=CONTEXTS, context=0.5)
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 2), sublinear_tf=True).fit(TEXTS)
    stack = lambda t, c: hstack([vec.transform(t)] + [0.5 * vec.transform([x[j] for x in c]) for j in (0, 1)])  # noqa: E731
    lr = LogisticRegression(C=2.0, class_weight="balanced", max_iter=3000).fit(stack(TEXTS, CONTEXTS), LABELS)
    new, ctx = ["嗯", "好吧 是吗", "没见过"], [("开心", ""), ("", "难过"), ("", "")]
    assert clf.predict_proba(new, ctx) == pytest.approx(lr.predict_proba(stack(new, ctx)), abs=1e-5)
    assert clf.coef_ctx.shape == (2, 2, len(clf.vocab)) and clf.info["context"] == 0.5
    # context words the utterances never use are not in the vocabulary (the idf is the utterances')
    assert "开" not in clf.vocab and fit_classifier(TEXTS, LABELS, NAMES, contexts=CONTEXTS).coef_ctx is None


def test_save_load_keeps_the_context_weights(tmp_path):
    texts = TEXTS + ["开心", "难过"]
    clf = fit_classifier(texts, LABELS + [0, 1], NAMES, contexts=CONTEXTS + [("", "")] * 2, context=1.0)
    clf.save(tmp_path)
    back = TfidfClassifier.load(tmp_path)
    ctx = [("开心", "哭"), ("难过", ""), ("", "")]
    assert back.coef_ctx is not None and back.info["context"] == 1.0
    assert back.predict_proba(["嗯", "是吗", "好吧"], ctx) == pytest.approx(clf.predict_proba(["嗯", "是吗", "好吧"], ctx), abs=1e-7)


def test_selection_takes_the_context_only_when_it_pays():
    # the utterances say nothing about the emotion, the previous turns do (开心 / 难过 in the vocabulary)
    texts = ["嗯", "嗯", "好", "好", "开心", "难过"]
    ctx = [("开心", ""), ("难过", ""), ("开心", ""), ("难过", ""), ("", ""), ("", "")]
    labels = [0, 1, 0, 1, 0, 1]
    valid, vctx, vy = ["嗯", "好", "嗯", "好"], [("难过", ""), ("开心", ""), ("开心", ""), ("难过", "")], [1, 0, 0, 1]
    clf = select_classifier(texts, labels, NAMES, valid, vy, contexts=ctx, valid_contexts=vctx, log=lambda m: None)
    assert clf.info["context"] > 0 and clf.info["valid_acc"] == 1.0
    no_ctx = [r for r in clf.info["grid"] if r["context"] == 0.0]
    assert len(clf.info["grid"]) == 14 and len(no_ctx) == 12 and max(r["valid_acc"] for r in no_ctx) <= 0.5
    # valid without context: the grid has no context weights, and nothing above chance is possible
    plain = select_classifier(texts, labels, NAMES, valid, vy, contexts=ctx, log=lambda m: None)
    assert plain.info["context"] == 0.0 and plain.coef_ctx is None and len(plain.info["grid"]) == 12


class ContextRetriever:
    """Fixed search vectors; P(emotion | q) from a real TF-IDF classifier with context terms."""

    emotion_labels = NAMES
    classifiers = ("tfidf",)
    info: dict = {}
    label, path = "fake", None

    def __init__(self, vectors: dict, tfidf: TfidfClassifier):
        self.vectors, self.tfidf = vectors, tfidf

    def emotion_probs(self, texts, source, head_probs=None, contexts=None):
        return self.tfidf.predict_proba(texts, contexts)

    def encode(self, texts, batch_size=256, progress=False, with_probs=False, degenerate=None):
        z = np.stack([self.vectors[t] for t in texts]).astype(np.float32)
        return (z, None) if with_probs else z

    def degenerate(self, texts):
        return np.zeros(len(texts), dtype=bool)


def test_search_and_demonstrations_read_the_history():
    from elmd.config import ELMDConfig
    from elmd.data.labels import label_set_from_config
    from retrieval.demonstration import demonstrations_for
    from retrieval.index import DemonstrationIndex
    from retrieval.scoring import Scoring

    coef_ctx = np.zeros((2, 2, 2), np.float32)
    coef_ctx[0, 1, 1] = 3.0  # previous turn 气 -> sad
    clf = TfidfClassifier(["好", "气"], np.ones(2, np.float32), np.array([[0.1, 0], [0, 0]], np.float32),
                          np.zeros(2, np.float32), NAMES, ngram=(1, 1), wb=False, coef_ctx=coef_ctx)
    ang = lambda a: np.array([math.cos(math.radians(a)), math.sin(math.radians(a))])  # noqa: E731
    retr = ContextRetriever({"x": ang(0), "y": ang(90), "嗯": ang(30)}, clf)

    def sample(i, text, emo, history=()):
        return Sample(f"d{i}#0", f"d{i}", "s", "", list(history), Turn("A", text, emo), Turn("B", f"回{text}", emo))

    index = DemonstrationIndex.build([sample(0, "x", "happy"), sample(1, "y", "sad")], retr,
                                     scoring=Scoring("filter", 0.0, 5, 0.0, "tfidf"))
    hist = [Turn("B", "气死了", None)]
    no_hist, with_hist = index.search(["嗯"], 1), index.search(["嗯"], 1, histories=[(hist, "A")])
    assert no_hist[0][0].utterance == "x" and with_hist[0][0].utterance == "y"  # P(sad) 0.5 -> e^3 / (1 + e^3)
    labels = label_set_from_config(ELMDConfig().data.labels, None)
    demos = demonstrations_for(index, [sample(2, "嗯", "sad", hist), sample(3, "嗯", "sad")], labels)
    assert "回y" in demos[0] and "回x" in demos[1]


def test_tuning_reads_the_valid_samples_history():
    from retrieval.index import DemonstrationIndex
    from retrieval.scoring import Scoring
    from retrieval.tune import settings, tune_scoring

    coef_ctx = np.zeros((2, 2, 2), np.float32)
    coef_ctx[0, 1, 1] = 3.0  # previous turn 气 -> sad
    coef_ctx[0, 0, 0] = 3.0  # previous turn 好 -> happy
    clf = TfidfClassifier(["好", "气"], np.ones(2, np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.float32),
                          NAMES, ngram=(1, 1), wb=False, coef_ctx=coef_ctx)
    ang = lambda a: np.array([math.cos(math.radians(a)), math.sin(math.radians(a))])  # noqa: E731
    retr = ContextRetriever({"x": ang(0), "y": ang(90), "嗯": ang(30), "啊": ang(60)}, clf)

    def sample(i, text, emo, history=()):
        return Sample(f"d{i}#0", f"d{i}", "s", "", list(history), Turn("A", text, emo), Turn("B", "回", emo))

    index = DemonstrationIndex.build([sample(0, "x", "happy"), sample(1, "y", "sad")], retr)
    # cosine answers x for 嗯 and y for 啊: both wrong; only the previous turns tell the emotions
    valid = [sample(2, "嗯", "sad", [Turn("B", "气", None)]), sample(3, "啊", "happy", [Turn("B", "好", None)])]
    grid = settings(pools=(5,), betas=(1.0,), priors=(0.0,), sources=("tfidf",))
    res = tune_scoring(index, valid, "mean", min_f1_ratio=0.0, grid=grid)
    assert res.cosine["utt_agree@1"] == 0.0 and res.valid["utt_agree@1"] == 1.0
    assert res.scoring == Scoring("soft", 1.0, 5, 0.0, "tfidf")  # soft first in the grid; filter ties
    # without history P is uniform: soft adds the same bonus to both (cosine order, 0 right); the
    # filter's argmax of a tie is 'happy' for both queries (1 right of 2)
    bare = tune_scoring(index, [sample(2, "嗯", "sad"), sample(3, "啊", "happy")], "mean", min_f1_ratio=0.0, grid=grid)
    assert bare.scoring.mode == "filter" and bare.valid["utt_agree@1"] == 0.5


def test_whole_index_filter_by_per_emotion_search_equals_the_generic_rerank():
    from retrieval.scoring import Scoring
    from test_retrieval_scoring import FakeRetriever

    rng = np.random.default_rng(0)
    emos = ["happy", "sad", None]
    vecs, entries = {}, []
    for i in range(40):
        v = rng.normal(size=8)
        vecs[f"e{i}"] = v / np.linalg.norm(v)
        emo = "sad" if i % 9 == 0 else emos[i % 3 if i % 3 != 1 else 0]  # few sad, some unlabelled
        entries.append(Sample(f"d{i % 7}#{i}", f"d{i % 7}", "s", "", [], Turn("A", f"e{i}", emo), Turn("B", f"r{i}", emo)))
    queries = [f"q{j}" for j in range(12)]
    for t in queries:
        v = rng.normal(size=8)
        vecs[t] = v / np.linalg.norm(v)
    probs = {t: list(rng.dirichlet([1, 1])) for t in queries}
    from retrieval.index import DemonstrationIndex

    index = DemonstrationIndex.build(entries, FakeRetriever(vecs, probs))
    q = np.stack([vecs[t] for t in queries]).astype(np.float32)
    p = np.stack([probs[t] for t in queries]).astype(np.float32)
    exclude = [f"d{j % 8}" if j % 8 < 7 else None for j in range(12)]  # d7 is no dialogue of the index
    n_sad = sum(e.utterance.emotion == "sad" for e in entries)
    for prior in (0.0, 1.0):
        sc = Scoring("filter", 0.0, len(index), prior, "head")
        for k in (1, 3, n_sad + 2):  # k beyond the sad entries: the fallback fills with the others
            index._partition = None
            fast = index.search_vectors(q, k, exclude, p, sc)
            assert index._partition  # the per-emotion path was taken
            index._partition = False  # generic: FAISS top-len(index), then the re-rank
            slow = index.search_vectors(q, k, exclude, p, sc)
            assert [[h.id for h in hs] for hs in fast] == [[h.id for h in hs] for hs in slow]
            assert [[round(h.score, 5) for h in hs] for hs in fast] == [[round(h.score, 5) for h in hs] for hs in slow]
            assert all(len(hs) == k for hs in fast)


def test_tuning_takes_the_whole_index_filter_only_when_asked_and_it_wins():
    from retrieval.index import DemonstrationIndex
    from retrieval.scoring import Scoring
    from retrieval.tune import WHOLE_INDEX, settings, tune_scoring
    from test_retrieval_scoring import FakeRetriever

    ang = lambda a: np.array([math.cos(math.radians(a)), math.sin(math.radians(a))])  # noqa: E731
    # 12 happy u' close to the query, the only sad one far away (beyond a pool of 5)
    vecs = {f"h{i}": ang(i) for i in range(12)} | {"s": ang(80), "q": ang(5)}
    entries = [Sample(f"d{i}#0", f"d{i}", "s", "", [], Turn("A", f"h{i}", "happy"), Turn("B", "好", "happy"))
               for i in range(12)] + [Sample("ds#0", "ds", "s", "", [], Turn("A", "s", "sad"), Turn("B", "好", "sad"))]
    index = DemonstrationIndex.build(entries, FakeRetriever(vecs, {"q": [0.1, 0.9]}))
    valid = [Sample("dq#0", "dq", "s", "", [], Turn("A", "q", "sad"), Turn("B", "好", "sad"))]
    kw = dict(pools=(5,), betas=(1.0,), priors=(0.0,), sources=("head",))
    res = tune_scoring(index, valid, "mean", min_f1_ratio=0.0, grid=settings(**kw))
    assert res.scoring == Scoring() and res.valid["utt_agree@1"] == 0.0  # nothing in the pool is sad
    res = tune_scoring(index, valid, "mean", min_f1_ratio=0.0, grid=settings(**kw, whole=True))
    assert res.scoring == Scoring("filter", 0.0, WHOLE_INDEX, 0.0, "head") and res.valid["utt_agree@1"] == 1.0
    assert res.scoring.describe() == "filter pool=all P=head"
    index.set_scoring(res.scoring)
    assert index.search(["q"], 2)[0][0].utterance == "s"  # the search takes the same per-emotion path
