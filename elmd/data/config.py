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
    """train/valid/test fractions used by `elmd data prepare`, summing to 1 (or whole parts such as
    [8, 1, 1]); the paper: 8:1:1."""
    unlabel_copies: bool = False
    """`prepare`: a valid/test reply with a verbatim or near copy (char-F1 >= 0.9) among the train
    utterances loses its emotion label, so it stays context but is no longer a sample: a leak-free
    held-out set for a corpus that repeats itself (the bundled sample tells each situation seven
    ways). Counted in stats.json (``unlabelled_copies``)."""
    split_by: str = "dialogue"
    """Unit of the random split: 'dialogue' or 'series' (no series shared between splits)."""
    seed: int = 42
    """Seed of the split shuffle."""
    max_samples: int = 0
    """Use at most this many samples per split (0 = all); for smoke runs."""

    def validate(self, prefix: str = "data") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import bad_value, check_choice, check_range
        from elmd.data.labels import label_set_from_config

        for key in ("train", "valid", "test"):
            if not isinstance(getattr(self, key), str):
                bad_value(prefix, key, getattr(self, key), "a path string ('' = unset)")
        if not self.labels:
            bad_value(prefix, "labels", self.labels, "a non-empty list of emotion ids, e.g. [happy,sad,neutral]")
        blank = [lab for lab in self.labels if not str(lab).strip()]
        repeats = sorted({lab for lab in self.labels if self.labels.count(lab) > 1})
        if blank or repeats:
            bad_value(prefix, "labels", self.labels, f"distinct non-empty ids (repeated or blank: {repeats or blank})")
        try:
            label_set_from_config(self.labels, self.label_names)
        except ValueError as e:  # two ids shown with the same prompt word
            bad_value(prefix, "label_names", self.label_names, f"a distinct word per label ({e})")
        r = self.split_ratios
        if len(r) != 3 or min(r) < 0:
            bad_value(prefix, "split_ratios", r, "three non-negative train/valid/test fractions, e.g. [0.8,0.1,0.1]")
        whole_parts = all(float(x).is_integer() for x in r) and sum(r) > 0  # e.g. [8, 1, 1] = 8:1:1
        if not whole_parts and abs(sum(r) - 1.0) > 1e-6:
            bad_value(prefix, "split_ratios", r, f"fractions summing to 1 (these sum to {sum(r):g}), e.g. [0.8,0.1,0.1]")
        if r[0] <= 0:
            bad_value(prefix, "split_ratios", r, "a train fraction > 0")
        check_choice(prefix, self, "split_by", ("dialogue", "series"))
        check_range(prefix, self, "seed", 0)
        check_range(prefix, self, "max_samples", 0)
