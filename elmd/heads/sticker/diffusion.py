"""Stable Diffusion backends of the sticker head: ``generate`` (text-to-image) and ``rag`` (img2img).

PEGS (``model/pegs/model/pegs_model.py``, ``generate``) feeds the feature mapper's output as
``prompt_embeds`` to diffusers' ``StableDiffusionPipeline`` (PEGS-G) or, with the retrieved sticker
as the init image, to ``StableDiffusionImg2ImgPipeline`` (PEGS-RAG); 50 steps, guidance 7.5,
strength 0.8. Here both pipelines share one set of components loaded from a local folder in
diffusers layout with ``local_files_only=True`` (nothing downloads), and the negative prompt is
passed as ``negative_prompt_embeds`` (the SD text encoder's embedding of ``sticker.negative_prompt``),
computed once. An incomplete folder is refused by :func:`check_sd_folder` in one line naming what
is missing. :func:`write_tiny_sd` writes a seeded, random, CPU-seconds pipeline (components as in
diffusers' own ``get_dummy_components`` tests, with a byte-level CLIP tokenizer written in code)
for tests and the tiny preset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from elmd.errors import ConfigError, ElmdError

WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors", "pytorch_model.bin",
           "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors")
PARTS = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json", "scheduler": "scheduler_config.json"}


def check_sd_folder(path: str | Path) -> Path:
    """``path`` if it holds a complete diffusers SD folder, else one :class:`ConfigError` naming what is missing."""
    path = Path(path)
    if not str(path) or not path.is_dir():
        raise ConfigError(f"{path}: Stable Diffusion folder not found — set sticker.sd_path to a local diffusers folder "
                          "(`elmd sticker make-tiny-sd --out DIR` writes a tiny random one)")
    missing = [] if (path / "model_index.json").is_file() else ["model_index.json"]
    for part, cfg in PARTS.items():
        if not (path / part / cfg).is_file():
            missing.append(f"{part}/{cfg}")
        elif part != "scheduler" and not any(any((path / part).glob(w.replace(".", "*.", 1))) for w in WEIGHTS):
            missing.append(f"{part}/ weights (*.safetensors or *.bin)")
    tok = path / "tokenizer"
    if not ((tok / "tokenizer.json").is_file() or ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file())):
        missing.append("tokenizer/tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise ConfigError(f"{path}: incomplete Stable Diffusion folder, missing {', '.join(missing)} — copy the whole "
                          "diffusers snapshot (e.g. stable-diffusion-v1-5) there")
    return path


def _dtype(device: str) -> torch.dtype:
    return torch.float16 if str(device).startswith("cuda") else torch.float32


class StickerDiffusion:
    """Text-to-image and img2img from prompt embeddings, sharing one set of SD components."""

    def __init__(self, sd_path: str | Path, cfg, device: str = "cpu"):
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

        path = check_sd_folder(sd_path)
        try:
            t2i = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None,
                                                          requires_safety_checker=False, dtype=_dtype(device))
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(f"{path}: could not load the Stable Diffusion pipeline ({str(e).splitlines()[0][:160]}) — "
                              "check that the folder is a complete diffusers snapshot") from None
        t2i.set_progress_bar_config(disable=True)
        self.t2i = t2i.to(device)
        self.i2i = StableDiffusionImg2ImgPipeline(**self.t2i.components, requires_safety_checker=False)
        self.i2i.set_progress_bar_config(disable=True)
        self.cfg, self.device, self.path = cfg, device, path
        self.prompt_len = int(self.t2i.tokenizer.model_max_length)
        self.prompt_dim = int(self.t2i.text_encoder.config.hidden_size)
        self._negative: torch.Tensor | None = None

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """SD text-encoder embeddings ``[B, 77, D]`` of ``texts`` (the mapper's MSE targets; PEGS L_gen); a text
        longer than the tokenizer's 77 tokens is cut there, as SD does, without a warning per batch."""
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        levels = dlog.get_verbosity(), tlog.get_verbosity()
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        try:
            embeds, _ = self.t2i.encode_prompt(list(texts), self.device, 1, False)
        finally:
            dlog.set_verbosity(levels[0])
            tlog.set_verbosity(levels[1])
        return embeds

    def negative_embeds(self, n: int) -> torch.Tensor:
        if self._negative is None:
            self._negative = self.encode_text([self.cfg.negative_prompt])
        return self._negative.expand(n, -1, -1)

    def _check(self, prompt_embeds: torch.Tensor) -> torch.Tensor:
        want = (self.prompt_len, self.prompt_dim)
        if prompt_embeds.dim() != 3 or tuple(prompt_embeds.shape[1:]) != want:
            raise ConfigError(f"{self.path}: prompt embeddings of shape {tuple(prompt_embeds.shape)} do not fit this SD "
                              f"([B, {want[0]}, {want[1]}]) — set sticker.num_clip_tokens={want[0]} and sticker.prompt_dim={want[1]}")
        return prompt_embeds.to(self.device, self.t2i.unet.dtype)

    def _generators(self, seeds: Sequence[int]):
        return [torch.Generator("cpu").manual_seed(int(self.cfg.seed) + int(s)) for s in seeds]

    @torch.no_grad()
    def generate(self, prompt_embeds: torch.Tensor, seeds: Sequence[int]) -> list:
        """PEGS-G: one PIL image per row of ``prompt_embeds`` [B, 77, D] (the feature mapper's output)."""
        pe = self._check(prompt_embeds)
        size = self.cfg.image_size
        out = self.t2i(prompt_embeds=pe, negative_prompt_embeds=self.negative_embeds(len(pe)).to(pe.dtype),
                       height=size, width=size, num_inference_steps=self.cfg.num_inference_steps,
                       guidance_scale=self.cfg.guidance_scale, generator=self._generators(seeds), output_type="pil")
        return list(out.images)

    @torch.no_grad()
    def rag(self, prompt_embeds: torch.Tensor, init_images: Sequence, seeds: Sequence[int]) -> list:
        """PEGS-RAG: img2img from each retrieved sticker (PIL or uint8 array) towards ``prompt_embeds``."""
        from PIL import Image

        pe = self._check(prompt_embeds)
        if len(init_images) != len(pe):
            raise ValueError(f"{len(pe)} prompt embeddings but {len(init_images)} init images")
        size = self.cfg.image_size
        ims = [(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))).convert("RGB").resize((size, size))
               for im in init_images]
        out = self.i2i(prompt_embeds=pe, negative_prompt_embeds=self.negative_embeds(len(pe)).to(pe.dtype), image=ims,
                       strength=self.cfg.strength, num_inference_steps=self.cfg.num_inference_steps,
                       guidance_scale=self.cfg.guidance_scale, generator=self._generators(seeds), output_type="pil")
        return list(out.images)


def sticker_caption(description: str, emotion_word: str = "") -> str:
    """The text whose SD embedding is the mapper's target: the emotion word, then the description."""
    return f"{emotion_word}：{description}" if emotion_word else description


@torch.no_grad()
def caption_targets(diffusion: StickerDiffusion, stickers, labels=None, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """``{sticker id: [77, D] float32 CPU}`` SD text embeddings of every sticker's caption (computed once:
    the SD text encoder is frozen, so stage `sticker` reads the MSE targets from here)."""
    from elmd.data.labels import LabelSet

    labels = labels or LabelSet()
    stickers = list(stickers)
    out = {}
    for i in range(0, len(stickers), batch_size):
        part = stickers[i:i + batch_size]
        emb = diffusion.encode_text([sticker_caption(s.description, labels.word(s.emotion)) for s in part]).float().cpu()
        out.update({s.id: e for s, e in zip(part, emb)})
    return out


def _byte_vocab() -> dict[str, int]:
    """A BPE vocabulary with no merges: the specials, the 256 byte symbols and each with ``</w>`` (any text tokenizes)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = [], 0
    for b in range(256):  # GPT-2 / CLIP byte-to-unicode table
        symbols.append(chr(b) if b in keep else chr(256 + extra))
        extra += b not in keep
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for s in symbols:
            vocab[s + suffix] = len(vocab)
    return vocab


def tiny_sd_components(seed: int = 0, cross_attention_dim: int = 8) -> dict:
    """Random SD components sized like diffusers' ``get_dummy_components`` (UNet 4/8 channels, 2-layer CLIP)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4,
                                    out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    cross_attention_dim=cross_attention_dim, norm_num_groups=2)
        vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3,
                            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                            latent_channels=4, norm_num_groups=2)
        vocab = _byte_vocab()
        text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=cross_attention_dim,
                                                    intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                                                    vocab_size=len(vocab), max_position_embeddings=77))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler,
            "safety_checker": None, "feature_extractor": None, "image_encoder": None}


def write_tiny_sd(out: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Save the tiny random pipeline as a diffusers folder at ``out`` (atomically)."""
    from diffusers import StableDiffusionPipeline

    from elmd.io import atomic_dir

    out = Path(out)
    if out.exists() and not overwrite:
        raise ElmdError(f"{out} already exists — pass --overwrite to replace it")
    pipe = StableDiffusionPipeline(**tiny_sd_components(seed), requires_safety_checker=False)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / "elmd_tiny.json").write_text(json.dumps({"seed": seed, "note": "random weights, for tests only"}) + "\n")
    return out
