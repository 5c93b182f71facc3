"""Session fixture of the meta-response target (train.target=meta): the training fixture's tiny
dialogues with CPED-style reply fields on the happy replies (profile male / elderly, act, scene) and
none on the sad ones (-> the documented default: 女 / 青年, 未知), and a text-only eerg trained on
the meta target for a few epochs (fresh Linear, no demonstrations). Import it in a test module:
``from fixtures_meta import meta_run  # noqa: F401``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

HAPPY_FIELDS = {"profile": {"gender": "male", "age": "elderly"}, "act": "statement-opinion", "scene": "home"}


def meta_dialogues(n: int, offset: int = 0) -> list[dict]:
    """train_dialogues with :data:`HAPPY_FIELDS` on every happy reply turn."""
    from fixtures_train import train_dialogues

    out = train_dialogues(n, offset)
    for d in out:
        reply = d["turns"][1]
        if reply["emotion"] == "happy":
            reply.update(json.loads(json.dumps(HAPPY_FIELDS)))
    return out


def meta_overrides(folder, out) -> list[str]:
    from fixtures_train import train_overrides

    return train_overrides(folder, out) + [
        f"data.test={folder / 'test.jsonl'}", "vision.use_video=false", "train.target=meta", "train.init_from_rep=false",
        "train.eerg_epochs=6", "train.eerg_lr=0.03", "prompt.max_target_length=64", "generate.max_new_tokens=48",
        "generate.greedy=true"]


@pytest.fixture(scope="session")
def meta_run(tmp_path_factory):
    """Namespace: folder, test (path), eerg (output folder), overrides, meta (training meta)."""
    from elmd.config import load_config
    from elmd.training.run import train

    d = tmp_path_factory.mktemp("meta_data")
    for name, rows in (("train", meta_dialogues(12)), ("valid", meta_dialogues(4, 100)), ("test", meta_dialogues(4, 200))):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    overrides = meta_overrides(d, d / "runs")
    meta = train(load_config("tiny", overrides), "eerg", show_progress=False)
    return SimpleNamespace(folder=d, test=d / "test.jsonl", eerg=Path(meta["out"]), overrides=overrides, meta=meta)
