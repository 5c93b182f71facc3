"""The avatar head (issue 15; EmpathyEar-style): emotional Mandarin speech and a talking face of a reply.

    from elmd.heads.avatar import render_avatar
    render_avatar("今天终于考完试了", "happy", "out/avatar")   # speech.wav, avatar.mp4, meta.json

Modules: :mod:`.config` (``AvatarConfig``, section ``avatar``), :mod:`.meta` (the meta-response
target + strict parser, re-exported from :mod:`elmd.data.meta_response`), :mod:`.speech`
(``SpeechBackend``, eSpeak NG), :mod:`.neural` (ChatTTS / CosyVoice from local folders, voice bank), :mod:`.face` (``FaceBackend``, cartoon renderer, face bank),
:mod:`.face_subprocess` (SadTalker / DreamTalk checkouts), :mod:`.mux` (MP4 through imageio-ffmpeg),
:mod:`.render` (the entry point), :mod:`.metrics` (pure measurements), :mod:`.evaluate` (the fixed
evaluation set and the closed-loop emotion check), :mod:`.head` (``build_head`` for elmd.inference).
See README.md beside this file.
"""

from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.meta import MetaResponse, Profile, format_meta, parse_meta
from elmd.heads.avatar.render import AvatarResult, render_avatar

__all__ = ["AvatarConfig", "AvatarResult", "MetaResponse", "Profile", "format_meta", "parse_meta", "render_avatar"]
