"""Sticker head modules (projection, InfoNCE, feature mapper, MSE) and StickerConfig."""

from __future__ import annotations

import math

import pytest
import torch

from elmd.config import load_config
from elmd.errors import ConfigError
from elmd.heads.sticker.config import StickerConfig
from elmd.heads.sticker.modules import FeatureMapper, InfoNCELoss, MapperLoss, RetrievalProjection


def test_projection_shapes_norms_and_pooling():
    torch.manual_seed(0)
    first, mean = RetrievalProjection(16, 8, 4, "first"), RetrievalProjection(16, 8, 4, "mean")
    mean.load_state_dict(first.state_dict())
    h = torch.randn(2, 3, 16)
    t, v = first(h, torch.randn(5, 8))
    assert t.shape == (2, 4) and v.shape == (5, 4)
    assert torch.allclose(t.norm(dim=-1), torch.ones(2)) and torch.allclose(v.norm(dim=-1), torch.ones(5))
    h2 = h.clone()
    h2[:, 1:] += 5.0  # only tokens after the first change
    assert torch.allclose(first.text(h2), first.text(h))
    assert not torch.allclose(mean.text(h2), mean.text(h))
    with pytest.raises(ValueError):
        RetrievalProjection(4, 4, 4, "max")


def test_infonce_hand_computed():
    loss = InfoNCELoss(temperature=1.0)
    eye = torch.eye(2)
    assert loss(eye, eye).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # logits [[1, 1], [0, 0]]: t->i = log 2 for both rows; i->t rows [1, 0], [1, 0] -> log(1+e^-1), log(1+e)
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    want = (math.log(2) + (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2) / 2
    assert loss(eye, v).item() == pytest.approx(want)


def test_infonce_scale_is_fixed_at_pegs_value():
    loss = InfoNCELoss()
    assert loss.logit_scale.item() == pytest.approx(1 / 0.07)
    assert list(loss.parameters()) == []
    with pytest.raises(ValueError):
        loss(torch.eye(2), torch.eye(3))


def test_infonce_trains_projection_to_align_pairs():
    torch.manual_seed(0)
    proj, loss = RetrievalProjection(12, 6, 8), InfoNCELoss(0.07)
    h, img = torch.randn(16, 2, 12), torch.randn(16, 6)
    opt = torch.optim.Adam(proj.parameters(), lr=1e-2)
    start = loss(*proj(h, img)).item()
    for _ in range(60):
        opt.zero_grad()
        loss(*proj(h, img)).backward()
        opt.step()
    t, v = proj(h, img)
    assert loss(t, v).item() < 0.2 * start
    assert ((t @ v.T).argmax(dim=1) == torch.arange(16)).float().mean() == 1.0  # every caption retrieves its image


def test_feature_mapper_pegs_shape():
    m = FeatureMapper.from_config(StickerConfig(), hidden=32)
    assert len(m.transformer.encoder.layers) == 4 and len(m.transformer.decoder.layers) == 4
    assert m.queries.shape == (1, 77, 512) and m.fc_out.out_features == 768
    with torch.no_grad():
        assert m(torch.randn(1, 24, 32)).shape == (1, 77, 768)


def test_mapper_loss_mask_and_fit():
    torch.manual_seed(0)
    cfg = StickerConfig.tiny()
    m, crit = FeatureMapper.from_config(cfg, hidden=16), MapperLoss()
    h, target = torch.randn(3, cfg.num_gen_tokens, 16), torch.randn(3, 77, cfg.prompt_dim)
    zero = crit(m(h), target, torch.zeros(3, dtype=torch.bool))
    assert zero.item() == 0.0 and zero.requires_grad
    only0 = crit(m(h), target, torch.tensor([True, False, False]))
    assert only0.item() == pytest.approx(torch.nn.functional.mse_loss(m(h)[:1], target[:1]).item(), rel=1e-5)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    start = crit(m(h), target).item()
    for _ in range(40):
        opt.zero_grad()
        crit(m(h), target).backward()
        opt.step()
    assert crit(m(h), target).item() < 0.7 * start
    with pytest.raises(ValueError, match="num_clip_tokens"):
        crit(m(h), target[:, :10])


def test_config_defaults_are_pegs_and_validation_names_the_key():
    c = StickerConfig()
    assert (c.num_img_tokens, c.num_ret_tokens, c.num_gen_tokens, c.ret_dim) == (32, 8, 24, 256)
    assert c.logit_scale == pytest.approx(1 / 0.07)
    with pytest.raises(ConfigError, match=r"sticker.num_ret_tokens=32 .* < num_img_tokens"):
        StickerConfig(num_ret_tokens=32)
    with pytest.raises(ConfigError, match="sticker.backend='draw'"):
        StickerConfig(backend="draw")
    with pytest.raises(ConfigError, match="sticker.strength"):
        StickerConfig(strength=1.5)
    cfg = load_config("tiny", ["sticker.backend=rag", "sticker.top_k=3"])
    assert (cfg.sticker.backend, cfg.sticker.top_k) == ("rag", 3)
    with pytest.raises(ConfigError, match="mapper_hidden"):  # validated when the config is loaded
        load_config("tiny", ["sticker.mapper_heads=3"])
