"""Data configuration (canonical JSONL format, label set, splits, videos)."""

from __future__ import annotations

from dataclasses import dataclass, field

from elmd.data.labels import M3ED_LABELS


@dataclass
class DataConfig:
    train: str = "runs/sample/data/train.jsonl"
    """Training split (canonical JSONL, written by `elmd data prepare`)."""
    valid: str = "runs/sample/data/valid.jsonl"
    """Validation split."""
    test: str = "runs/sample/data/test.jsonl"
    """Test split."""
    labels: list[str] = field(default_factory=lambda: list(M3ED_LABELS))
    """Emotion ids, in order; the default is M3ED's seven. Any other set is declared here."""
    label_names: dict[str, str] = field(default_factory=dict)
    """Word shown in the prompt for a label id, overriding the built-in Chinese names."""
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """train/valid/test fractions used by `elmd data prepare` (the paper: 8:1:1)."""
    split_by: str = "dialogue"
    """Unit of the random split: 'dialogue' or 'series' (no series shared between splits)."""
    seed: int = 42
    """Seed of the split shuffle."""
    max_samples: int = 0
    """Use at most this many samples per split (0 = all); for smoke runs."""
