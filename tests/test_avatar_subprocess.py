"""Talking-face models as subprocesses, against a stand-in honouring SadTalker's command line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from elmd.errors import ElmdError
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.face_subprocess import SubprocessFace
from elmd.heads.avatar.mux import probe, read_video
from elmd.heads.avatar.render import render_avatar

STANDIN = Path(__file__).parent / "avatar_standin" / "inference.py"


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "SadTalker"
    (repo / "checkpoints").mkdir(parents=True)
    shutil.copy(STANDIN, repo / "inference.py")
    (repo / "checkpoints" / "SadTalker_V0.0.2_256.safetensors").write_bytes(b"\0" * 16)
    return repo


def cfg_for(repo: Path, **kw) -> AvatarConfig:
    return AvatarConfig(face="sadtalker", face_repo=str(repo), face_python=sys.executable, **kw)


def test_sadtalker_adapter_runs_the_checkout_and_muxes_our_speech(checkout, tmp_path):
    r = render_avatar("今天终于考完试了", "happy", tmp_path / "o", cfg_for(checkout))
    info = probe(r.video)
    assert (info.video_codec, info.audio_codec, info.width) == ("h264", "aac", 128)  # the tool's frames, our audio
    assert info.duration == pytest.approx(r.duration, abs=0.1)
    frames = read_video(r.video)
    assert frames.reshape(len(frames), -1).mean(axis=1).std() > 0.5  # the stand-in brightened loud frames
    assert sorted(p.name for p in r.folder.iterdir()) == ["avatar.mp4", "meta.json", "reference.png", "speech.wav"]


def test_checkout_without_checkpoints_or_script_is_refused(checkout, tmp_path):
    for f in (checkout / "checkpoints").iterdir():
        f.unlink()
    (checkout / "checkpoints" / "README.md").write_text("download the weights here")
    with pytest.raises(ElmdError, match="no checkpoint files"):
        SubprocessFace.from_config(cfg_for(checkout))
    with pytest.raises(ElmdError, match="no inference.py here"):
        SubprocessFace.from_config(cfg_for(tmp_path))
    with pytest.raises(ElmdError, match="face_repo is empty"):
        SubprocessFace.from_config(AvatarConfig(face="sadtalker"))


def test_a_failing_tool_reports_its_last_line_and_writes_nothing(checkout, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_FAIL", "1")
    with pytest.raises(ElmdError, match="sadtalker failed \\(exit 1\\): RuntimeError: face not detected"):
        render_avatar("你好", "sad", tmp_path / "o", cfg_for(checkout))
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


def test_missing_reference_face_is_refused(checkout, tmp_path):
    from elmd.heads.avatar.face import Reference
    from elmd.heads.avatar.meta import Profile

    face = SubprocessFace.from_config(cfg_for(checkout))
    with pytest.raises(ElmdError, match="reference face not found"):
        face.render(tmp_path / "a.wav", "sad", Profile(), Reference("k", tmp_path / "none.png"), tmp_path / "o.mp4")
