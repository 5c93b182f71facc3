"""The tiny visual encoder: spatially selective init, and pre-training on synthetic face attributes."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from elmd.models.config import VisionConfig, VisionPretrainConfig
from elmd.models.tiny_visual import query_cells
from elmd.training.vision_pretrain import ATTRIBUTES, attribute_ranges, pretrain_tiny_encoder, render_frames
from elmd.models.visual_encoder import VisualEncoder, build_visual_encoder

SMALL = ["vision.image_size=64", "vision.num_query_tokens=8", "vision_pretrain.train_frames=96",
         "vision_pretrain.valid_frames=32", "vision_pretrain.epochs=3", "vision_pretrain.render_size=64"]


def _cross_attention(enc, frames):
    """Layer-0 cross-attention weights [B, heads, Q, 1 + patches], recomputed from the modules."""
    with torch.no_grad():
        img = enc.vision_model(pixel_values=frames).last_hidden_state
        q0 = enc.qformer.layernorm(enc.query_tokens)  # the first self-attention is the identity
        ca = enc.qformer.encoder.layer[0].crossattention.attention
        h, d = ca.num_attention_heads, ca.attention_head_size
        q = ca.query(q0).view(1, -1, h, d).transpose(1, 2)
        k = ca.key(img).view(img.shape[0], -1, h, d).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1)


def test_each_query_attends_to_its_own_cell():
    enc = VisualEncoder.tiny(seed=0, image_size=224)
    grid = 224 // 16
    frames = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    attn = _cross_attention(enc, frames)  # [2, 4, 32, 197]
    cells = query_cells(grid, 32)
    assert len(set(cells)) == 32  # 32 distinct cells of the 14 x 14 grid
    for i, (x, y) in enumerate(cells):
        sharp = attn[:, :2, i, 1:]  # heads 0-1, patches only
        assert (sharp.argmax(-1) == y * grid + x).all()
        assert sharp.max(-1).values.min() > 20 / 197  # over 20x what uniform attention gives
        smooth = attn[:, 2:, i, 1:]
        assert (smooth.max(-1).values < sharp.max(-1).values).all()  # heads 2-3 spread wider


def test_a_local_change_moves_the_query_looking_there_most():
    enc = VisualEncoder.tiny(seed=0, image_size=224)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    cells = query_cells(14, 32)
    i = 5
    cx, cy = cells[i]
    y = x.clone()
    y[:, :, cy * 16:(cy + 1) * 16, cx * 16:(cx + 1) * 16] += 2.0 * torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        change = (enc(y) - enc(x)).norm(dim=-1)[0]  # [32]
    assert change.argmax().item() == i
    assert change[i] > 3 * change.median()


def test_render_frames_is_deterministic_and_in_range():
    cfg = VisionPretrainConfig(render_size=48, seed=3)
    a_img, a_y = render_frames(6, cfg, "train", progress=False)
    b_img, b_y = render_frames(6, cfg, "train", progress=False)
    v_img, _ = render_frames(6, cfg, "valid", progress=False)
    assert a_img.shape == (6, 48, 48, 3) and a_img.dtype == torch.uint8 and a_y.shape == (6, len(ATTRIBUTES))
    assert torch.equal(a_img, b_img) and torch.equal(a_y, b_y)
    assert not torch.equal(a_img, v_img)  # other people, other attributes
    assert ((a_y >= 0) & (a_y <= 1)).all()
    lo, hi = attribute_ranges()["mouth_curve"]
    assert lo < 0 < hi  # frowns and smiles are both in range


def test_pretrain_command_learns_writes_a_blip2_folder_and_reuses_it(tmp_path):
    from elmd.cli.main import main as cli

    out = tmp_path / "vision"
    args = ["features", "pretrain-encoder", "--out", str(out)] + [a for s in SMALL for a in ("--set", s)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "meta.json").read_text())
    losses = [h["train_mse"] for h in meta["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]  # it learns
    assert set(meta["valid_r2"]) == set(ATTRIBUTES)

    cfg = VisionConfig(path=str(out), image_size=64, num_query_tokens=8)
    loaded = build_visual_encoder(cfg)  # through the BLIP-2 loader
    assert loaded.source.startswith("blip2:") and not any(p.requires_grad for p in loaded.parameters())
    frames = torch.randn(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    untrained = VisualEncoder.tiny(seed=0, image_size=64, num_query_tokens=8)
    assert not torch.allclose(loaded.encode(frames), untrained.encode(frames), atol=1e-3)

    stamp = (out / "model.safetensors").stat().st_mtime_ns
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and "reused" in res.output
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp

    pcfg = VisionPretrainConfig(train_frames=96, valid_frames=32, epochs=3, render_size=64)
    again = pretrain_tiny_encoder(pcfg, cfg, tmp_path / "again", progress=False, force=True)
    assert not again["reused"]
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()  # seeded
