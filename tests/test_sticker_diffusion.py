"""Stable Diffusion backends (generate, rag) on a tiny random pipeline written by the test; nothing downloads."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.errors import ConfigError
from elmd.heads.sticker.config import StickerConfig
from elmd.heads.sticker.diffusion import StickerDiffusion, check_sd_folder, write_tiny_sd
from elmd.heads.sticker.modules import FeatureMapper


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd", seed=0)


@pytest.fixture(scope="module")
def sd(sd_dir):
    return StickerDiffusion(sd_dir, StickerConfig.tiny(guidance_scale=3.0))


def _arr(im) -> np.ndarray:
    return np.asarray(im).astype(np.int16)


def test_generate_from_prompt_embeddings(sd):
    torch.manual_seed(0)
    pe = torch.randn(2, 77, 8)
    a = sd.generate(pe, seeds=[0, 1])
    assert [im.size for im in a] == [(32, 32)] * 2
    assert np.array_equal(_arr(a[0]), _arr(sd.generate(pe[:1], seeds=[0])[0]))  # seeded, batch-independent
    assert not np.array_equal(_arr(a[0]), _arr(sd.generate(pe[:1], seeds=[5])[0]))
    assert not np.array_equal(_arr(a[0]), _arr(sd.generate(pe[:1] + 1.0, seeds=[0])[0]))


def test_negative_prompt_embeddings_are_used(sd_dir):
    pe = torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(1))
    plain = StickerDiffusion(sd_dir, StickerConfig.tiny(guidance_scale=3.0)).generate(pe, [0])[0]
    other = StickerDiffusion(sd_dir, StickerConfig.tiny(guidance_scale=3.0, negative_prompt="模糊 blurry")).generate(pe, [0])[0]
    assert not np.array_equal(_arr(plain), _arr(other))


def test_rag_starts_from_the_retrieved_sticker(sd):
    pe = torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(2)).repeat(2, 1, 1)
    white, black = np.full((48, 48, 3), 255, np.uint8), np.zeros((48, 48, 3), np.uint8)
    out = sd.rag(pe, [white, black], seeds=[0, 0])
    assert [im.size for im in out] == [(32, 32)] * 2
    assert not np.array_equal(_arr(out[0]), _arr(out[1]))  # same embeddings and noise: only the init image differs
    again = sd.rag(pe[:1], [white], seeds=[0])[0]
    assert np.array_equal(_arr(out[0]), _arr(again))
    with pytest.raises(ValueError):
        sd.rag(pe, [white], seeds=[0, 0])


def test_mapper_output_drives_the_pipeline(sd):
    cfg = StickerConfig.tiny()
    mapper = FeatureMapper.from_config(cfg, hidden=16)
    with torch.no_grad():
        pe = mapper(torch.randn(1, cfg.num_gen_tokens, 16))
    assert sd.generate(pe, [0])[0].size == (32, 32)
    assert sd.encode_text(["一只开心的小猫"]).shape == (1, 77, 8)  # the mapper's MSE target


def test_wrong_embedding_shape_names_the_keys(sd):
    with pytest.raises(ConfigError, match=r"sticker.num_clip_tokens=77 and sticker.prompt_dim=8"):
        sd.generate(torch.randn(1, 10, 768), [0])


def test_incomplete_folder_is_one_line(sd_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sd_dir, broken)
    for f in (broken / "unet").glob("*.safetensors"):
        f.unlink()
    (broken / "model_index.json").unlink()
    with pytest.raises(ConfigError) as e:
        check_sd_folder(broken)
    msg = str(e.value)
    assert "\n" not in msg and "model_index.json" in msg and "unet/ weights" in msg and "vae" not in msg
    with pytest.raises(ConfigError, match="Stable Diffusion folder not found"):
        StickerDiffusion(tmp_path / "nothing", StickerConfig.tiny())
    assert check_sd_folder(sd_dir) == sd_dir


def test_cli_make_tiny_sd(tmp_path):
    r = CliRunner().invoke(main, ["sticker", "make-tiny-sd", "--out", str(tmp_path / "sd")])
    assert r.exit_code == 0, r.output
    check_sd_folder(tmp_path / "sd")
    r = CliRunner().invoke(main, ["sticker", "make-tiny-sd", "--out", str(tmp_path / "sd")])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_caption_targets_once_per_sticker(sd):
    from elmd.heads.sticker.diffusion import caption_targets, sticker_caption
    from elmd.heads.sticker.library import Sticker

    stickers = [Sticker("a", "a.png", "happy", "一只小猫"), Sticker("b", "b.png", "sad", "一只小猫")]
    got = caption_targets(sd, stickers, batch_size=1)
    assert sorted(got) == ["a", "b"] and got["a"].shape == (77, 8)
    assert sticker_caption("一只小猫", "高兴") == "高兴：一只小猫"
    assert torch.allclose(got["a"], sd.encode_text(["高兴：一只小猫"])[0].float())
    assert not torch.allclose(got["a"], got["b"])  # the emotion word is part of the caption
