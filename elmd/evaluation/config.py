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
    """Greedy decoding instead of sampling (top_p / temperature unused; outputs do not depend on
    the batch a sample lands in)."""
    max_new_tokens: int = 64
    """Max generated tokens per sample (generation stops earlier at eos)."""
    batch_size: int = 16
    """Prompts per generation batch."""
    seed: int = 42
    """Sampling seed: batch b is sampled after ``torch.manual_seed(seed + crc32 of its sample ids)``,
    so the same seed and batches give the same outputs (also after a resume)."""
    emotion: str = "constrained"
    """How the reply's emotion is decided: 'constrained' scores the label words after the prompt
    (mean log-probability per token), picks one (the best, or sampled at `temperature`), writes it
    and generates the reply conditioned on it, so every reply has an emotion; 'free' lets the model
    write the word and parses it (the paper's setting; a row without a parsable word gets none).
    A deviation from the paper, documented in elmd/inference/decoding.py."""
    device: str = "auto"
    """Device of `elmd generate` / `elmd chat`: "auto" (CUDA when available), "cpu" or "cuda"."""

    def validate(self, prefix: str = "generate") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_choice, check_device, check_range

        check_range(prefix, self, "top_p", 0, 1, lo_open=True)
        check_range(prefix, self, "temperature", 0, lo_open=True)
        check_range(prefix, self, "max_new_tokens", 1)
        check_range(prefix, self, "batch_size", 1)
        check_range(prefix, self, "seed", 0)
        check_choice(prefix, self, "emotion", ("constrained", "free"))
        check_device(prefix, self)
