"""`elmd avatar render` / render_avatar: a playable MP4 with Mandarin speech and a mouth that follows it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from elmd.errors import ElmdError
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.face import CartoonFace, Reference
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.metrics import frame_energy, lipsync, mouth_opening
from elmd.heads.avatar.mux import probe, read_audio, read_video
from elmd.heads.avatar.render import render_avatar


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The issue's done-when command, through the CLI."""
    from elmd.cli.main import main

    out = tmp_path_factory.mktemp("render") / "x"
    res = CliRunner().invoke(main, ["avatar", "render", "--text", "今天终于考完试了", "--emotion", "happy", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_render_writes_an_mp4_with_speech_and_meta(rendered):
    assert sorted(p.name for p in rendered.iterdir()) == ["avatar.mp4", "meta.json", "reference.png", "speech.wav"]
    info = probe(rendered / "avatar.mp4")
    meta = json.loads((rendered / "meta.json").read_text(encoding="utf-8"))
    assert (info.video_codec, info.audio_codec, info.width, info.fps) == ("h264", "aac", 256, 25.0)
    assert info.duration == pytest.approx(meta["duration"], abs=0.05)
    assert meta["emotion"] == "happy" and meta["profile"] == {"gender": "female", "age": "young"}
    assert meta["speech"]["voice"] == "cmn+f5" and "".join(w for w, _ in meta["words"]) == "今天终于考完试了"
    assert len(meta["mouth"]) == meta["frames"] == len(read_video(rendered / "avatar.mp4"))


def test_the_mouth_in_the_file_moves_with_its_audio(rendered):
    frames, audio = read_video(rendered / "avatar.mp4"), read_audio(rendered / "avatar.mp4", 16000)
    assert len(audio) / 16000 == pytest.approx(len(frames) / 25, abs=0.1)
    mouth = mouth_opening(frames, CartoonFace().mouth_box(Reference("female/young"), Profile()))
    assert mouth.max() - mouth.min() > 0.1  # it opens and closes
    sync = lipsync(mouth, frame_energy(audio, 16000, 25, len(frames)), 25)
    assert sync.correlation > 0.7 and sync.offset_ms == 0.0


def test_existing_output_is_kept_without_overwrite(rendered):
    before = (rendered / "avatar.mp4").read_bytes()
    with pytest.raises(ElmdError, match="already exists"):
        render_avatar("你好", "sad", rendered)
    assert (rendered / "avatar.mp4").read_bytes() == before


def test_overwrite_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "o"
    render_avatar("你好", "sad", out, AvatarConfig(size=128), Profile("male", "elderly"))
    (out / "stale.txt").write_text("old")
    r = render_avatar("你好啊", "anger", out, AvatarConfig(size=128), overwrite=True)
    assert not (out / "stale.txt").exists() and r.emotion == "anger"
    assert json.loads((out / "meta.json").read_text(encoding="utf-8"))["text"] == "你好啊"


def test_a_failing_backend_leaves_nothing_half_written(tmp_path):
    class Broken(CartoonFace):
        def render(self, *a, **k):
            raise ElmdError("face backend broke")

    with pytest.raises(ElmdError, match="broke"):
        render_avatar("你好", "happy", tmp_path / "o", face=Broken())
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder


@pytest.mark.parametrize("args, message", [
    (["--text", "", "--emotion", "happy"], "reply text is empty"),
    (["--text", "?!…", "--emotion", "happy"], "no Chinese character"),
    (["--text", "good job", "--emotion", "happy"], "no Chinese character"),
    (["--text", "你好", "--emotion", "joy"], "unknown emotion 'joy'"),
    (["--text", "你好", "--emotion", "sad", "--set", "avatar.face_bank=MISSING"], "reference-face bank index not found"),
    (["--text", "你好", "--emotion", "sad", "--set", "avatar.speech=cosyvoice", "--set", "avatar.speech_path=EMPTY"],
     "no checkpoint files"),
    (["--text", "你好", "--emotion", "sad", "--set", "avatar.face=sadtalker", "--set", "avatar.face_repo=EMPTY"],
     "no inference.py here"),
    (["--text", "你好", "--emotion", "sad", "--set", "avatar.size=100"], "multiple of 16"),
    (["--text", "你好", "--emotion", "sad", "--set", "avatar.speech=festival"], "avatar.speech='festival' — choose one of"),
    (["--text", "你好", "--emotion", "sad", "--set", "avatar.mouth_gain=9"], "must be a number in [0.0, 3.0]"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path):
    from elmd.cli.main import main

    (tmp_path / "EMPTY").mkdir()
    args = [a.replace("MISSING", str(tmp_path / "nobank")).replace("EMPTY", str(tmp_path / "EMPTY")) for a in args]
    res = CliRunner().invoke(main, ["avatar", "render", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in res.output
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


def test_face_bank_portrait_becomes_the_reference(tmp_path):
    from PIL import Image

    bank = tmp_path / "bank"
    bank.mkdir()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(bank / "m.png")
    (bank / "faces.json").write_text(json.dumps([{"image": "m.png", "gender": "male", "age": "young"},
                                                 {"image": "gone.png", "gender": "female", "age": "young"}]))
    r = render_avatar("你好", "neutral", tmp_path / "o", AvatarConfig(face_bank=str(bank), size=128), Profile("male", "young"))
    assert r.reference.read_bytes() == (bank / "m.png").read_bytes()
    with pytest.raises(ElmdError, match="gone.png: reference face not found"):
        render_avatar("你好", "neutral", tmp_path / "o2", AvatarConfig(face_bank=str(bank)), Profile("female", "young"))
    assert not (tmp_path / "o2").exists()
