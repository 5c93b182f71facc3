"""Model configuration: LLM backbone, visual encoder and prompt (paper Sec. 3.4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LLMConfig:
    preset: str = "tiny"
    """'tiny' (random init, CPU seconds) or 'chatglm2-6b' (converted weights from `path`)."""
    path: str = ""
    """Local folder with converted ChatGLM2-6B weights (`elmd convert chatglm2`)."""
    tokenizer: str = ""
    """Local ChatGLM2 `tokenizer.model`; empty = the in-process SentencePiece model (tiny)."""
    dtype: str = "float32"
    """dtype of the frozen LLM: float32 (CPU), bfloat16 or float16 (GPU)."""


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


@dataclass
class PromptConfig:
    max_source_length: int = 512
    """Max prompt tokens (instruction, background, history, utterance, video, demonstration)."""
    max_target_length: int = 64
    """Max target tokens (emotion word + response + eos)."""
    use_demonstration: bool = True
    """Put the retrieved demonstration R in the prompt (False = the 'w/o ERM' ablation)."""
