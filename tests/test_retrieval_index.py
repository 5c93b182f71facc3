"""Encoder, FAISS index, leakage exclusion, round trips, fingerprints, demonstration builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from elmd.data.jsonl import read_samples
from elmd.data.labels import LabelSet
from elmd.errors import ElmdError
from retrieval.demonstration import demonstrations_for, format_demonstration
from retrieval.encoder import load_retriever
from retrieval.index import DemonstrationIndex, Hit, make_faiss_index


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def table(n, per_dialogue=3):
    return [{"id": f"s{i}", "dialogue_id": f"d{i // per_dialogue}", "utterance": f"u{i}", "response": f"r{i}",
             "utterance_emotion": "happy", "response_emotion": "sad"} for i in range(n)]


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])  # IVF4 with nprobe 4 visits every list: exact
def test_faiss_topk_equals_brute_force(factory):
    rng = np.random.default_rng(0)
    x, q = unit(rng, 500, 32), unit(rng, 20, 32)
    index = DemonstrationIndex(make_faiss_index(x, factory, nprobe=4), table(500), {})
    hits = index.search_vectors(q, 5)
    scores = q @ x.T
    for qi, hs in enumerate(hits):
        order = np.argsort(-scores[qi])[:5]
        got = [int(h.id[1:]) for h in hs]
        # equal up to ties: the scores agree, and ids agree wherever scores are not tied
        assert np.allclose([h.score for h in hs], scores[qi, order], atol=1e-5)
        assert [g for g, o in zip(got, order) if abs(scores[qi, g] - scores[qi, o]) > 1e-6] == []


def test_hnsw_is_approximate_but_close():
    rng = np.random.default_rng(0)
    x, q = unit(rng, 500, 32), unit(rng, 20, 32)
    hits = DemonstrationIndex(make_faiss_index(x, "HNSW32"), table(500), {}).search_vectors(q, 5)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :5]
    recall = np.mean([len({int(h.id[1:]) for h in hs} & set(e)) / 5 for hs, e in zip(hits, exact)])
    assert recall >= 0.8


def test_leakage_exclusion_keeps_k_hits():
    rng = np.random.default_rng(1)
    x = unit(rng, 30, 8)
    index = DemonstrationIndex(make_faiss_index(x), table(30, per_dialogue=5), {})
    q = x[:3]  # each query's nearest entry is itself, in dialogue d0
    plain = index.search_vectors(q, 4)
    assert [h[0].id for h in plain] == ["s0", "s1", "s2"]
    hits = index.search_vectors(q, 4, ["d0", None, "d0"])
    assert all(h.dialogue_id != "d0" for h in hits[0] + hits[2])
    assert [len(h) for h in hits] == [4, 4, 4]
    assert hits[1][0].id == "s1"
    # everything excluded -> no hit (defined, not an error)
    tiny = DemonstrationIndex(make_faiss_index(x[:5]), table(5, per_dialogue=5), {})
    assert tiny.search_vectors(x[:1], 3, ["d0"]) == [[]]


def test_builtin_untrained_encoder_is_lexical(train_texts):
    r = load_retriever("builtin:char", texts=train_texts, device="cpu", dim=256, vocab=300, seed=0)
    v = r.encode(["气死我了别再说了", "你给我滚出去气死了", "我们去吃饭吧", "真开心见到你"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    texts = ["气死我了别再说了", "你", "我们去吃饭吧", "真开心见到你"]  # batched (length-sorted) == one by one
    assert np.allclose(r.encode(texts, batch_size=3), np.concatenate([r.encode([t]) for t in texts]), atol=1e-6)
    sims = v[0] @ v[1:].T
    assert sims[0] > sims[1] + 0.2 and sims[0] > sims[2] + 0.2  # shares 气死 -> nearest
    with pytest.raises(ElmdError, match="training texts"):
        load_retriever("builtin:char")
    with pytest.raises(ElmdError, match="not found"):
        load_retriever("/nonexistent/m3e-base")


def test_retriever_save_load_round_trip(tmp_path, train_texts):
    from sentence_transformers import SentenceTransformer

    from retrieval.ssc import SSCHead

    r = load_retriever("builtin:char", texts=train_texts, device="cpu", dim=64, vocab=300, seed=3)
    r.head = SSCHead(64, 4)
    r.head.mlp[-1].weight.data.normal_()
    r.info.update({"s": 4, "ssc": True, "ert": True, "trained_epochs": 1})
    texts = ["太好了我们赢了", "我好难过想哭"]
    before = r.encode(texts)
    r.save(tmp_path / "r")
    again = load_retriever(str(tmp_path / "r"), device="cpu")
    assert again.head is not None and again.label == "+ERT+SSC"
    assert np.allclose(again.encode(texts), before, atol=1e-6)
    assert again.fingerprint == r.fingerprint
    st = SentenceTransformer(str(tmp_path / "r"), device="cpu", local_files_only=True)  # a plain ST folder
    assert st.encode(texts).shape == (2, 64)


def test_index_round_trip_and_encoder_mismatch(built_index, saved_builtin, retrieval_data, tmp_path, train_texts):
    meta = json.loads(open(f"{built_index}/meta.json", encoding="utf-8").read())
    assert meta["encoder"]["fingerprint"] and meta["size"] == len(read_samples(retrieval_data["train"]))
    index = DemonstrationIndex.load(built_index, use_gpu=False, device="cpu")
    same = DemonstrationIndex.load(built_index, encoder=saved_builtin, use_gpu=False, device="cpu")
    texts = ["你凭什么骂我", "明天几点上班"]
    a, b = index.search(texts, 3), same.search(texts, 3)
    assert [[h.id for h in x] for x in a] == [[h.id for h in x] for x in b]
    assert isinstance(a[0][0], Hit) and a[0][0].utterance.startswith("你凭什么骂我")
    other = load_retriever("builtin:char", texts=train_texts, device="cpu", dim=64, vocab=300, seed=99)
    other.save(tmp_path / "other")
    with pytest.raises(ElmdError, match="fingerprint"):
        DemonstrationIndex.load(built_index, encoder=str(tmp_path / "other"), use_gpu=False)
    with pytest.raises(ElmdError, match="not an index folder"):
        DemonstrationIndex.load(tmp_path)


def test_demonstration_format(built_index, retrieval_data):
    labels = LabelSet()
    hit = Hit("s1", "d1", "你好", "我很开心", "neutral", "happy", 0.9)
    assert format_demonstration(hit, labels) == "参考回复（情绪：高兴）：我很开心"
    assert format_demonstration(None, labels) == ""
    index = DemonstrationIndex.load(built_index, use_gpu=False, device="cpu")
    samples = read_samples(retrieval_data["train"])[:4]
    demos = demonstrations_for(index, samples, labels)
    hits = index.search([s.utterance.text for s in samples], 1, [s.dialogue_id for s in samples])
    assert demos == [format_demonstration(h[0], labels) for h in hits]
    assert all(h[0].dialogue_id != s.dialogue_id for h, s in zip(hits, samples))


def test_transformer_encoder_trains_and_indexes(tiny_st_bert, tiny_cfg, retrieval_data, tmp_path):
    """The production path (an m3e-base-like BERT + mean pooling folder) trains with SSC and indexes."""
    from dataclasses import replace

    from retrieval.build import build_index
    from retrieval.train import train_retriever

    cfg = replace(tiny_cfg, retrieval=replace(tiny_cfg.retrieval, epochs=1, lr=1e-3))
    base = load_retriever(tiny_st_bert, device="cpu")
    assert base.head is None and base.dim == 32
    info = train_retriever(cfg, retrieval_data["train"], str(tmp_path / "r"), valid=retrieval_data["valid"],
                           encoder=tiny_st_bert, log=lambda m: None)
    assert info["ssc"] and info["best_epoch"] == 1
    trained = load_retriever(str(tmp_path / "r"), device="cpu")
    assert trained.head is not None and trained.fingerprint != base.fingerprint
    index = build_index(cfg, retrieval_data["train"], str(tmp_path / "i"), str(tmp_path / "r"), progress=False)
    hits = DemonstrationIndex.load(tmp_path / "i", use_gpu=False, device="cpu").search(["太好了我们赢了"], 2)
    assert len(hits[0]) == 2 and index.meta["dim"] == 32
