"""The bundled sticker set, stickers.jsonl, the embedded library and `elmd sticker draw-library|build-library`."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.data.labels import M3ED_LABELS
from elmd.errors import DataError, ElmdError
from elmd.heads.sticker.draw import CHARACTERS, draw_library
from elmd.heads.sticker.encoders import VisualImageEncoder
from elmd.heads.sticker.index import StickerLibrary, build_library
from elmd.heads.sticker.library import open_image, read_stickers
from elmd.models.visual_encoder import VisualEncoder


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stickers") / "set"
    counts = draw_library(out, size=64, poses=2)
    assert counts == {"drawn": 112, "cached": 0, "stickers": 112}
    return out


@pytest.fixture(scope="module")
def encoder():
    return VisualImageEncoder(VisualEncoder.tiny(seed=0, image_size=64, num_query_tokens=8))


@pytest.fixture(scope="module")
def library(drawn, encoder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lib") / "lib"
    rep = build_library(drawn, drawn / "stickers.jsonl", out, encoder)
    assert (rep.size, rep.dim) == (112, 64)
    return out


def test_bundled_set_rows(drawn):
    rows = [json.loads(line) for line in (drawn / "stickers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(CHARACTERS) * 7 * 2 == 112
    assert Counter(r["emotion"] for r in rows) == {e: 16 for e in M3ED_LABELS}
    assert len({r["id"] for r in rows}) == 112
    assert all(re.search(r"[\u4e00-\u9fff]", r["description"]) and r["recommendation"] for r in rows)
    assert all((drawn / r["image"]).is_file() for r in rows)
    assert open_image(drawn / rows[0]["image"]).shape == (64, 64, 3)


def test_bundled_set_is_deterministic_and_cached(drawn, tmp_path):
    again = tmp_path / "again"
    draw_library(again, size=64, poses=2)
    for name in ("images/cat-happy-down.png", "images/frog-anger-up.png", "stickers.jsonl"):
        assert hashlib.sha256((again / name).read_bytes()).digest() == hashlib.sha256((drawn / name).read_bytes()).digest()
    assert draw_library(again, size=64, poses=2)["drawn"] == 0
    (again / "images" / "cat-sad-up.png").write_bytes(b"broken")
    assert draw_library(again, size=64, poses=2) == {"drawn": 1, "cached": 111, "stickers": 112}


def test_emotion_changes_the_face_not_the_character(drawn):
    a = open_image(drawn / "images/cat-happy-down.png").astype(int)
    b = open_image(drawn / "images/cat-sad-down.png").astype(int)
    c = open_image(drawn / "images/dog-happy-down.png").astype(int)
    assert np.abs(a - b).mean() > 1.0 and np.abs(a - c).mean() > 1.0


def test_library_vectors_and_search(library, encoder):
    lib = StickerLibrary.load(library, encoder)
    assert len(lib) == 112 and lib.vectors.shape == (112, 64)
    assert np.allclose(np.linalg.norm(lib.vectors, axis=1), 1.0, atol=1e-5)
    i = lib.ids.index("panda-fear-up")
    [hits] = lib.search(lib.vectors[i], ["fear"], k=3)
    assert hits[0].id == "panda-fear-up" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.emotion == "fear" for h in hits) and Path(hits[0].image).is_file()
    [hits] = lib.search(lib.vectors[i], ["fear"], k=3, shown=[["panda-fear-up"]])
    assert "panda-fear-up" not in [h.id for h in hits] and len(hits) == 3
    [hits] = lib.search(lib.vectors[i], ["happy"], k=2, mode="filter")
    assert [h.emotion for h in hits] == ["happy", "happy"]
    with pytest.raises(ElmdError, match="same space"):
        lib.search(np.ones((1, 5)), ["fear"])


def test_library_refuses_another_encoder_and_overwrite(library, drawn):
    other = VisualImageEncoder(VisualEncoder.tiny(seed=1, image_size=64, num_query_tokens=8))
    with pytest.raises(ElmdError, match="built by image encoder 'visual:tiny:seed=0'"):
        StickerLibrary.load(library, other)
    with pytest.raises(ElmdError, match="--overwrite"):
        build_library(drawn, drawn / "stickers.jsonl", library, other)
    with pytest.raises(ElmdError, match="not a sticker library"):
        StickerLibrary.load(drawn)


def _rows(tmp_path, rows, images=None) -> Path:
    meta = tmp_path / "stickers.jsonl"
    meta.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return meta


def test_bad_rows_name_the_file_line_and_fix(tmp_path, drawn, encoder):
    good = {"id": "a", "image": str(drawn / "images/cat-happy-down.png"), "emotion": "happy"}
    meta = _rows(tmp_path, [good, {**good, "id": "b", "emotion": "joy"}])
    with pytest.raises(DataError, match=r"stickers.jsonl:2: unknown emotion 'joy' of sticker 'b' — use one of happy"):
        read_stickers(meta)
    meta = _rows(tmp_path, [good, {**good, "id": "a"}])
    with pytest.raises(DataError, match=r":2: sticker id 'a' repeats line 1"):
        read_stickers(meta)
    meta = _rows(tmp_path, [good, {"id": "c", "image": "missing.png", "emotion": "sad"}])
    with pytest.raises(DataError, match=r"stickers.jsonl:2: image of sticker 'c' not found: .*missing.png — fix the path"):
        build_library(tmp_path, meta, tmp_path / "out", encoder)
    (tmp_path / "fake.png").write_text("not a picture")
    meta = _rows(tmp_path, [good, {"id": "d", "image": "fake.png", "emotion": "sad"}])
    with pytest.raises(DataError, match=r"fake.png: not a readable image .* — replace it"):
        build_library(tmp_path, meta, tmp_path / "out", encoder)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_draw_and_build_library(tmp_path):
    r = run("sticker", "draw-library", "--out", tmp_path / "set", "--size", 48, "--poses", 1)
    assert r.exit_code == 0 and "drawn=56" in r.output
    args = ["sticker", "build-library", "--images", tmp_path / "set", "--meta", tmp_path / "set/stickers.jsonl",
            "--out", tmp_path / "lib", "--set", "vision.image_size=48", "--set", "vision.num_query_tokens=4"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "56 stickers, 64-d" in r.output
    meta = json.loads((tmp_path / "lib/meta.json").read_text())
    assert meta["encoder"]["label"] == "visual:tiny:seed=0" and meta["per_emotion"]["sad"] == 8
    r = run(*args)
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("error: ") and "--overwrite" in r.output
    assert run(*args, "--overwrite").exit_code == 0
    r = run("sticker", "search", "--library", tmp_path / "lib", "--image", tmp_path / "set/images/cat-sad-down.png",
            "--emotion", "sad", "-k", 2, "--set", "vision.image_size=48", "--set", "vision.num_query_tokens=4")
    assert r.exit_code == 0, r.output
    first, second = r.output.strip().splitlines()
    assert first.split()[:3] == ["1.0000", "sad", "cat-sad-down"] and second.split()[1] == "sad"
    r = run("sticker", "search", "--library", tmp_path / "lib", "--image", tmp_path / "set/images/cat-sad-down.png",
            "--set", "vision.image_size=64", "--set", "vision.num_query_tokens=4")
    assert r.exit_code == 2 and "built by image encoder" in r.output
    r = run(*args[:-4], "--overwrite", "--encoder", "open_clip")
    assert r.exit_code == 2 and "sticker.encoder_path" in r.output.splitlines()[-1]


def test_open_clip_encoder_is_lazy_and_wrapped(monkeypatch, tmp_path, drawn):
    import sys
    import types

    import torch

    from elmd.errors import ConfigError
    from elmd.heads.sticker.encoders import OpenClipImageEncoder

    monkeypatch.setitem(sys.modules, "open_clip", None)  # not installed
    with pytest.raises(ConfigError, match="pip install open_clip_torch"):
        OpenClipImageEncoder("ViT-B-32", tmp_path / "x.pt")

    class Tiny(torch.nn.Module):  # stands in for an open_clip model: mean colour -> 3-d
        visual = types.SimpleNamespace(image_size=(16, 16))

        def encode_image(self, x):
            return x.mean(dim=(2, 3))

    def create(arch, pretrained, device):
        assert pretrained == str(ckpt)
        return Tiny(), None, lambda im: torch.from_numpy(np.asarray(im.resize((16, 16)), np.float32).transpose(2, 0, 1) / 255)

    monkeypatch.setitem(sys.modules, "open_clip", types.SimpleNamespace(create_model_and_transforms=create))
    ckpt = tmp_path / "clip.pt"
    with pytest.raises(ConfigError, match="checkpoint not found"):
        OpenClipImageEncoder("ViT-T", ckpt)
    ckpt.write_bytes(b"weights")
    enc = OpenClipImageEncoder("ViT-T", ckpt)
    assert (enc.dim, enc.image_size, enc.label) == (3, 16, f"open_clip:ViT-T:{ckpt}")
    v = enc.encode([np.full((20, 20, 3), 255, np.uint8), open_image(drawn / "images/frog-sad-down.png")])
    assert v.shape == (2, 3) and np.allclose(v[0], 1 / np.sqrt(3)) and np.allclose(np.linalg.norm(v, axis=1), 1)
    assert enc.fingerprint.startswith("open_clip-") and enc.fingerprint != OpenClipImageEncoder("ViT-B", ckpt).fingerprint


def test_image_modes_are_read_as_rgb(tmp_path, encoder):
    from PIL import Image

    Image.new("L", (30, 20), 128).save(tmp_path / "gray.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(tmp_path / "clear.png")  # fully transparent -> white
    Image.new("P", (20, 20), 3).save(tmp_path / "pal.gif")
    Image.new("CMYK", (20, 20), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    assert open_image(tmp_path / "clear.png")[0, 0].tolist() == [255, 255, 255]
    assert open_image(tmp_path / "gray.png", 16).shape == (16, 16, 3)
    rows = [{"id": p.stem, "image": p.name, "emotion": "neutral"} for p in sorted(tmp_path.glob("*.*"))]
    meta = _rows(tmp_path, rows)
    rep = build_library(tmp_path, meta, tmp_path / "lib", encoder)
    assert rep.size == 4 and np.isfinite(StickerLibrary.load(tmp_path / "lib").vectors).all()
