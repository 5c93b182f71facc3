"""Session fixtures for the video side: tiny test videos and the tiny visual encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest


def frame_value(k: int) -> int:
    """Red level of frame k in the test videos (frame index readable from the pixels)."""
    return 10 + 20 * k


def write_video(path, num_frames: int, size: int = 64, blue: int = 128, fps: int = 10) -> None:
    """Solid-colour frames: red = frame_value(k), green = 255 - red, blue constant."""
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(path), (size, size), fps=fps, macro_block_size=1, quality=10,
                                    pix_fmt_out="yuv444p", output_params=["-g", "1"])
    w.send(None)
    for k in range(num_frames):
        f = np.empty((size, size, 3), np.uint8)
        f[..., 0], f[..., 1], f[..., 2] = frame_value(k), 255 - frame_value(k), blue
        w.send(f.tobytes())
    w.close()


def decode_index(frames: np.ndarray) -> list[int]:
    """Frame indices read back from the red channel at the centre of each frame."""
    h, w = frames.shape[1:3]
    return [round((int(f[h // 2, w // 2, 0]) - 10) / 20) for f in frames]


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    """v12.mp4 (12 frames), v3.mp4 (3 frames), other.mp4 (12 frames, other colour),
    corrupt.mp4 (random bytes), empty.mp4 (0 bytes), and dialogues.jsonl using them."""
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "v12.mp4", 12)
    write_video(d / "v3.mp4", 3)
    write_video(d / "other.mp4", 12, blue=20)
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    turns = [{"speaker": "AB"[i % 2], "text": f"第{i}句", "emotion": "neutral", "video": v}
             for i, v in enumerate(["v12.mp4", "v3.mp4", "other.mp4", "v12.mp4"])]
    turns.append({"speaker": "B", "text": "没有视频", "emotion": "happy"})
    (d / "dialogues.jsonl").write_text(json.dumps({"dialogue_id": "d1", "series": "s", "background": "",
                                                  "turns": turns}, ensure_ascii=False) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_visual_encoder():
    from elmd.models.visual_encoder import VisualEncoder

    return VisualEncoder.tiny(seed=0)


@pytest.fixture(scope="session")
def blip2_folder(tmp_path_factory, tiny_visual_encoder):
    """A tiny transformers Blip2Model (vision + Q-Former + queries + a 1-layer OPT) saved to disk."""
    import torch
    from transformers import Blip2Config, Blip2Model, OPTConfig

    enc = tiny_visual_encoder
    text = OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                     max_position_embeddings=32, word_embed_proj_dim=16)
    cfg = Blip2Config(vision_config=enc.vision_model.config.to_dict(), qformer_config=enc.qformer.config.to_dict(),
                      text_config=text.to_dict(), num_query_tokens=32)
    torch.manual_seed(3)
    model = Blip2Model(cfg).eval()
    with torch.no_grad():
        model.query_tokens.normal_()
    folder = tmp_path_factory.mktemp("blip2")
    model.save_pretrained(folder)
    return folder, model
