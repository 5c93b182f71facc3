"""Model configuration: LLM backbone, visual encoder and prompt (paper Sec. 3.4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LLMConfig:
    preset: str = "tiny"
    """'tiny' (random init, CPU seconds) or 'chatglm2-6b' (converted weights from `path`)."""
    path: str = ""
    """Local folder with converted ChatGLM2-6B weights (`elmd convert chatglm2`); for preset tiny, a
    pre-trained tiny LM (`elmd lm pretrain --out DIR`), empty = the seeded random tiny LM."""
    tokenizer: str = ""
    """Local ChatGLM2 `tokenizer.model`; empty = `path`/tokenizer.model (chatglm2-6b) or, for tiny,
    a SentencePiece model trained in-process on data.train's texts, cached beside it."""
    dtype: str = "float32"
    """dtype of the frozen LLM: float32 (CPU), bfloat16 or float16 (GPU)."""
    tiny_vocab_size: int = 0
    """Pieces of the in-process tiny tokenizer; 0 = sized to the data: at least 2000 and enough for
    every distinct character of the training text + SentencePiece's 256 byte pieces + 500."""

    def validate(self, prefix: str = "llm") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_choice, check_range
        from elmd.errors import ConfigError

        if self.preset not in ("tiny", "chatglm2-6b"):  # = elmd.models.presets.PRESETS
            raise ConfigError(f"unknown {prefix}.preset={self.preset!r} — must be one of tiny, chatglm2-6b")
        check_choice(prefix, self, "dtype", ("float32", "bfloat16", "float16"))
        check_range(prefix, self, "tiny_vocab_size", 0)


@dataclass
class VisionConfig:
    path: str = ""
    """Local BLIP-2 or VisualGLM-6B checkpoint with the ViT + Q-Former; empty = tiny random."""
    num_frames: int = 8
    """Frames m sampled per video, one from the middle of each of m equal segments."""
    image_size: int = 224
    """Frame side after resizing (CLIP normalisation)."""
    num_query_tokens: int = 32
    """Q-Former learned queries (BLIP-2: 32)."""
    use_video: bool = True
    """Feed video tokens (False = the 'w/o V' ablation)."""
    format: str = "auto"
    """Checkpoint layout of `path`: auto (config.json with model_type blip-2 = blip2, else visualglm),
    blip2 (transformers Blip2* folder) or visualglm (VisualGLM-6B / SAT weights)."""
    backend: str = "auto"
    """Video decoder: auto (decord, OpenCV when decord fails or is missing), decord or opencv."""
    on_bad_video: str = "error"
    """Missing / corrupt / empty video: error (stop, naming the file) or zero (all-zero features,
    a warning, and a count in the summary)."""
    feature_cache: str = ""
    """Folder of cached Q-Former features (`elmd features extract`); empty = encode on the fly."""
    encode_batch_size: int = 32
    """Frames per ViT + Q-Former forward pass."""

    def validate(self, prefix: str = "vision") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_choice, check_range

        for key in ("num_frames", "image_size", "num_query_tokens", "encode_batch_size"):
            check_range(prefix, self, key, 1)
        check_choice(prefix, self, "format", ("auto", "blip2", "visualglm"))
        check_choice(prefix, self, "backend", ("auto", "decord", "opencv"))
        check_choice(prefix, self, "on_bad_video", ("error", "zero"))


@dataclass
class VisionPretrainConfig:
    """Pre-training of the tiny ViT + Q-Former on synthetic face attributes
    (`elmd features pretrain-encoder`, :mod:`elmd.training.vision_pretrain`)."""

    train_frames: int = 4000
    """Synthetic frames to train on (new people, random expression attributes)."""
    valid_frames: int = 300
    """Held-out frames (other new people) for the R^2 in the output's meta.json."""
    epochs: int = 6
    """Passes over the training frames."""
    batch_size: int = 32
    """Frames per optimiser step."""
    lr: float = 3.0e-3
    """AdamW learning rate (cosine decay to 0)."""
    render_size: int = 112
    """Side the faces are drawn at (the bundled sample's videos are 112 px)."""
    seed: int = 0
    """Seeds the encoder's init, the drawn frames and the batch order."""

    def validate(self, prefix: str = "vision_pretrain") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_range

        for key in ("train_frames", "valid_frames", "epochs", "batch_size", "render_size"):
            check_range(prefix, self, key, 1)
        check_range(prefix, self, "lr", 0, lo_open=True)
        check_range(prefix, self, "seed", 0)


@dataclass
class PrefixConfig:
    """The p-tuning v2 prefix of stage eerg (:mod:`elmd.models.prefix`, ChatGLM2's recipe)."""

    pre_seq_len: int = 128
    """Prefix length P: key/value pairs per layer put in front of the frozen LLM's attention."""
    projection: bool = False
    """Pass the prefix through a 2-layer MLP (Linear-tanh-Linear) as ChatGLM2's prefix_projection;
    False = the plain per-layer key/value embedding (ChatGLM2's recipe default)."""
    hidden_size: int = 0
    """Hidden size of that MLP; 0 = the LLM's hidden size (4096 for ChatGLM2-6B)."""
    dropout: float = 0.1
    """Dropout on the prefix keys/values while training (ChatGLM2's p-tuning v2: 0.1)."""

    def validate(self, prefix: str = "prefix") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_range

        check_range(prefix, self, "pre_seq_len", 1)
        check_range(prefix, self, "hidden_size", 0)
        check_range(prefix, self, "dropout", 0, 1, hi_open=True)


@dataclass
class PromptConfig:
    max_source_length: int = 512
    """Max prompt tokens (instruction, background, history, utterance, video, demonstration)."""
    max_target_length: int = 64
    """Max target tokens (emotion word + response + eos)."""
    use_demonstration: bool = True
    """Put the retrieved demonstration R in the prompt (False = the 'w/o ERM' ablation)."""

    def validate(self, prefix: str = "prompt") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_range

        check_range(prefix, self, "max_source_length", 1)
        check_range(prefix, self, "max_target_length", 1)
