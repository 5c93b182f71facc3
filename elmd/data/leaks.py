"""Split leaks: held-out replies that already occur (verbatim or nearly) in the train split (issue 12 item 5).

A reply of a valid/test sample that is also an utterance of the train split makes retrieval look
better than it is (the retriever returns train replies) and lets a model pass by memory. ``prepare``
counts, for each held-out split, its samples' replies that have

* an **exact** copy among the train split's utterances (after stripping whitespace), or
* a **near** copy: character-multiset F1 >= ``threshold`` (0.9) with one of them (the exact copies
  included), the same char-F1 as :func:`retrieval.metrics.char_f1`.

Replies shorter than ``min_chars`` (5) characters are counted apart (``short``): 是, 好吧 or 什么意思
recur in any real corpus and are not leaks.

Near copies are found without comparing all pairs: F1 >= t needs the shorter text to be at least
``t / (2 - t)`` of the longer one, so only train utterances in that length window are scored, and
a cheap bound on the shared characters (the character *sets*) skips most of those.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import asdict, dataclass, field

from elmd.data.schema import Dialogue, build_samples


@dataclass
class LeakCount:
    """Held-out replies of one split with a copy in train."""

    replies: int
    """Samples (replies) in the split."""
    exact: int
    """Replies with a verbatim copy among the train split's utterances."""
    near: int
    """Replies with a char-F1 >= threshold copy (exact copies included)."""
    threshold: float = 0.9
    """The char-F1 that counts as a near copy."""
    short: int = 0
    """Replies shorter than ``min_chars`` with a verbatim copy (是, 好吧, 什么意思: common answers,
    not leaks); they are not counted in ``exact``/``near``."""
    min_chars: int = 5
    """Replies shorter than this are only counted in ``short``."""
    examples: list[str] = field(default_factory=list)
    """Up to three copied replies, to look at."""

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


def _f1(a: Counter, na: int, b: Counter, nb: int) -> float:
    common = sum((a & b).values())
    return 0.0 if not common else 2 * common / (na + nb)


class _TrainTexts:
    """The train utterances, by length, for the near-copy search."""

    def __init__(self, texts: list[str]):
        uniq = sorted({t for t in map(_norm, texts) if t}, key=len)
        self.exact = set(uniq)
        self.lengths = [len(t) for t in uniq]
        self.bags = [Counter(t) for t in uniq]
        self.sets = [frozenset(t) for t in uniq]

    def has_near(self, text: str, threshold: float) -> bool:
        n = len(text)
        ratio = threshold / (2 - threshold)
        lo = bisect.bisect_left(self.lengths, n * ratio)
        hi = bisect.bisect_right(self.lengths, n / ratio)
        bag, chars = Counter(text), frozenset(text)
        for i in range(lo, hi):
            m = self.lengths[i]
            # shared characters <= shared distinct characters + the repeats of either text
            bound = len(chars & self.sets[i]) + min(n - len(chars), m - len(self.sets[i]))
            if 2 * bound / (n + m) < threshold:
                continue
            if _f1(bag, n, self.bags[i], m) >= threshold:
                return True
        return False


def count_leaks(train: list[Dialogue], held_out: list[Dialogue], threshold: float = 0.9,
                min_chars: int = 5) -> LeakCount:
    """How many replies of ``held_out``'s samples are copied (exactly / nearly) in ``train``."""
    kinds = _copy_kinds(train, held_out, threshold, min_chars)
    examples = []
    for _, reply, kind in kinds:
        if kind in ("exact", "near") and len(examples) < 3 and reply not in examples:
            examples.append(reply)
    count = {k: sum(1 for *_, kind in kinds if kind == k) for k in ("exact", "near", "short")}
    return LeakCount(len(kinds), count["exact"], count["exact"] + count["near"], threshold,
                     short=count["short"], min_chars=min_chars, examples=examples)


def _copy_kinds(train, held_out, threshold: float, min_chars: int) -> list[tuple[str, str, str | None]]:
    """(sample id, normalised reply, kind) per sample of ``held_out``; kind = 'exact' / 'near' /
    'short' (a short reply with a verbatim copy) / None."""
    texts = _TrainTexts([t.text for d in train for t in d.turns])
    out = []
    for s in build_samples(held_out):
        r = _norm(s.response.text)
        if len(r) < min_chars:
            kind = "short" if r in texts.exact else None
        elif r in texts.exact:
            kind = "exact"
        else:
            kind = "near" if r and texts.has_near(r, threshold) else None
        out.append((s.sample_id, r, kind))
    return out


def unlabel_copies(train: list[Dialogue], held_out: list[Dialogue], threshold: float = 0.9,
                   min_chars: int = 5) -> tuple[list[Dialogue], int]:
    """``held_out`` with the emotion of every copied reply (exact or near) removed, so that it is
    context but no longer a sample (:func:`~elmd.data.schema.build_samples` skips unlabelled replies);
    returns the dialogues and how many replies lost their label."""
    import copy

    copied = {sid for sid, _, kind in _copy_kinds(train, held_out, threshold, min_chars) if kind in ("exact", "near")}
    out, n = [], 0
    for d in held_out:
        d = copy.deepcopy(d)
        for i in range(len(d.turns) - 1):
            if f"{d.dialogue_id}#{i}" in copied:
                d.turns[i + 1].emotion = None
                n += 1
        out.append(d)
    return out, n
