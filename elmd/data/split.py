"""Random train/valid/test splits of dialogues (the ELMD paper re-splits M3ED 8:1:1).

``by="dialogue"`` shuffles dialogues; ``by="series"`` shuffles whole series and fills the splits
in order until each reaches its share of dialogues, so that no series is in two splits.
"""

from __future__ import annotations

import random

from elmd.data.schema import Dialogue
from elmd.errors import ElmdError

SPLITS = ("train", "valid", "test")


def _cut(n: int, ratios: list[float]) -> list[int]:
    """Sizes of the three parts of n items (the last part takes the rounding rest)."""
    total = sum(ratios)
    a = round(n * ratios[0] / total)
    b = round(n * ratios[1] / total)
    return [a, b, n - a - b]


def split_dialogues(dialogues: list[Dialogue], ratios: list[float], by: str = "dialogue", seed: int = 42) -> dict[str, list[Dialogue]]:
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ElmdError(f"split ratios must be three non-negative numbers, got {ratios} — e.g. data.split_ratios=[0.8,0.1,0.1]")
    rng = random.Random(seed)
    if by == "dialogue":
        order = list(dialogues)
        rng.shuffle(order)
        a, b, _ = _cut(len(order), ratios)
        parts = [order[:a], order[a : a + b], order[a + b :]]
    elif by == "series":
        groups: dict[str, list[Dialogue]] = {}
        for d in dialogues:
            groups.setdefault(d.series, []).append(d)
        names = sorted(groups)
        rng.shuffle(names)
        if len(names) < 3:
            raise ElmdError(f"--split-by series needs at least 3 series, found {len(names)} — split by dialogue instead")
        targets = _cut(len(dialogues), ratios)
        parts, k = [[], [], []], 0
        for i, name in enumerate(names):
            remaining_series = len(names) - i
            # move on when this split is full, but leave one series for each later split
            while k < 2 and (len(parts[k]) >= targets[k] or remaining_series <= 2 - k) and parts[k]:
                k += 1
            parts[k].extend(groups[name])
    else:
        raise ElmdError(f"unknown split unit '{by}' — use 'dialogue' or 'series'")
    return dict(zip(SPLITS, parts))
