"""Gradient checkpointing with the p-tuning prefix (elmd.models.grad_ckpt): the checkpointed step gives
the same loss and the same prefix + projector gradients as the plain one; transformers' own
checkpointing (the reason session.py refuses it in stage eerg) is shown to lose the prefix."""

from __future__ import annotations

import pytest
import torch

from elmd.config import load_config
from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.models.config import PrefixConfig
from elmd.models.elmd_model import ELMDModel
from elmd.models.glm import random_glm, tiny_config
from elmd.models.grad_ckpt import checkpointing_enabled, disable_checkpointing, enable_checkpointing
from elmd.models.pooling import VideoProjector, num_video_tokens
from elmd.models.prompt import collate, encode_sample
from elmd.training.loop import TargetTokenLoss

Q_DIM, P = 64, 6


@pytest.fixture(scope="module")
def setup(tiny_tokenizer, llm_dialogues_jsonl):
    cfg = load_config("tiny")
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    n_video = num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens)
    samples = read_samples(llm_dialogues_jsonl)
    batch = collate([encode_sample(s, "", tiny_tokenizer, labels, "eerg", n_video, cfg.prompt) for s in samples[:3]],
                    tiny_tokenizer.pad_id)
    batch["video_feats"] = torch.randn(3, cfg.vision.num_frames, cfg.vision.num_query_tokens, Q_DIM,
                                       generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    tok = tiny_tokenizer
    model = ELMDModel(random_glm(tiny_config(tok.vocab_size, tok.pad_id, tok.eos_id)), VideoProjector(Q_DIM, 64))
    model.attach_prefix(PrefixConfig(pre_seq_len=P, dropout=0.0), seed=0)
    return model, batch


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    inputs = dict(batch)
    labels = inputs.pop("labels")
    loss = TargetTokenLoss()(model(**inputs).logits, labels)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}


def test_checkpointed_step_equals_the_plain_one_with_the_prefix(setup):
    model, batch = setup
    model.train()
    model.llm.train()  # checkpointing must not depend on eval mode either way
    plain_loss, plain = loss_and_grads(model, batch)
    enable_checkpointing(model.llm)
    try:
        assert checkpointing_enabled(model.llm)
        ck_loss, ck = loss_and_grads(model, batch)
    finally:
        disable_checkpointing(model.llm)
    assert not checkpointing_enabled(model.llm)
    assert set(plain) == {"projector.proj.weight", "projector.proj.bias", "prefix.embedding.weight"}
    assert plain["prefix.embedding.weight"].abs().sum() > 0  # the prefix does receive gradient
    assert torch.allclose(ck_loss, plain_loss, rtol=0, atol=1e-6), (ck_loss, plain_loss)
    for k in plain:
        assert torch.allclose(ck[k], plain[k], rtol=1e-5, atol=1e-7), (k, (ck[k] - plain[k]).abs().max())


def test_checkpointing_recomputes_and_leaves_no_grad_paths_alone(setup, monkeypatch):
    model, batch = setup
    calls, mlp = [], model.llm.model.layers[0].mlp
    forward = mlp.forward
    monkeypatch.setattr(mlp, "forward", lambda x: calls.append(1) or forward(x))
    enable_checkpointing(model.llm)
    try:
        loss_and_grads(model, batch)
        assert len(calls) == 2  # forward + the replay in backward
        calls.clear()
        with torch.no_grad():
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out = model(**inputs).logits
        assert len(calls) == 1 and out.shape[:2] == batch["input_ids"].shape
    finally:
        disable_checkpointing(model.llm)


def test_transformers_checkpointing_drops_the_prefix(setup):
    """Why elmd/training/session.py refuses transformers' checkpointing in stage eerg: it sets the cache to
    None inside each layer, so the keys lose the P prefix columns that the attention mask still has."""
    model, batch = setup
    model.train()
    model.llm.gradient_checkpointing_enable({"use_reentrant": False})
    try:
        with pytest.raises(ValueError, match="transformers' gradient checkpointing is on"):
            enable_checkpointing(model.llm)
        width = batch["input_ids"].shape[1]
        with pytest.raises(RuntimeError, match=f"{width}.*{width + P}|{width + P}.*{width}"):
            loss_and_grads(model, batch)
    finally:
        model.llm.gradient_checkpointing_disable()
