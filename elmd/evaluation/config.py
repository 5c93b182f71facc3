"""Generation configuration (paper Sec. 4.3: nucleus sampling)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerateConfig:
    top_p: float = 0.7
    """Nucleus sampling top-p (ChatGLM2 recipe: 0.7)."""
    temperature: float = 0.95
    """Sampling temperature (ChatGLM2 recipe: 0.95)."""
    greedy: bool = False
    """Greedy decoding instead of sampling."""
    max_new_tokens: int = 64
    """Max generated tokens."""
    batch_size: int = 16
    """Prompts per generation batch."""
    seed: int = 42
    """Sampling seed."""
