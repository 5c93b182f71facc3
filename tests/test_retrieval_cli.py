"""`elmd retriever train|evaluate` and `elmd index build|search` through click's CliRunner."""

from __future__ import annotations

import json
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
    best = max(log[1:], key=lambda row: row["utt_agree@1"])  # first best epoch is the one kept
    assert info["best_epoch"] == best["epoch"] and info["valid"]["utt_agree@1"] == best["utt_agree@1"]
    assert info["ssc"] and info["ert"] and info["s"] == 4
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
    assert meta["factory"] == "HNSW16" and meta["encoder"]["label"] == "+ERT+SSC"

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

    r = run("retriever", "evaluate", "--index", base_idx, "--index", ssc_idx, "--data", retrieval_data["test"],
            "--out", tmp_path / "eval.json", *SMALL)
    assert r.exit_code == 0, r.output
    assert "utt_agree@1" in r.stdout and "+ERT+SSC" in r.stdout and "base (builtin:char)" in r.stdout
    res = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert len(res["rows"]) == 2 and all(0 <= x["r_char_f1"] <= 1 for x in res["rows"])

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
