"""Demonstration builder: prompt part R from the top retrieved pair (paper Sec. 3.3, Fig. 2).

The top hit's response r' becomes part R of the prompt, introduced by a fixed instruction that
names its emotion in the label set's prompt word::

    参考回复（情绪：高兴）：那太好了，我们一起去吧！

**No hit** (empty index, or every entry excluded as same-dialogue): :func:`format_demonstration`
returns the empty string and the prompt omits part R altogether.
"""

from __future__ import annotations

from elmd.data.labels import LabelSet
from retrieval.index import DemonstrationIndex, Hit

DEMO_INSTRUCTION = "参考回复"
"""The special instruction that introduces r' in the prompt."""


def format_demonstration(hit: Hit | None, labels: LabelSet) -> str:
    """Chinese text of prompt part R for ``hit``; '' when there is no hit (the prompt omits R)."""
    if hit is None or not hit.response.strip():
        return ""
    if hit.response_emotion:
        return f"{DEMO_INSTRUCTION}（情绪：{labels.word(hit.response_emotion)}）：{hit.response}"
    return f"{DEMO_INSTRUCTION}：{hit.response}"


def demonstrations_for(index: DemonstrationIndex, samples, labels: LabelSet, batch_size: int = 256,
                       progress: bool = False) -> list[str]:
    """Part R for every sample in one batched search (same-dialogue entries excluded; the samples'
    earlier turns are the queries' dialogue context, as at inference)."""
    hits = index.search([s.utterance.text for s in samples], 1, [s.dialogue_id for s in samples],
                        batch_size=batch_size, progress=progress,
                        histories=[(s.history, s.utterance.speaker) for s in samples])
    return [format_demonstration(h[0] if h else None, labels) for h in hits]
