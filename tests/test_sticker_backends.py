"""StickerModules (split, PEGS losses, save/load) and the retrieve / generate / rag backends end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elmd.errors import ConfigError
from elmd.heads.sticker.backends import GenerateBackend, RagBackend, RetrieveBackend, build_backend
from elmd.heads.sticker.config import StickerConfig
from elmd.heads.sticker.diffusion import StickerDiffusion, write_tiny_sd
from elmd.heads.sticker.draw import draw_library
from elmd.heads.sticker.encoders import VisualImageEncoder
from elmd.heads.sticker.head_model import StickerModules
from elmd.heads.sticker.index import StickerLibrary, build_library
from elmd.models.visual_encoder import VisualEncoder

CFG = StickerConfig.tiny(top_k=3)
DIM = 64  # the tiny encoder's q


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> StickerLibrary:
    root = tmp_path_factory.mktemp("sticker_backends")
    draw_library(root / "set", size=48, poses=1)
    enc = VisualImageEncoder(VisualEncoder.tiny(image_size=48, num_query_tokens=4))
    build_library(root / "set", root / "set/stickers.jsonl", root / "lib", enc)
    return StickerLibrary.load(root / "lib", enc)


@pytest.fixture(scope="module")
def diffusion(tmp_path_factory):
    return StickerDiffusion(write_tiny_sd(tmp_path_factory.mktemp("sd") / "sd"), CFG)


def aligned_modules() -> StickerModules:
    """Text and image projections with the same weights, so hidden state x retrieves the sticker whose vector is x."""
    torch.manual_seed(0)
    mods = StickerModules(CFG, hidden=DIM, image_dim=DIM)
    mods.projection.text_fc.load_state_dict(mods.projection.visual_fc.state_dict())
    return mods


def hidden_for(vectors) -> torch.Tensor:
    h = torch.randn(len(vectors), CFG.num_img_tokens, DIM)
    h[:, 0] = torch.as_tensor(vectors)
    return h


def test_split_losses_and_objective():
    torch.manual_seed(0)
    cfg = CFG.replace(lambda_ret=2.0, lambda_gen=3.0)
    mods = StickerModules(cfg, hidden=16, image_dim=8)
    h = torch.randn(4, cfg.num_img_tokens, 16, requires_grad=True)
    ret, gen = mods.split(h)
    assert ret.shape == (4, 4, 16) and gen.shape == (4, 4, 16)
    with pytest.raises(ValueError, match=r"\[B, 8, 16\]"):
        mods.split(h[:, :5])
    none = mods.losses(h, torch.randn(4, 8), torch.zeros(4, dtype=torch.bool), torch.randn(4, 77, 8))
    assert (none.ret.item(), none.gen.item(), none.n) == (0.0, 0.0, 0)
    some = mods.losses(h, torch.randn(4, 8), torch.tensor([True, False, True, True]), torch.randn(4, 77, 8))
    assert some.n == 3 and some.ret.item() > 0 and some.gen.item() > 0
    total = mods.objective(torch.tensor(0.5), some)
    assert total.item() == pytest.approx(0.5 + 2 * some.ret.item() + 3 * some.gen.item())
    total.backward()
    assert h.grad[1].abs().sum() == 0 and h.grad[0].abs().sum() > 0  # the reply without a sticker gets no gradient


def test_save_load_roundtrip(tmp_path):
    mods = StickerModules(CFG, hidden=16, image_dim=8)
    mods.save(tmp_path / "m")
    back = StickerModules.load(tmp_path / "m")
    h = torch.randn(2, CFG.num_img_tokens, 16)
    with torch.no_grad():
        assert torch.equal(back.prompt_embeds(h), mods.prompt_embeds(h))
        assert torch.equal(back.retrieval_embedding(h), mods.retrieval_embedding(h))
    assert back.cfg == CFG


def test_retrieve_backend_finds_the_sticker_and_skips_shown(library):
    backend = RetrieveBackend(library, aligned_modules())
    i, j = library.ids.index("cat-sad-down"), library.ids.index("frog-happy-down")
    res = backend(hidden_for(library.vectors[[i, j]]), ["sad", "happy"])
    assert [r.id for r in res] == ["cat-sad-down", "frog-happy-down"]
    assert res[0].score == pytest.approx(1.0, abs=1e-5) and len(res[0].candidates) == 3
    assert all(c["emotion"] == "sad" for c in res[0].candidates)
    again = backend(hidden_for(library.vectors[[i]]), ["sad"], shown=[["cat-sad-down"]])
    assert again[0].id != "cat-sad-down" and again[0].emotion == "sad"


def test_generate_and_rag_write_pngs(library, diffusion, tmp_path):
    mods = aligned_modules()
    i = library.ids.index("bear-anger-down")
    h = hidden_for(library.vectors[[i, i]])
    gen = GenerateBackend(mods, diffusion)(h, ["anger", "fear"], media_dir=tmp_path, names=["a", "b"])
    assert [Path(r.path).name for r in gen] == ["a.png", "b.png"] and all(Path(r.path).is_file() for r in gen)
    assert gen[1].emotion == "fear" and gen[0].id is None
    rag = RagBackend(RetrieveBackend(library, mods), diffusion)(h[:1], ["anger"], media_dir=tmp_path, names=["c"])
    assert rag[0].id == "bear-anger-down" and Path(rag[0].path).name == "c.png" and Path(rag[0].path).is_file()


def test_build_backend_needs_its_parts(library, diffusion):
    mods = aligned_modules()
    assert isinstance(build_backend(mods, library), RetrieveBackend)
    with pytest.raises(ConfigError, match="sticker.library"):
        build_backend(mods)
    with pytest.raises(ConfigError, match="64-d but the sticker modules were trained on 8-d"):
        RetrieveBackend(library, StickerModules(CFG, hidden=16, image_dim=8))
    mods.cfg = CFG.replace(backend="rag")
    with pytest.raises(ConfigError, match="sticker.sd_path"):
        build_backend(mods, library)
    assert isinstance(build_backend(mods, library, diffusion), RagBackend)


def test_head_fills_extras_and_does_not_repeat_in_a_dialogue(library, tmp_path):
    from elmd.heads.sticker.head import StickerHead
    from elmd.inference.reply import Reply, Request

    head = StickerHead(RetrieveBackend(library, aligned_modules()), CFG.num_img_tokens)
    i = library.ids.index("dog-surprise-down")
    h = hidden_for(library.vectors[[i, i]])
    replies = [Reply("surprise", "惊讶", "真的吗？", hidden=h[0]), Reply("happy", "高兴", "好呀", hidden=None)]
    requests = [Request("我中奖了", dialogue_id="d1", sample_id="d1#0"), Request("走吧", dialogue_id="d2")]
    head.apply(replies, requests, tmp_path)
    assert replies[0].extras["sticker"]["id"] == "dog-surprise-down" and "sticker" not in replies[1].extras
    assert set(replies[0].extras["sticker"]) == {"path", "backend", "id", "emotion", "score", "candidates"}
    copied = Path(replies[0].extras["sticker"]["path"])
    assert copied.parent == tmp_path and copied.name == "d1_0-0.png"
    assert copied.read_bytes() == Path(replies[0].extras["sticker"]["candidates"][0]["image"]).read_bytes()
    again = [Reply("surprise", "惊讶", "哇", hidden=h[1])]
    head.apply(again, [Request("还有呢", dialogue_id="d1")], tmp_path)
    assert again[0].extras["sticker"]["id"] != "dog-surprise-down" and again[0].extras["sticker"]["emotion"] == "surprise"
    other = [Reply("surprise", "惊讶", "哇", hidden=h[1])]
    head.apply(other, [Request("还有呢", dialogue_id="d3")], tmp_path)
    assert other[0].extras["sticker"]["id"] == "dog-surprise-down"  # another dialogue: shown again


def test_build_head_from_config(library, tmp_path):
    from elmd.config import load_config
    from elmd.heads.sticker.head import StickerHead, build_head

    aligned_modules().save(tmp_path / "mods")
    cfg = load_config("tiny", [f"sticker.modules={tmp_path / 'mods'}", f"sticker.library={library.folder}",
                               "vision.image_size=48", "vision.num_query_tokens=4", "vision.path="])
    head = build_head(None, cfg)
    assert isinstance(head, StickerHead) and isinstance(head.backend, RetrieveBackend) and head.r == CFG.num_img_tokens
    bad = load_config("tiny", [f"sticker.modules={tmp_path / 'mods'}", f"sticker.library={library.folder}",
                               "vision.image_size=64", "vision.num_query_tokens=4", "vision.path="])
    with pytest.raises(Exception, match="built by image encoder"):
        build_head(None, bad)


def test_img_hidden_from_reply_reads_the_marked_run():
    from elmd.heads.sticker.head import img_hidden_from_reply
    from elmd.inference.reply import Reply

    h = torch.arange(12.0).reshape(6, 2)
    marked = Reply("happy", "高兴", "好", hidden=h, extras={"img_start": 2})
    assert torch.equal(img_hidden_from_reply(marked, 3), h[2:5])
    assert img_hidden_from_reply(Reply("happy", "高兴", "好", hidden=h, extras={"img_start": 4}), 3) is None  # run cut off
    assert img_hidden_from_reply(Reply("happy", "高兴", "好", hidden=h), 3) is None  # no mark, not exactly r rows
    assert torch.equal(img_hidden_from_reply(Reply("happy", "高兴", "好", hidden=h[:3]), 3), h[:3])
    assert img_hidden_from_reply(Reply("happy", "高兴", "好"), 3) is None


def test_library_negatives_learn_from_a_single_sticker_reply():
    torch.manual_seed(0)
    cfg = CFG.replace(ret_negatives="library")
    mods = StickerModules(cfg, hidden=16, image_dim=8, with_mapper=False)
    lib = torch.randn(6, 8)
    h = torch.randn(1, cfg.num_img_tokens, 16)
    batch_only = StickerModules(CFG, hidden=16, image_dim=8, with_mapper=False)
    assert batch_only.losses(h, lib[:1], torch.tensor([True])).ret.item() == pytest.approx(0.0, abs=1e-6)  # log 1
    opt = torch.optim.Adam(mods.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = mods.losses(h, lib[:1], torch.tensor([True]), library_vectors=lib, gold=torch.tensor([4])).ret
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert first > 1.0 and loss.item() < 0.1 * first
    with torch.no_grad():
        assert (mods.retrieval_embedding(h) @ mods.library_keys(lib).T).argmax().item() == 4
    with pytest.raises(ValueError, match="library_vectors and gold"):
        mods.losses(h, lib[:1], torch.tensor([True]))
