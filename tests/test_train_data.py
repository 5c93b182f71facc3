"""Training data and loop helpers: batch order and sharding, the exact loss normalisation, the
schedule, demonstrations without same-dialogue leakage, and the one-line errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from elmd.errors import DataError, ElmdError
from elmd.training.data import (FeatureStore, global_batches, labels_of, load_split, prepare_split,
                                rank_micro_batches, retrieve_demonstrations)
from elmd.training.loop import TargetTokenLoss, make_scheduler


def test_global_batches_are_a_seeded_permutation_per_epoch():
    a, b = global_batches(10, 4, seed=7, epoch=0), global_batches(10, 4, seed=7, epoch=0)
    assert a == b and [len(x) for x in a] == [4, 4, 2]
    assert sorted(sum(a, [])) == list(range(10))
    assert global_batches(10, 4, seed=7, epoch=1) != a  # a new order every epoch
    assert global_batches(10, 4, seed=8, epoch=0) == global_batches(10, 4, seed=7, epoch=1)  # seed + epoch


def test_rank_micro_batches_partition_the_global_batch():
    batch = [9, 3, 5, 0, 7, 1, 8]
    parts = {(r, w, a): rank_micro_batches(batch, r, w, a) for w in (1, 2, 3) for a in (1, 2) for r in range(w)}
    for w in (1, 2, 3):
        for a in (1, 2):
            joined = [i for r in range(w) for mb in parts[(r, w, a)] for i in mb]
            assert joined == batch  # contiguous shards in rank order, nothing lost or repeated
    assert parts[(0, 2, 1)] == [[9, 3, 5, 0]] and parts[(1, 2, 1)] == [[7, 1, 8]]
    assert parts[(0, 2, 2)] == [[9, 3], [5, 0]] and parts[(1, 2, 2)] == [[7, 1], [8]]
    assert rank_micro_batches([4], 1, 2, 1) == []  # a rank may get nothing from a short last batch


def test_target_token_loss_is_the_sum_over_target_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, -100, -100, -100, 6]])
    got = TargetTokenLoss()(logits, labels)
    # targets at t are predicted from t-1: (0,1)->3, (0,2)->4, (0,3)->1, (1,3)->6
    rows = torch.stack([logits[0, 1], logits[0, 2], logits[0, 3], logits[1, 3]])
    want = F.cross_entropy(rows, torch.tensor([3, 4, 1, 6]), reduction="sum")
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    hf_mean = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert (got / 4).item() == pytest.approx(hf_mean.item(), rel=1e-6)


def test_linear_schedule_with_warmup_by_hand():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = make_scheduler(opt, total_steps=6, warmup_steps=2, kind="linear")
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])
    const = make_scheduler(torch.optim.AdamW([p], lr=2.0), 6, 0, "constant")
    assert const.get_last_lr() == [2.0]


def test_split_encodes_targets_and_video_positions(train_cfg):
    from elmd.models.presets import load_tokenizer

    cfg = train_cfg()
    tok, labels = load_tokenizer(cfg), labels_of(cfg)
    split = prepare_split(cfg, "train", tok, labels, "rep")
    assert len(split) == 12 and all(v and v.endswith(("warm.mp4", "cold.mp4")) for v in split.videos)
    n_video = cfg.vision.num_frames + cfg.vision.num_query_tokens
    assert all(sum(e["video_mask"]) == n_video for e in split.encoded)
    word = {lab: tok.encode(labels.word(lab)) for lab in ("happy", "sad")}
    assert split.target_tokens([0, 1]) == len(word["happy"]) + len(word["sad"])  # rep: the emotion word only
    no_video = prepare_split(train_cfg("vision.use_video=false"), "train", tok, labels, "rep")
    assert not any(any(e["video_mask"]) for e in no_video.encoded) and set(no_video.videos) == {None}


def test_no_demonstration_means_no_retrieval(train_cfg):
    cfg = train_cfg("index.path=/nonexistent/index")
    samples = load_split(cfg, "train", labels_of(cfg))
    assert retrieve_demonstrations(cfg, samples, labels_of(cfg)) == [""] * len(samples)
    with pytest.raises(ElmdError, match="elmd index build"):
        retrieve_demonstrations(train_cfg("index.path=/nonexistent/index", "prompt.use_demonstration=true"),
                                samples, labels_of(cfg))


def test_demonstrations_never_come_from_the_samples_own_dialogue(train_cfg, train_folder, tmp_path):
    from retrieval.build import build_index
    from retrieval.demonstration import format_demonstration

    cfg = train_cfg("prompt.use_demonstration=true", f"index.path={tmp_path / 'index'}", "retrieval.builtin_dim=32",
                    "retrieval.builtin_vocab=200", "retrieval.device=cpu", "index.use_gpu=false")
    index = build_index(cfg, str(train_folder / "train.jsonl"), str(tmp_path / "index"), "builtin:char", progress=False)
    labels = labels_of(cfg)
    samples = load_split(cfg, "train", labels)
    demos = retrieve_demonstrations(cfg, samples, labels)
    plain = index.search([s.utterance.text for s in samples], 1)  # without exclusion
    assert any(h[0].dialogue_id == s.dialogue_id for h, s in zip(plain, samples))  # leakage would happen
    ref = index.search([s.utterance.text for s in samples], 1, [s.dialogue_id for s in samples])
    assert all(h[0].dialogue_id != s.dialogue_id for h, s in zip(ref, samples))
    assert demos == [format_demonstration(h[0], labels) for h in ref]


def test_bad_inputs_are_one_line_errors(train_cfg, tmp_path):
    cfg = train_cfg(f"vision.feature_cache={tmp_path / 'no_cache'}")
    with pytest.raises(ElmdError, match="elmd features extract"):
        FeatureStore(cfg.vision)
    one_turn = tmp_path / "one.jsonl"
    one_turn.write_text(json.dumps({"dialogue_id": "x", "turns": [{"speaker": "a", "text": "你好", "emotion": "happy"}]},
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no samples"):
        load_split(train_cfg(f"data.train={one_turn}"), "train", labels_of(cfg))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no dialogues"):
        load_split(train_cfg(f"data.valid={empty}"), "valid", labels_of(cfg))


from fixtures_train import Toy as _Toy  # noqa: E402  (one toy model for the loop tests)


def _toy_step(x):
    from types import SimpleNamespace

    from elmd.training.dist import DistInfo
    from elmd.training.loop import LoopSpec, make_optimizer, train_step

    model = _Toy()
    labels = torch.tensor([[-100, 2]])
    spec = LoopSpec(model, [model.w], 1, lambda idx: {"x": x, "labels": labels}, lambda idx: 1, lambda e: {}, 0.1, 1,
                    model_inputs=("x",))
    opt = make_optimizer([model.w], 0.1, 0.0)
    sched = make_scheduler(opt, 10, 0, "constant")
    tc = SimpleNamespace(grad_accum=1, max_grad_norm=1.0)
    loss, ok, _ = train_step(spec, [0], opt, sched, tc, DistInfo())
    return model.w.detach().clone(), loss, ok


def test_a_step_with_a_non_finite_gradient_is_skipped():
    x = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    w, loss, ok = _toy_step(x)
    assert ok and not torch.equal(w, torch.ones(3))
    assert loss == pytest.approx(F.cross_entropy(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2])).item(), rel=1e-6)
    w, loss, ok = _toy_step(x * float("nan"))
    assert not ok and torch.equal(w, torch.ones(3))  # no NaN reached the weights


def test_ablation_indexes_must_come_from_the_ablated_retriever(train_cfg):
    from elmd.resources import check_index_variant

    full = {"encoder": {"label": "+ERT+SSC"}}
    check_index_variant(train_cfg(), full, "idx")  # the full model accepts it
    with pytest.raises(ElmdError, match="trained with ERT"):
        check_index_variant(train_cfg("retrieval.ert=false"), full, "idx-wo_ert")
    with pytest.raises(ElmdError, match="trained with SSC"):
        check_index_variant(train_cfg("retrieval.ssc=false"), {"encoder": {"label": "+SSC"}}, "idx-wo_ssc")
    check_index_variant(train_cfg("retrieval.ert=false"), {"encoder": {"label": "+SSC"}}, "idx-wo_ert")
