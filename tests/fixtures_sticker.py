"""Session fixture of the sticker stage tests: the generation fixture's data with stickers attached, a
drawn 56-sticker library embedded by the run's (tiny, seeded) visual encoder, a tiny random SD pipeline,
and one stage `sticker` output trained from the fixture's eerg output (prefix + Linear frozen)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

R, K = 4, 2  # [IMG1..4]: 2 for retrieval, 2 for the mapper


def sticker_overrides(gen_run, root) -> list[str]:
    d = gen_run.folder
    return gen_run.overrides + [
        f"data.train={d / 'train_stickers.jsonl'}", f"data.valid={d / 'valid_stickers.jsonl'}",
        f"data.test={d / 'test_stickers.jsonl'}", "prompt.use_demonstration=true", f"sticker.library={root / 'lib'}",
        f"sticker.sd_path={root / 'sd'}", f"sticker.init_from={gen_run.eerg}", f"sticker.num_img_tokens={R}",
        f"sticker.num_ret_tokens={K}", "sticker.ret_dim=16", "sticker.mapper_hidden=16", "sticker.mapper_encoder_layers=1",
        "sticker.mapper_decoder_layers=1", "sticker.mapper_heads=2", "sticker.prompt_dim=8", "sticker.num_inference_steps=2",
        "sticker.image_size=32", "sticker.ret_negatives=library", "sticker.epochs=1", "sticker.lr=0.01", "train.batch_size=4"]


@pytest.fixture(scope="session")
def sticker_run(gen_run, tmp_path_factory):
    """Namespace: root, library (folder), stickers (jsonl), overrides, out (the trained stage folder)."""
    from elmd.config import load_config
    from elmd.heads.sticker.data import attach_stickers
    from elmd.heads.sticker.diffusion import write_tiny_sd
    from elmd.heads.sticker.draw import draw_library
    from elmd.heads.sticker.encoders import build_image_encoder
    from elmd.heads.sticker.index import build_library
    from elmd.heads.sticker.library import read_stickers
    from elmd.training.run import train

    root = tmp_path_factory.mktemp("sticker_run")
    draw_library(root / "set", size=48, poses=1)  # 7 emotions x 8 animals
    stickers = read_stickers(root / "set" / "stickers.jsonl")
    for name in ("train", "valid", "test"):
        rows = [json.loads(line) for line in (gen_run.folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        rows, _ = attach_stickers(rows, stickers, share=0.75, seed=1)
        (gen_run.folder / f"{name}_stickers.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    overrides = sticker_overrides(gen_run, root)
    cfg = load_config("tiny", overrides)
    build_library(root / "set", root / "set" / "stickers.jsonl", root / "lib", build_image_encoder(cfg.sticker, cfg.vision))
    write_tiny_sd(root / "sd")
    out = train(cfg, "sticker", root / "runs" / "sticker", show_progress=False)["out"]
    return SimpleNamespace(root=root, library=root / "lib", stickers=root / "set" / "stickers.jsonl",
                           overrides=overrides, out=out, gen_run=gen_run)
