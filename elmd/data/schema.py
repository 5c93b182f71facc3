"""The canonical dialogue format and the sample definition (README, "Data").

One dialogue per JSONL line::

    {"dialogue_id": "d001", "series": "s1", "background": "...",
     "turns": [{"speaker": "A", "text": "...", "emotion": "neutral", "video": "videos/d001_0.mp4"}]}

``video`` is optional; a relative path is relative to the JSONL file's folder. ``emotion`` may be
null for an unlabelled turn (kept as context, never a target). Optional per-turn fields, written
only when known (CPED has them; readers that do not use them ignore them):
``profile`` = the speaker's ``{"gender": male|female|unknown, "age": young|middle-aged|elderly|unknown}``,
``act`` = the dialogue act (CPED's DA, e.g. "question"), ``scene`` = where the turn is spoken
(CPED's Scene, e.g. "home"; a dialogue may change scene).

A **sample** is made for each turn i that is followed by a turn of another speaker whose emotion
is labelled: utterance u = turn i, history H = turns 0..i-1, response r = turn i+1,
target = emotion of r, video = video of u, background B = the dialogue's background.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


GENDERS = ("male", "female", "unknown")
"""Values of ``profile.gender`` (CPED's Gender)."""
AGES = ("young", "middle-aged", "elderly", "unknown")
"""Values of ``profile.age`` (CPED's Age)."""
OPTIONAL = ("video", "profile", "act", "scene")
"""Turn fields written only when not None."""


@dataclass
class Turn:
    speaker: str
    text: str
    emotion: str | None
    video: str | None = None
    profile: dict | None = None
    """The speaker's ``{"gender": ..., "age": ...}`` (:data:`GENDERS`, :data:`AGES`); None = unknown."""
    act: str | None = None
    """Dialogue act of the turn (CPED's DA: question, answer, statement-opinion, ...)."""
    scene: str | None = None
    """Scene the turn is spoken in (CPED's Scene: home, office, car, ...)."""

    def to_dict(self) -> dict:
        d = {"speaker": self.speaker, "text": self.text, "emotion": self.emotion}
        for key in OPTIONAL:
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass
class Dialogue:
    dialogue_id: str
    series: str
    background: str
    turns: list[Turn] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "dialogue_id": self.dialogue_id,
            "series": self.series,
            "background": self.background,
            "turns": [t.to_dict() for t in self.turns],
        }


@dataclass
class Sample:
    """One training / evaluation example (see module docstring)."""

    sample_id: str
    dialogue_id: str
    series: str
    background: str
    history: list[Turn]
    utterance: Turn
    response: Turn

    @property
    def target_emotion(self) -> str:
        return self.response.emotion  # type: ignore[return-value]

    @property
    def video(self) -> str | None:
        return self.utterance.video

    def to_dict(self) -> dict:
        return asdict(self)


def build_samples(dialogues: list[Dialogue]) -> list[Sample]:
    """Turn dialogues into samples by the rule in the module docstring (order preserved)."""
    samples = []
    for d in dialogues:
        for i in range(len(d.turns) - 1):
            u, r = d.turns[i], d.turns[i + 1]
            if r.speaker == u.speaker or r.emotion is None:
                continue
            samples.append(
                Sample(
                    sample_id=f"{d.dialogue_id}#{i}",
                    dialogue_id=d.dialogue_id,
                    series=d.series,
                    background=d.background,
                    history=list(d.turns[:i]),
                    utterance=u,
                    response=r,
                )
            )
    return samples
