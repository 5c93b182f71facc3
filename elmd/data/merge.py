"""ELMD's preprocessing of sentence-level corpora (paper Sec. 4.1): consecutive sentences of the
same speaker are merged into one utterance whose label is the majority emotion of the sentences.

Rules (also in the README):
- Only *labelled* sentences vote (a sentence whose label was dropped, e.g. CPED's
  ``negative-other`` by default, counts as unlabelled). A group with no labelled sentence stays
  unlabelled (``emotion = None``): kept as dialogue context, never a target.
- Tie rule: among the labels with the highest count, the one that occurs *last* in the group wins
  (the sentence nearest to the next speaker's reply).
- Texts are joined with a single space (CPED already separates clauses with spaces); the video,
  dialogue act and scene of the merged utterance are those of its last sentence (the one nearest
  the reply), its speaker profile that of its first (one speaker: the same).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from elmd.data.schema import Turn


@dataclass
class Sentence:
    """One row of a sentence-level corpus before merging."""

    speaker: str
    text: str
    emotion: str | None
    video: str | None = None
    profile: dict | None = None
    act: str | None = None
    scene: str | None = None


def majority_emotion(labels: list[str | None]) -> str | None:
    """Majority over the non-None labels; ties go to the label occurring last; None if none."""
    voted = [lab for lab in labels if lab is not None]
    if not voted:
        return None
    counts = Counter(voted)
    best = max(counts.values())
    last_pos = {lab: i for i, lab in enumerate(voted)}
    return max((lab for lab, c in counts.items() if c == best), key=lambda lab: last_pos[lab])


def merge_sentences(sentences: list[Sentence], sep: str = " ") -> list[Turn]:
    """Merge runs of consecutive sentences by one speaker into turns (see module docstring)."""
    turns: list[Turn] = []
    group: list[Sentence] = []
    for s in sentences + [None]:  # type: ignore[list-item]
        if group and (s is None or s.speaker != group[-1].speaker):
            turns.append(
                Turn(
                    speaker=group[0].speaker,
                    text=sep.join(g.text.strip() for g in group),
                    emotion=majority_emotion([g.emotion for g in group]),
                    video=group[-1].video,
                    profile=group[0].profile,
                    act=group[-1].act,
                    scene=group[-1].scene,
                )
            )
            group = []
        if s is not None:
            group.append(s)
    return turns
