"""Stage `sticker`: the loss parts by hand, the [IMG] targets, what trains, resume, loading the run back
with its [IMG] tokens, GILL's forced run at decoding, the head's stickers (retrieved / generated PNG)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from elmd.config import load_config
from elmd.heads.sticker.config import StickerConfig
from elmd.heads.sticker.head_model import StickerModules
from elmd.heads.sticker.objective import StickerObjective, StickerTargets, append_img_run
from elmd.models.prompt import IGNORE


def test_append_img_run_puts_the_run_before_eos_and_labels_only_img1_by_default():
    enc = {"input_ids": [5, 6, 7, 2], "labels": [IGNORE, IGNORE, 7, 2], "video_mask": [False, True, False, False]}
    out = append_img_run(enc, [90, 91, 92], eos_id=2)
    assert out["input_ids"] == [5, 6, 7, 90, 91, 92, 2]
    assert out["labels"] == [IGNORE, IGNORE, 7, 90, IGNORE, IGNORE, 2]
    assert out["video_mask"] == [False, True, False, False, False, False, False]
    assert append_img_run(enc, [90, 91, 92], 2, "all")["labels"] == [IGNORE, IGNORE, 7, 90, 91, 92, 2]


def test_objective_parts_are_shares_of_the_global_means_by_hand():
    """Zero projections and mapper: every library sticker scores 0 (ret_i = log N), the mapper outputs 0
    (gen_i = c^2 for a constant target c), zero logits give log V per target token."""
    cfg = StickerConfig.tiny(num_img_tokens=2, num_ret_tokens=1, ret_dim=4, prompt_dim=3, num_clip_tokens=5,
                             mapper_hidden=4, mapper_heads=2, ret_negatives="library", lambda_lm=1.0,
                             lambda_ret=2.0, lambda_gen=3.0)
    mods = StickerModules(cfg, hidden=6, image_dim=4, labels=("happy", "sad"))
    with torch.no_grad():
        for p in list(mods.projection.parameters()) + list(mods.mapper.fc_out.parameters()):
            p.zero_()
    n_lib, c = 3, 0.5
    targets = StickerTargets(torch.randn(n_lib, 4), torch.full((n_lib, 5, 3), c), ["happy", "sad", "sad"])
    obj = StickerObjective(mods, [20, 21], targets)
    V, T = 22, 6
    ids = torch.tensor([[1, 3, 4, 20, 21, 2], [1, 3, 5, 6, 7, 2]])  # row 0: reply + run + eos; row 1: no run
    labels = torch.tensor([[IGNORE, IGNORE, 4, 20, IGNORE, 2], [IGNORE, IGNORE, 5, 6, 7, 2]])
    out = SimpleNamespace(logits=torch.zeros(2, T, V), hidden_states=torch.randn(2, T, 6))
    batch = {"input_ids": ids, "labels": labels, "sticker_row": torch.tensor([1, -1]),
             "global_target_tokens": 10, "global_samples": 4}
    parts = obj(out, batch)
    lm = 7 * math.log(V) / 10  # 3 + 4 target tokens of this micro-batch / 10 of the global batch
    ret = 1 * math.log(n_lib) / 4  # one sticker reply of the 4 samples in the global batch
    gen = 1 * c ** 2 / 4
    assert parts["lm"].item() == pytest.approx(lm, rel=1e-5)
    assert parts["ret"].item() == pytest.approx(ret, rel=1e-5)
    assert parts["gen"].item() == pytest.approx(gen, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(lm + 2 * ret + 3 * gen, rel=1e-5)


def test_trained_output_keeps_eerg_parts_and_holds_the_img_rows(sticker_run):
    from elmd.runs import load_trainable, read_meta

    state, eerg = load_trainable(sticker_run.out), load_trainable(sticker_run.gen_run.eerg)
    for k in eerg:  # train_base=false: prefix and video Linear exactly as stage eerg left them
        assert torch.equal(state[k], eerg[k]), k
    assert set(state) - set(eerg) == {"added_tokens.input", "added_tokens.output"}
    assert state["added_tokens.input"].shape[0] == 4
    meta = read_meta(sticker_run.out)
    assert meta["stage"] == "sticker" and meta["added_tokens"]["names"] == ["[IMG1]", "[IMG2]", "[IMG3]", "[IMG4]"]
    assert (sticker_run.out and (sticker_run.root / "runs" / "sticker" / "sticker" / "sticker_modules.safetensors").is_file())
    assert set(meta["sticker_valid"]) >= {"recall_at_1", "emotion_accuracy", "prior_emotion_accuracy"}
    rows = [json.loads(x) for x in (sticker_run.root / "runs" / "sticker" / "metrics.jsonl").read_text().splitlines()]
    assert all({"lm", "ret", "gen"} <= set(r) for r in rows if "loss" in r)


@pytest.mark.parametrize("train_base, want", [(False, {"added_tokens", "sticker"}),
                                              (True, {"added_tokens", "sticker", "projector", "prefix"})])
def test_only_the_intended_parameters_train(sticker_run, tmp_path, train_base, want):
    from elmd.heads.sticker import stage

    cfg = load_config("tiny", sticker_run.overrides + [f"sticker.train_base={str(train_base).lower()}"])
    s = stage.setup(cfg, tmp_path / "out", show_progress=False)
    trainable = {n.split(".")[0] for n, p in s.model.named_parameters() if p.requires_grad}
    assert trainable == want
    assert not any(p.requires_grad for p in s.model.llm.parameters())
    before = {n: p.detach().clone() for n, p in s.model.named_parameters()}
    stage.fit(s, show_progress=False)
    changed = {n.split(".")[0] for n, p in s.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == want


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(sticker_run, tmp_path, monkeypatch):
    import elmd.training.loop as loop
    from elmd.heads.sticker import stage

    cfg = load_config("tiny", sticker_run.overrides + ["sticker.epochs=2", "train.save_every=2"])

    def run(out, resume=False):
        s = stage.setup(cfg, out, show_progress=False)
        stage.fit(s, resume=resume, show_progress=False)
        return {k: v.clone() for k, v in s.model.trainable_state_dict().items()}

    full = run(tmp_path / "full")
    real, calls = loop.train_step, []

    def dying(*a, **k):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(loop, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed")
    monkeypatch.setattr(loop, "train_step", real)
    resumed = run(tmp_path / "killed", resume=True)
    assert resumed.keys() == full.keys() and any(k.startswith("sticker.") for k in full)
    assert all(torch.equal(resumed[k], full[k]) for k in full)
    other = load_config("tiny", sticker_run.overrides + ["sticker.epochs=2", "train.save_every=2", "sticker.ret_dim=8"])
    with pytest.raises(Exception, match="sticker.* settings.*ret_dim"):
        stage.fit(stage.setup(other, tmp_path / "killed", show_progress=False), resume=True, show_progress=False)


def _forcing(pipe, at: int, img1: int):
    """``pipe`` whose decoding puts all mass on [IMG1] at step ``at`` (a model that decided to send a sticker)."""
    real = pipe.decode_batch

    def hook(step, logits):
        if step == at:
            logits = torch.full_like(logits, float("-inf"))
            logits[:, img1] = 0.0
        return logits

    pipe.decode_batch = lambda b, s, g, **kw: real(b, s, g, logits_hook=hook, **kw)
    return pipe


def _requests(sticker_run):
    from elmd.data.jsonl import read_samples
    from elmd.inference.pipeline import request_of

    return [request_of(s, seed=i) for i, s in enumerate(read_samples(sticker_run.gen_run.test))][:3]


def test_the_run_loads_and_decoding_emits_the_whole_img_run_once_img1_is_chosen(sticker_run, tmp_path):
    from elmd.inference import load

    pipe = load(sticker_run.out, device="cpu", heads=["sticker"], media_dir=tmp_path / "media")
    ids = pipe.tokenizer.token_ids(["[IMG1]", "[IMG2]", "[IMG3]", "[IMG4]"])
    assert pipe.forced_run == tuple(ids) and set(ids) <= set(pipe.keep_ids)
    reqs = _requests(sticker_run)
    replies = _forcing(pipe, 3, ids[0]).respond_batch(reqs)
    for rep in replies:
        assert rep.token_ids[3:7] == ids  # [IMG2..4] followed whatever was sampled
        assert "[IMG" not in rep.response
        st = rep.extras["sticker"]
        assert st["backend"] == "retrieve" and st["emotion"] and st["id"]
        assert (tmp_path / "media").resolve() in __import__("pathlib").Path(st["path"]).resolve().parents
    again = pipe.respond_batch(reqs[:1])[0].extras["sticker"]  # same dialogue: never the sticker shown before
    assert again["id"] != replies[0].extras["sticker"]["id"]
    plain = load(sticker_run.out, device="cpu", heads=["sticker"], media_dir=tmp_path / "m2")
    real = plain.decode_batch  # [IMG1] never chosen: no run, no sticker, and [IMG2..4] never appear alone

    def ban(step, logits):
        logits = logits.clone()
        logits[:, ids[0]] = float("-inf")
        logits[:, ids[1]] = 1e4  # would win, but may only follow [IMG1]
        return logits

    plain.decode_batch = lambda b, s, g, **kw: real(b, s, g, logits_hook=ban, **kw)
    for rep in plain.respond_batch(reqs):
        assert not set(ids) & set(rep.token_ids) and "sticker" not in rep.extras


def test_generate_backend_writes_png_stickers_with_the_tiny_sd(sticker_run, tmp_path):
    from PIL import Image

    from elmd.inference import load

    pipe = load(sticker_run.out, device="cpu", heads=["sticker"], media_dir=tmp_path,
                overrides=["sticker.backend=generate"])
    ids = pipe.tokenizer.token_ids(["[IMG1]"])
    rep = _forcing(pipe, 2, ids[0]).respond_batch(_requests(sticker_run)[:1])[0]
    st = rep.extras["sticker"]
    assert st["backend"] == "generate" and st["path"].endswith(".png")
    with Image.open(st["path"]) as im:
        assert im.size == (32, 32)


def test_stage_refuses_a_missing_library_and_data_without_stickers(sticker_run, tmp_path):
    from elmd.errors import DataError, ElmdError
    from elmd.heads.sticker import stage

    with pytest.raises(ElmdError, match="sticker.library"):
        stage.setup(load_config("tiny", sticker_run.overrides + ["sticker.library="]), tmp_path / "a")
    plain = load_config("tiny", sticker_run.overrides + [f"data.train={sticker_run.gen_run.folder / 'train.jsonl'}"])
    with pytest.raises(DataError, match="no reply carries a 'sticker'.*elmd sticker attach"):
        stage.setup(plain, tmp_path / "b")
