"""The avatar head on :mod:`elmd.inference`: every answered turn gets speech and a talking face.

``build_head(pipeline, cfg)`` (registered as ``"avatar"`` in :data:`elmd.inference.heads.HEADS`)
returns an :class:`AvatarHead`; ``apply(replies, requests, media_dir)`` renders reply i into
``media_dir/avatar/<sample id or turn-i>/`` and sets ``reply.extras["avatar"]`` to
``{"audio", "video", "reference", "emotion", "gender", "age", "duration", "frames",
"emotion_source", "profile_source"}`` (paths relative to ``media_dir``), or to ``{"error": "..."}``
when the reply cannot be spoken (empty, or no Chinese character) — one bad reply never stops a batch.

Profile rule (who speaks): (1) ``reply.extras["meta"]["profile"]`` when a meta-trained model's
output was parsed (:mod:`.meta`; its 语气 then sets the speech's prosody); else (2) the ``profile`` of the responder's latest turn in the
request's history, when the data carries one (CPED's Gender / Age columns); else (3) the config's
``avatar.gender`` / ``avatar.age``. The face's identity key is ``<dialogue id or 'chat'>/<responder>``,
so one responder keeps one face through a dialogue. A reply whose emotion is None or outside the
seven is shown as neutral (``emotion_source: "default"``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from elmd.errors import ElmdError
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.render import EMOTIONS, build_face, build_speech, render_avatar

NAME = "avatar"


def profile_for(reply, request, cfg: AvatarConfig) -> tuple[Profile, str]:
    """The responder's profile and which rule gave it ('meta', 'data' or 'config')."""
    meta = (reply.extras.get("meta") or {}).get("profile") if isinstance(reply.extras.get("meta"), dict) else None  # ok only
    if isinstance(meta, dict):
        return Profile(meta.get("gender", cfg.gender), meta.get("age", cfg.age)), "meta"
    for turn in reversed(list(getattr(request, "history", ()) or ())):
        prof = getattr(turn, "profile", None)
        if getattr(turn, "speaker", None) == request.responder and isinstance(prof, dict):
            gender = prof.get("gender") if prof.get("gender") in ("female", "male") else cfg.gender
            age = prof.get("age") if prof.get("age") in ("young", "middle-aged", "elderly") else cfg.age
            return Profile(gender, age), "data"
    return Profile(cfg.gender, cfg.age), "config"


class AvatarHead:
    """Renders replies with backends built once (module docstring)."""

    name = NAME

    def __init__(self, cfg: AvatarConfig, speech=None, face=None):
        self.cfg = cfg
        self.speech = speech or build_speech(cfg)
        self.face = face or build_face(cfg)
        self.failed = 0

    def apply(self, replies: Sequence, requests: Sequence, media_dir: Path) -> None:
        media_dir = Path(media_dir)
        for i, (reply, request) in enumerate(zip(replies, requests)):
            emotion = reply.emotion if reply.emotion in EMOTIONS else "neutral"
            folder = media_dir / NAME / _safe(request.sample_id or f"turn-{i}")
            key = f"{request.dialogue_id or 'chat'}/{request.responder}"
            try:
                profile, source = profile_for(reply, request, self.cfg)
                meta = reply.extras.get("meta") if isinstance(reply.extras.get("meta"), dict) else {}
                result = render_avatar(reply.response, emotion, folder, self.cfg, profile, key, overwrite=True,
                                       speech=self.speech, face=self.face, style=meta.get("style", ""))
            except ElmdError as e:
                self.failed += 1
                reply.extras[NAME] = {"error": str(e)}
                continue
            reply.extras[NAME] = {**result.as_extras(media_dir),
                                  "emotion_source": "reply" if emotion == reply.emotion else "default",
                                  "profile_source": source}


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "reply"


def build_head(pipeline, cfg) -> AvatarHead:
    """The head for ``pipeline`` (unused: the avatar needs only the replies) under ``cfg.avatar``."""
    return AvatarHead(getattr(cfg, "avatar", None) or AvatarConfig())
