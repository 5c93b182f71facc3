"""Configuration of the sticker head (PEGS, Zhang et al., ACL 2024; GILL, Koh et al., NeurIPS 2023).

Defaults follow PEGS's code (``model/pegs/model/pegs_model.py`` and ``configs/``): 32 ``[IMG]``
tokens of which the first 8 feed the retrieval projection and the other 24 the feature mapper,
a 256-d retrieval space with a fixed InfoNCE temperature of 0.07, a 512-wide 4+4-layer mapper
producing 77 x 768 Stable Diffusion 1.5 prompt embeddings, loss weights 1 / 1 / 1, 50 denoising
steps, guidance 7.5 and img2img strength 0.8. :meth:`StickerConfig.tiny` is the CPU preset.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from elmd.errors import ConfigError

BACKENDS = ("retrieve", "generate", "rag")
EMOTION_MODES = ("prefer", "filter", "ignore")
IMAGE_ENCODERS = ("visual", "open_clip")


@dataclass
class StickerConfig:
    backend: str = "retrieve"
    """How a reply gets its sticker: retrieve (top-k from the library), generate (Stable Diffusion
    text-to-image from the feature mapper's prompt embeddings) or rag (img2img on the retrieved sticker)."""
    library: str = ""
    """Folder written by `elmd sticker build-library` (index.faiss, table.jsonl, meta.json)."""
    modules: str = ""
    """Folder of the trained sticker modules (retrieval projection + feature mapper) that stage `sticker`
    saves; empty = `<run folder>/sticker`."""
    num_img_tokens: int = 32
    """r: the ``[IMG1..r]`` tokens the LLM emits after its text (PEGS: 32)."""
    num_ret_tokens: int = 8
    """k: how many of the first ``[IMG]`` tokens feed the retrieval projection; the other r - k feed
    the feature mapper (PEGS: 8 + 24)."""
    ret_dim: int = 256
    """Size of the shared retrieval space of the projections (PEGS / GILL: 256)."""
    ret_pool: str = "first"
    """Which of the k hidden states the text-side projection reads: first (GILL / PEGS keep the first
    token's projection) or mean (average of the k)."""
    ret_negatives: str = "batch"
    """Negatives of the retrieval loss: batch (PEGS / GILL: symmetric InfoNCE over the sticker replies of the
    batch) or library (text -> image cross-entropy over every library sticker, the gold one as target;
    useful when batches hold few stickers)."""
    run_targets: str = "first"
    """Which [IMG] tokens are language-modelling targets in stage `sticker`: first (only [IMG1], i.e. when to
    start a run, and the eos after it: the rest is forced at decoding, and training them only grows their
    rows until the run's hidden states no longer depend on the dialogue) or all (GILL / PEGS)."""
    key_emotion: bool = True
    """Add a learned vector of the library sticker's emotion label to its retrieval key (an addition to PEGS,
    whose keys are image-only: false). The library's labels are known; with a weak image encoder the keys
    then still separate emotions, and the [IMG] states learn which emotion to ask for."""
    temperature: float = 0.07
    """InfoNCE temperature tau; the logit scale is 1 / tau, fixed (PEGS: train_logit_scale=False)."""
    mapper_hidden: int = 512
    """Width of the feature mapper's Transformer (PEGS / GILL: 512)."""
    mapper_encoder_layers: int = 4
    """Encoder layers of the mapper's ``nn.Transformer``."""
    mapper_decoder_layers: int = 4
    """Decoder layers of the mapper's ``nn.Transformer``."""
    mapper_heads: int = 4
    """Attention heads of the mapper."""
    num_clip_tokens: int = 77
    """Learned queries of the mapper = length of the SD prompt embedding (CLIP: 77)."""
    prompt_dim: int = 768
    """Width of the SD text encoder's embedding (SD 1.5: 768; SD 2.x: 1024)."""
    lambda_lm: float = 1.0
    """Weight of the language-modelling loss in stage `sticker`."""
    lambda_ret: float = 1.0
    """Weight of the InfoNCE retrieval loss."""
    lambda_gen: float = 1.0
    """Weight of the feature mapper's MSE loss."""
    top_k: int = 5
    """Stickers returned per reply by the retrieve backend (the first one is shown)."""
    emotion_mode: str = "prefer"
    """How the reply's emotion steers retrieval: prefer (stickers of that emotion rank first, others fill
    up), filter (only that emotion) or ignore (score only)."""
    exclude_shown: bool = True
    """Never return a sticker already shown earlier in the conversation."""
    image_encoder: str = "visual"
    """Frozen image encoder of the library: visual (the run's ViT + Q-Former, mean over queries) or
    open_clip (a local open_clip checkpoint)."""
    encoder_path: str = ""
    """open_clip: the local checkpoint file; visual: empty = the run's vision.path."""
    clip_arch: str = "ViT-B-32"
    """open_clip architecture name of `encoder_path`."""
    sd_path: str = ""
    """Local Stable Diffusion folder in diffusers layout (model_index.json, unet/, vae/, text_encoder/,
    tokenizer/, scheduler/); loaded with local_files_only=True."""
    num_inference_steps: int = 50
    """Denoising steps (PEGS: 50)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale (PEGS: 7.5)."""
    strength: float = 0.8
    """rag: how far img2img moves away from the retrieved sticker, 0..1 (PEGS: 0.8)."""
    negative_prompt: str = ""
    """Text whose SD embedding is the negative prompt embedding ('' = the empty prompt)."""
    image_size: int = 512
    """Side of generated stickers in pixels (SD 1.5: 512; multiple of 8)."""
    seed: int = 0
    """Seed of the diffusion noise (plus a per-reply offset)."""
    init_from: str = ""
    """Stage `sticker`: the stage `eerg` output it starts from (prefix + video Linear); empty = <train.out>/eerg."""
    train_base: bool = False
    """Stage `sticker`: train the prefix and the video Linear jointly with the sticker parts (true) or keep
    them as stage eerg left them (false; only the [IMG] rows, the projection and the mapper train)."""
    lr: float = 0.0
    """Stage `sticker`'s learning rate; 0 = train.eerg_lr."""
    epochs: int = 0
    """Stage `sticker`'s epochs; 0 = train.eerg_epochs."""

    def __post_init__(self):
        self.validate()

    def validate(self, prefix: str = "sticker") -> "StickerConfig":
        """Raise :class:`ConfigError` naming the first bad key, its value and the allowed range."""
        choices = {"backend": BACKENDS, "emotion_mode": EMOTION_MODES, "image_encoder": IMAGE_ENCODERS,
                   "ret_pool": ("first", "mean"), "ret_negatives": ("batch", "library"),
                   "run_targets": ("first", "all")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                _bad(prefix, key, getattr(self, key), f"one of {', '.join(allowed)}")
        positive = ("num_img_tokens", "num_ret_tokens", "ret_dim", "mapper_hidden", "mapper_encoder_layers",
                    "mapper_decoder_layers", "mapper_heads", "num_clip_tokens", "prompt_dim", "top_k",
                    "num_inference_steps", "temperature")
        for key in positive:
            if getattr(self, key) <= 0:
                _bad(prefix, key, getattr(self, key), "> 0")
        if self.num_ret_tokens >= self.num_img_tokens:
            _bad(prefix, "num_ret_tokens", self.num_ret_tokens, f"< num_img_tokens ({self.num_img_tokens}), so the mapper gets tokens")
        if self.mapper_hidden % self.mapper_heads:
            _bad(prefix, "mapper_hidden", self.mapper_hidden, f"a multiple of mapper_heads ({self.mapper_heads})")
        for key in ("lambda_lm", "lambda_ret", "lambda_gen", "guidance_scale", "lr", "epochs"):
            if getattr(self, key) < 0:
                _bad(prefix, key, getattr(self, key), ">= 0")
        if not 0.0 < self.strength <= 1.0:
            _bad(prefix, "strength", self.strength, "in (0, 1]")
        if self.image_size < 8 or self.image_size % 8:
            _bad(prefix, "image_size", self.image_size, "a multiple of 8, >= 8")
        return self

    @property
    def num_gen_tokens(self) -> int:
        """r - k: the ``[IMG]`` tokens whose hidden states go through the feature mapper."""
        return self.num_img_tokens - self.num_ret_tokens

    @property
    def logit_scale(self) -> float:
        """1 / temperature (PEGS / GILL: 1 / 0.07 = 14.29)."""
        return 1.0 / self.temperature

    @classmethod
    def tiny(cls, **overrides) -> "StickerConfig":
        """CPU preset: 8 ``[IMG]`` tokens (4 + 4), 64-d retrieval, a 32-wide 1+1-layer mapper over the 77
        queries producing 8-d embeddings (the tiny SD pipeline's text width), 2 denoising steps, 32-px images."""
        tiny = dict(num_img_tokens=8, num_ret_tokens=4, ret_dim=64, mapper_hidden=32, mapper_encoder_layers=1,
                    mapper_decoder_layers=1, mapper_heads=2, prompt_dim=8, num_inference_steps=2, image_size=32)
        return cls(**{**tiny, **overrides})

    def replace(self, **changes) -> "StickerConfig":
        return replace(self, **changes)


def _bad(prefix: str, key: str, value, allowed: str):
    raise ConfigError(f"{prefix}.{key}={value!r} is out of range — must be {allowed}")


FIELDS = tuple(f.name for f in fields(StickerConfig))
