"""`elmd retriever train|evaluate` and `elmd index build|search` through click's CliRunner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from retrieval.encoder import load_retriever

SMALL = ["--set", "retrieval.builtin_dim=64", "--set", "retrieval.builtin_vocab=300", "--set", "retrieval.device=cpu",
         "--set", "index.use_gpu=false"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, retrieval_data):
    """Two retrievers trained for 2 epochs by the CLI: +ERT+SSC and +ERT (w/o SSC)."""
    root = tmp_path_factory.mktemp("cli_train")
    out = {}
    for name, flags in {"ert_ssc": [], "ert": ["--no-ssc"], "base": ["--epochs", 0]}.items():
        r = run("retriever", "train", "--data", retrieval_data["train"], "--valid", retrieval_data["valid"],
                "--encoder", "builtin:char", "--out", root / name, "--epochs", 2, *flags, *SMALL)
        assert r.exit_code == 0, r.output
        out[name] = root / name
    return out


def test_train_writes_self_describing_folder(trained):
    d = trained["ert_ssc"]
    for name in ("modules.json", "model.safetensors", "tokenizer.json", "ssc_head.safetensors", "retriever.json",
                 "config.yaml", "README.md", "train_log.jsonl"):
        assert (d / name).exists(), name
    assert not (trained["ert"] / "ssc_head.safetensors").exists()
    info = json.loads((d / "retriever.json").read_text(encoding="utf-8"))
    log = [json.loads(line) for line in (d / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["epoch"] for row in log] == [0, 1, 2]
    best = max(log[1:], key=lambda row: row["objective"])  # first best epoch (tuned valid objective) is kept
    assert info["best_epoch"] == best["epoch"] and info["valid"]["objective"] == best["objective"]
    assert info["ssc"] and info["ert"] and info["s"] == 4
    # the emotion head is saved with its labels, its valid accuracy / macro-F1 are logged, the
    # tuned scoring is stored; w/o ERT (and the untrained base) have none
    assert (d / "emotion_head.safetensors").exists() and {"neutral", "anger", "sad"} < set(info["emotion_labels"])
    assert all(0 <= row["emotion_acc"] <= 1 and "emotion_macro_f1" in row for row in log)
    assert info["scoring"]["mode"] in ("cosine", "soft", "filter") and info["scoring"] == log[info["best_epoch"]]["scoring"]
    assert load_retriever(str(d), device="cpu").emotion_head.linear.out_features == len(info["emotion_labels"])
    assert not (trained["base"] / "emotion_head.safetensors").exists()
    # the TF-IDF classifier of the query is saved beside it (settings chosen on valid), no pickle
    assert (d / "emotion_tfidf.safetensors").exists() and (d / "emotion_tfidf.json").exists()
    assert info["tfidf"]["valid_acc"] > 0 and info["tfidf"]["C"] in (0.3, 1.0, 3.0)
    assert not list(d.glob("*.pkl")) and not list(d.glob("*.pickle"))
    assert load_retriever(str(d), device="cpu").classifiers == ("head", "tfidf", "mean")
    assert "ERT" in (d / "README.md").read_text(encoding="utf-8")
    assert load_retriever(str(d), device="cpu").label == "+ERT+SSC"
    assert load_retriever(str(trained["ert"]), device="cpu").label == "+ERT"


def test_training_lowers_the_ert_loss(trained, retrieval_data):
    import numpy as np
    import torch

    from elmd.data.jsonl import read_samples
    from retrieval.groups import sample_groups, usable_anchors
    from retrieval.losses import ERTLoss

    base = load_retriever(str(trained["base"]), device="cpu")  # --epochs 0: the same initial encoder
    assert base.head is None and base.label.startswith("base")
    samples = read_samples(retrieval_data["train"])
    texts, emotions = [s.utterance.text for s in samples], [s.utterance.emotion for s in samples]
    groups = sample_groups(usable_anchors(emotions), emotions, 2, np.random.default_rng(123))

    def ert(retriever):
        z = torch.from_numpy(retriever.encode([texts[i] for i in groups.reshape(-1)])).view(*groups.shape, -1)
        return ERTLoss(0.5)(z).item()

    before = ert(base)
    assert ert(load_retriever(str(trained["ert"]), device="cpu")) < before - 0.02
    assert ert(load_retriever(str(trained["ert_ssc"]), device="cpu")) < before - 0.02


def test_ert_loss_falls_with_ssc_on(trained):
    """Issue 13: with SSC on, L_e sat at ln 2 (the sub-vectors collapsed); it must fall now."""
    log = [json.loads(line) for line in (trained["ert_ssc"] / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    l_e = [row["train_l_e"] for row in log[1:]]
    assert l_e[-1] < l_e[0] and l_e[-1] < math.log(2) - 0.1, l_e
    assert log[-1]["train_l_c"] > 0.3  # not the collapsed minimum of Eq. 4 (0.19 for s = 4, tau = 0.5)


def test_tune_scoring_and_wo_ert_has_no_emotion_scoring(trained, retrieval_data, tmp_path):
    import shutil

    d = tmp_path / "r"
    shutil.copytree(trained["ert_ssc"], d)
    r = run("retriever", "tune", "--retriever", d, "--data", retrieval_data["train"], "--valid", retrieval_data["valid"],
            "--set", "retrieval.tune_metric=macro_agree@1", *SMALL)
    assert r.exit_code == 0, r.output
    info = json.loads((d / "retriever.json").read_text(encoding="utf-8"))
    assert "scoring" in info and info["scoring_valid"]["macro_agree@1"] >= 0
    assert load_retriever(str(d), device="cpu").fingerprint == load_retriever(str(trained["ert_ssc"]), device="cpu").fingerprint
    wo_ert = tmp_path / "wo_ert"
    r = run("retriever", "train", "--data", retrieval_data["train"], "--encoder", "builtin:char", "--out", wo_ert,
            "--no-ert", "--epochs", 1, *SMALL)
    assert r.exit_code == 0, r.output
    assert not (wo_ert / "emotion_head.safetensors").exists() and not (wo_ert / "emotion_tfidf.json").exists()
    r = run("retriever", "tune", "--retriever", wo_ert, "--data", retrieval_data["train"], "--valid",
            retrieval_data["valid"], *SMALL)
    assert r.exit_code == 2 and "no emotion classifier" in r.output
    r = run("index", "build", "--data", retrieval_data["train"], "--retriever", wo_ert, "--out", tmp_path / "i",
            "--set", "retrieval.scoring=soft", *SMALL)
    assert r.exit_code == 2 and "emotion classifier" in r.output and "retrieval.scoring=cosine" in r.output
    r = run("index", "build", "--data", retrieval_data["train"], "--retriever", wo_ert, "--out", tmp_path / "i",
            "--set", "retrieval.scoring=sharp", *SMALL)
    assert r.exit_code == 2 and "retrieval.scoring='sharp'" in r.output and "cosine" in r.output


def test_train_ablation_both_off_is_an_error(retrieval_data, tmp_path):
    r = run("retriever", "train", "--data", retrieval_data["train"], "--encoder", "builtin:char",
            "--out", tmp_path / "x", "--no-ert", "--no-ssc", "--epochs", 1, *SMALL)
    assert r.exit_code == 2 and "nothing to train" in r.output and not (tmp_path / "x").exists()


def test_index_build_search_and_evaluate(trained, retrieval_data, tmp_path):
    base_idx, ssc_idx = tmp_path / "base", tmp_path / "ssc"
    r = run("index", "build", "--data", retrieval_data["train"], "--encoder", "builtin:char", "--out", base_idx, *SMALL)
    assert r.exit_code == 0, r.output
    assert (base_idx / "encoder" / "modules.json").exists()  # builtin encoder travels with the index
    r = run("index", "build", "--data", retrieval_data["train"], "--retriever", trained["ert_ssc"], "--out", ssc_idx,
            "--factory", "HNSW16", *SMALL)
    assert r.exit_code == 0, r.output
    meta = json.loads((ssc_idx / "meta.json").read_text(encoding="utf-8"))
    assert meta["factory"] == "HNSW16" and meta["encoder"]["label"] == "+ERT+SSC" and meta["degenerate_entries"] == 0
    tuned = json.loads((trained["ert_ssc"] / "retriever.json").read_text(encoding="utf-8"))["scoring"]
    assert meta["scoring"] == tuned  # 'auto': the scoring tuned by `retriever train`
    emo_idx = tmp_path / "filter"
    r = run("index", "build", "--data", retrieval_data["train"], "--retriever", trained["ert_ssc"], "--out", emo_idx,
            "--set", "retrieval.scoring=filter", "--set", "retrieval.pool=20", "--set", "retrieval.emotion_classifier=head",
            *SMALL)
    assert r.exit_code == 0, r.output
    meta = json.loads((emo_idx / "meta.json").read_text(encoding="utf-8"))
    assert meta["scoring"] == {"mode": "filter", "beta": 0.0, "pool": 20, "prior": 0.0, "source": "head"}
    assert meta["emotion_classifier"]["source"] == "head" and len(meta["emotion_classifier"]["fingerprint"]) == 64
    # a search asking for another classifier than the one the index was built for is refused
    r = run("index", "search", "--index", emo_idx, "--query", "气死我了", "--set", "retrieval.emotion_classifier=tfidf", *SMALL)
    assert r.exit_code == 2 and "built for 'head'" in r.output and "emotion_classifier=tfidf" in r.output
    r = run("index", "search", "--index", emo_idx, "--query", "气死我了", "-k", 3, "--json", *SMALL)
    filtered = json.loads(r.stdout.strip())["hits"]
    r = run("index", "search", "--index", emo_idx, "--query", "气死我了", "-k", 3, "--json",
            "--set", "retrieval.scoring=cosine", *SMALL)
    plain = json.loads(r.stdout.strip())["hits"]
    assert all(-1.01 <= h["score"] <= 1.01 for h in plain) and [h["score"] for h in plain] == sorted(
        [h["score"] for h in plain], reverse=True)
    retr = load_retriever(str(trained["ert_ssc"]), device="cpu")
    predicted = retr.emotion_labels[int(retr.encode(["气死我了"], with_probs=True)[1].argmax())]
    r = run("index", "search", "--index", emo_idx, "--query", "气死我了", "-k", 20, "--json",
            "--set", "retrieval.scoring=cosine", *SMALL)
    pool = json.loads(r.stdout.strip())["hits"]  # the 20 cosine candidates, re-ranked by the filter:
    want = sorted(pool, key=lambda h: (h["utterance_emotion"] != predicted, -h["score"]))[:3]
    assert [h["id"] for h in filtered] == [h["id"] for h in want]
    assert [h["score"] > 2 for h in filtered] == [h["utterance_emotion"] == predicted for h in want]

    r = run("index", "search", "--index", base_idx, "--query", "气死我了", "-k", 2, "--json", *SMALL)
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.strip())
    assert row["query_id"] == "0" and len(row["hits"]) == 2
    assert set(row["hits"][0]) == {"id", "dialogue_id", "utterance", "response", "utterance_emotion",
                                   "response_emotion", "score"}
    assert "气死我了" in row["hits"][0]["utterance"]

    queries = tmp_path / "q.jsonl"
    first = json.loads(Path(retrieval_data["train"]).read_text(encoding="utf-8").splitlines()[0])
    text = first["turns"][0]["text"]
    queries.write_text(json.dumps({"query_id": "a", "text": text, "dialogue_id": first["dialogue_id"]}, ensure_ascii=False)
                       + "\n" + json.dumps({"query_id": "b", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "hits.jsonl"
    r = run("index", "search", "--index", base_idx, "--queries", queries, "-k", 3, "--out", out, *SMALL)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["query_id"] for x in rows] == ["a", "b"]
    assert all(h["dialogue_id"] != first["dialogue_id"] for h in rows[0]["hits"])  # leakage excluded
    assert rows[1]["hits"][0]["utterance"] == text and rows[1]["hits"][0]["score"] == pytest.approx(1, abs=1e-5)

    r = run("retriever", "evaluate", "--index", base_idx, "--index", emo_idx, "--data", retrieval_data["test"],
            "--out", tmp_path / "eval.json", "--bootstrap", 200, *SMALL)
    assert r.exit_code == 0, r.output
    assert "macro_agree@1" in r.stdout and "+ERT+SSC · filter pool=20 P=head" in r.stdout and "base (builtin:char)" in r.stdout
    res = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    names = [x["system"].split(" [")[0] for x in res["rows"]]
    assert names == ["base (builtin:char) · cosine", "+ERT+SSC · cosine", "+ERT+SSC · filter pool=20 P=head", "random u'",
                     "majority (neutral) u'"]
    assert all(0 <= x["r_char_f1"] <= 1 for x in res["rows"]) and res["rows"][0]["d_utt_agree@1"] == [0, 0, 0]
    for x in res["rows"]:
        diff, low, high = x["d_macro_agree@1"]
        assert low <= diff <= high and diff == pytest.approx(x["macro_agree@1"] - res["rows"][0]["macro_agree@1"], abs=1e-3)
    majority = res["rows"][-1]
    assert majority["macro_agree@1"] < majority["utt_agree@1"]  # always-neutral: 1/classes macro

    # another encoder than the one that built the index is refused with a one-line error
    r = run("index", "search", "--index", base_idx, "--query", "你好", "--encoder", trained["ert"], *SMALL)
    assert r.exit_code == 2 and "fingerprint" in r.output and "error:" in r.output


def test_search_help_and_bad_input(tmp_path):
    r = run("index", "search", "--help")
    assert r.exit_code == 0 and "dialogue_id" in r.output and "query_id" in r.output and "hits" in r.output
    r = run("index", "search", "--index", tmp_path, "--query", "你好")
    assert r.exit_code == 2 and "not an index folder" in r.output
    r = run("index", "build", "--data", tmp_path / "missing.jsonl", "--encoder", "builtin:char", "--out", tmp_path / "i")
    assert r.exit_code == 2 and "missing.jsonl" in r.output
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"query_id": 1}\n', encoding="utf-8")
    r = run("index", "search", "--index", tmp_path, "--queries", bad)
    assert r.exit_code == 2 and "q.jsonl:1" in r.output


def test_index_built_with_another_tfidf_classifier_is_refused(trained, retrieval_data, tmp_path):
    import shutil

    from retrieval.tfidf import fit_classifier

    d = tmp_path / "r"
    shutil.copytree(trained["ert_ssc"], d)
    idx = tmp_path / "i"
    r = run("index", "build", "--data", retrieval_data["train"], "--retriever", d, "--out", idx,
            "--set", "retrieval.scoring=filter", "--set", "retrieval.emotion_classifier=tfidf", *SMALL)
    assert r.exit_code == 0, r.output
    r = run("index", "search", "--index", idx, "--query", "气死我了", "-k", 2, "--json", *SMALL)
    assert r.exit_code == 0 and all(h["score"] > 2 for h in json.loads(r.stdout.strip())["hits"][:1])
    retr = load_retriever(str(d), device="cpu")  # refit the classifier with another C: same encoder weights
    fit_classifier(["开心 啊", "难过", "气死"], [0, 1, 2], retr.emotion_labels, C=0.01).save(d)
    r = run("index", "search", "--index", idx, "--query", "气死我了", *SMALL)
    assert r.exit_code == 2 and "emotion classifier 'tfidf'" in r.output and "rebuild the index" in r.output
