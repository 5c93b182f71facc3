"""Session fixtures of the generation tests: the training fixture's tiny data plus a test split and
a demonstration index, an eerg output trained with demonstrations and video (1 epoch, fresh Linear),
and a text-only eerg output (no video, no demonstrations)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def gen_run(tmp_path_factory):
    """Namespace: folder, test (path), index (path), eerg / text_only (output folders), overrides."""
    from fixtures_train import train_dialogues, train_overrides
    from fixtures_video import write_video

    from elmd.config import load_config
    from elmd.data.jsonl import read_samples
    from elmd.training.run import train
    from retrieval.build import build_index
    from retrieval.encoder import load_retriever

    d = tmp_path_factory.mktemp("gen_data")
    write_video(d / "warm.mp4", 4, size=32, blue=20)
    write_video(d / "cold.mp4", 4, size=32, blue=230)
    for name, rows in (("train", train_dialogues(12)), ("valid", train_dialogues(4, 100)), ("test", train_dialogues(5, 200))):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    texts = [s.utterance.text for s in read_samples(d / "train.jsonl")]
    encoder = load_retriever("builtin:char", texts=texts, device="cpu", dim=32, vocab=200, seed=0).save(d / "encoder")
    overrides = train_overrides(d, d / "runs") + [
        f"data.test={d / 'test.jsonl'}", f"index.path={d / 'index'}", "index.use_gpu=false", "retrieval.device=cpu",
        "train.eerg_epochs=1", "train.init_from_rep=false", "generate.max_new_tokens=12"]
    build_index(load_config("tiny", overrides), str(d / "train.jsonl"), str(d / "index"), str(encoder), progress=False)
    eerg = train(load_config("tiny", overrides + ["prompt.use_demonstration=true"]), "eerg", show_progress=False)["out"]
    text_only = train(load_config("tiny", overrides), "eerg", d / "runs" / "text_only", ablation="wo_v",
                      show_progress=False)["out"]
    return SimpleNamespace(folder=d, test=d / "test.jsonl", index=d / "index", eerg=eerg, text_only=text_only,
                           overrides=overrides)
