"""The tiny preset end to end: sample dialogues -> prompt batch with video features -> ELMDModel loss;
frozen LLM, gradient only in the projector, padding invariance, causal use of the video tokens,
and the chatglm2-6b preset's missing-weights message."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from elmd.config import load_config
from elmd.data.jsonl import read_samples
from elmd.errors import ElmdError
from elmd.models.pooling import num_video_tokens
from elmd.models.presets import TINY_TOKENIZER, build_elmd_model, check_preset, load_tokenizer
from elmd.models.prompt import collate, encode_prompt, encode_sample, label_word_ids

Q_DIM = 64  # the tiny Q-Former's width


@pytest.fixture(scope="module")
def setup(llm_dialogues_jsonl):
    cfg = load_config("tiny", [f"data.train={llm_dialogues_jsonl}"])
    tok = load_tokenizer(cfg)
    model = build_elmd_model(cfg, tok, Q_DIM)
    n_video = num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens)
    samples = read_samples(llm_dialogues_jsonl)
    return cfg, tok, model, n_video, samples


def make_batch(setup, ids, stage="eerg", seed=0):
    cfg, tok, model, n_video, samples = setup
    feats = [encode_sample(samples[i], "", tok, model_labels(cfg), stage, n_video, cfg.prompt) for i in ids]
    batch = collate(feats, tok.pad_id)
    g = torch.Generator().manual_seed(seed)
    batch["video_feats"] = torch.randn(len(ids), cfg.vision.num_frames, cfg.vision.num_query_tokens, Q_DIM, generator=g)
    return batch


def model_labels(cfg):
    from elmd.data.labels import label_set_from_config

    return label_set_from_config(cfg.data.labels, cfg.data.label_names)


def test_tiny_preset_builds_a_batch_with_video_and_returns_the_loss(setup, llm_dialogues_jsonl):
    cfg, tok, model, n_video, samples = setup
    from elmd.io import file_sha256

    cached = llm_dialogues_jsonl.parent / TINY_TOKENIZER.format(hash=file_sha256(llm_dialogues_jsonl)[:12])
    assert cached.exists()  # cached beside data.train, keyed by its content
    assert n_video == cfg.vision.num_frames + cfg.vision.num_query_tokens
    batch = make_batch(setup, [0, 4, 5])  # samples d1#0 (video), d1#4 (no video), d2#0 (video)
    assert batch["video_present"].tolist() == [True, False, True]
    assert batch["video_mask"].sum(1).tolist() == [n_video, 0, n_video]
    out = model(**batch)
    # the loss is the mean next-token cross-entropy over the target positions only
    logits, labels = out.logits[:, :-1].float(), batch["labels"][:, 1:]
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert out.logits.shape == (3, batch["input_ids"].shape[1], tok.vocab_size)

    out.loss.backward()
    assert all(p.grad is None for p in model.llm.parameters())
    grads = [p.grad for p in model.projector.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert set(model.trainable_state_dict()) == {"projector.proj.weight", "projector.proj.bias"}
    model.zero_grad(set_to_none=True)


def test_video_tokens_change_only_what_comes_after_them(setup):
    _, _, model, _, _ = setup
    a, b = make_batch(setup, [0], seed=1), make_batch(setup, [0], seed=2)
    with torch.no_grad():
        la, lb = model(**a).logits[0], model(**b).logits[0]
    first = int(a["video_mask"][0].nonzero()[0])
    assert torch.allclose(la[:first], lb[:first], atol=1e-6)  # causal: the prompt before the video
    assert (la[first:] - lb[first:]).abs().max() > 1e-4  # the video reaches the target logits


def test_left_padding_does_not_change_a_sample(setup):
    _, _, model, _, _ = setup
    alone, both = make_batch(setup, [5]), make_batch(setup, [0, 5])
    both["video_feats"][1] = alone["video_feats"][0]
    with torch.no_grad():
        a, b = model(**alone), model(**both)
    n = alone["input_ids"].shape[1]
    assert both["input_ids"].shape[1] > n  # sample 5 is padded in the pair
    assert torch.allclose(a.logits[0], b.logits[1, -n:], atol=1e-5)


def test_generate_continues_with_the_forward_argmax(setup):
    cfg, tok, model, n_video, samples = setup
    enc = [encode_prompt(samples[i], "", tok, model_labels(cfg), "eerg", n_video, cfg.prompt) for i in (0, 5)]
    batch = collate(enc, tok.pad_id)
    batch["video_feats"] = torch.randn(2, cfg.vision.num_frames, cfg.vision.num_query_tokens, Q_DIM)
    new = model.generate(**batch, max_new_tokens=2, do_sample=False)
    with torch.no_grad():
        first = model(**batch).logits[:, -1].argmax(-1)
    assert new[:, 0].tolist() == first.tolist()


def test_label_logprobs_match_the_rep_training_loss(setup):
    cfg, tok, model, n_video, samples = setup
    labels = model_labels(cfg)
    idx = [0, 5]
    rep = make_batch(setup, idx, stage="rep")
    prompts = collate([encode_prompt(samples[i], "", tok, labels, "rep", n_video, cfg.prompt) for i in idx], tok.pad_id)
    ids = label_word_ids(tok, labels)
    scores = model.label_logprobs(**prompts, label_ids=ids, video_feats=rep["video_feats"], reduction="sum")
    means = model.label_logprobs(**prompts, label_ids=ids, video_feats=rep["video_feats"])
    assert scores.shape == means.shape == (2, len(labels))
    assert torch.allclose(means, scores / torch.tensor([len(w) for w in ids]))
    with torch.no_grad():
        for b, i in enumerate(idx):  # -loss * n_target_tokens = log P(true word | prompt)
            one = {k: v[b:b + 1] for k, v in rep.items()}
            n = int((one["labels"] != -100).sum())
            want = -model(**one).loss.item() * n
            assert scores[b, labels.index(samples[i].target_emotion)].item() == pytest.approx(want, abs=1e-4)


def test_label_scores_have_no_length_bias(setup):
    """An undecided model (every next token equally likely) must not prefer the label word that
    happens to have fewer tokens: the sum of log-probabilities does, the mean per token does not."""
    import copy

    cfg, tok, model, n_video, samples = setup
    labels = model_labels(cfg)
    flat = copy.deepcopy(model)
    with torch.no_grad():
        flat.llm.lm_head.weight.zero_()  # uniform next-token distribution everywhere
    prompts = collate([encode_prompt(samples[0], "", tok, labels, "rep", 0, cfg.prompt)], tok.pad_id)
    words = [tok.encode("高"), tok.encode("惊讶惊讶惊讶")]  # 1 token vs several
    assert len(words[0]) < len(words[1])
    total = flat.label_logprobs(prompts["input_ids"], prompts["attention_mask"], words, reduction="sum")[0]
    mean = flat.label_logprobs(prompts["input_ids"], prompts["attention_mask"], words)[0]
    assert total[0] > total[1]  # the sum favours the shorter word
    assert mean[0].item() == pytest.approx(mean[1].item(), abs=1e-5)  # the mean does not


def test_video_inputs_must_agree(setup):
    _, _, model, _, _ = setup
    batch = make_batch(setup, [0, 5])
    with pytest.raises(ValueError, match="video_present does not match"):
        model(**{**batch, "video_present": torch.tensor([True, False])})
    with pytest.raises(ValueError, match="no video_feats"):
        model(**{**batch, "video_feats": None})


def test_chatglm2_preset_without_weights_fails_at_once_with_instructions(tmp_path):
    cfg = load_config("chatglm2-6b", [f"llm.path={tmp_path}/hf", f"llm.tokenizer={tmp_path}/raw/tokenizer.model"])
    with pytest.raises(ElmdError) as e:
        load_tokenizer(cfg)
    msg = str(e.value)
    assert "download THUDM/chatglm2-6b" in msg and f"elmd convert chatglm2 --src {tmp_path}/raw --out {tmp_path}/hf" in msg
    assert f"llm.path={tmp_path}/hf" in msg
    with pytest.raises(ElmdError, match="unknown llm.preset"):
        check_preset(load_config("tiny", ["llm.preset=gpt"]))


def test_tiny_pipeline_with_real_video_features(video_dir, tiny_visual_encoder, tiny_tokenizer, tiny_llm):
    """Videos on disk -> frozen tiny ViT + Q-Former features -> prompt batch -> ELMDModel loss."""
    from elmd.models.elmd_model import ELMDModel
    from elmd.models.features import video_features
    from elmd.models.pooling import VideoProjector

    cfg = load_config("tiny", ["vision.feature_cache="])
    samples = read_samples(video_dir / "dialogues.jsonl")
    feats = video_features([s.video for s in samples], tiny_visual_encoder, None, cfg.vision)
    n_video = num_video_tokens(cfg.vision.num_frames, tiny_visual_encoder.num_query_tokens)
    assert feats.shape == (len(samples), cfg.vision.num_frames, tiny_visual_encoder.num_query_tokens, tiny_visual_encoder.q_dim)
    enc = [encode_sample(s, "", tiny_tokenizer, model_labels(cfg), "eerg", n_video, cfg.prompt) for s in samples]
    batch = collate(enc, tiny_tokenizer.pad_id)
    torch.manual_seed(0)
    model = ELMDModel(tiny_llm, VideoProjector(tiny_visual_encoder.q_dim, tiny_llm.config.hidden_size))
    with torch.no_grad():
        loss = model(**batch, video_feats=feats).loss
        blank = model(**batch, video_feats=torch.zeros_like(feats)).loss
    assert torch.isfinite(loss) and abs(loss.item() - blank.item()) > 1e-6  # the videos reach the loss
