"""Training configuration for stages `rep` and `eerg` (paper Sec. 3.4-3.5, 4.3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    stage: str = "rep"
    """'rep' (train the video Linear on the response emotion) or 'eerg' (prefix + Linear)."""
    out: str = "runs/sample/rep"
    """Output folder (weights, config, meta.json, logs)."""
    batch_size: int = 16
    """Global batch (paper: 16)."""
    lr: float = 2e-5
    """AdamW learning rate (paper: 2e-5 for rep, 2e-2 for eerg)."""
    epochs: int = 3
    """Epochs."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    pre_seq_len: int = 128
    """p-tuning v2 prefix length (stage eerg)."""
    seed: int = 42
    """Seed of init, shuffling and dropout."""
