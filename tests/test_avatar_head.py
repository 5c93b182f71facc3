"""AvatarHead on elmd.inference's Reply / Request: media per reply, extras["avatar"], the profile rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from elmd.data.schema import Turn
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.head import AvatarHead, build_head, profile_for
from elmd.heads.avatar.meta import Profile
from elmd.inference.reply import Reply, Request


def test_build_head_through_the_registry():
    from elmd.config import load_config
    from elmd.inference.heads import build_head as build_named

    cfg = load_config("tiny", ["avatar.size=128", "avatar.gender=male"])
    head = build_named("avatar", None, cfg)
    assert head.name == "avatar" and head.cfg.size == 128 and head.face.size == 128
    assert isinstance(build_head(None, object()), AvatarHead)  # a config without a section: defaults


def test_apply_fills_extras_with_media_paths(tmp_path):
    head = AvatarHead(AvatarConfig(size=128))
    replies = [Reply("happy", "高兴", "太好了！"), Reply(None, "", "嗯，我知道了。"), Reply("sad", "悲伤", "???"),
               Reply("sad", "悲伤", "好吧", extras={"meta": {"profile": {"gender": "robot"}}})]
    requests = [Request("考完了", sample_id="s/1", dialogue_id="d1"), Request("怎么了"), Request("是吗"), Request("嗯")]
    head.apply(replies, requests, tmp_path)
    a = replies[0].extras["avatar"]
    assert a["audio"] == "avatar/s_1/speech.wav" and a["video"] == "avatar/s_1/avatar.mp4"
    assert (tmp_path / a["video"]).is_file() and (tmp_path / a["audio"]).is_file()
    assert (a["emotion"], a["emotion_source"], a["profile_source"]) == ("happy", "reply", "config")
    b = replies[1].extras["avatar"]
    assert (b["emotion"], b["emotion_source"]) == ("neutral", "default") and b["video"] == "avatar/turn-1/avatar.mp4"
    assert "no Chinese character" in replies[2].extras["avatar"]["error"]
    assert "unknown gender 'robot'" in replies[3].extras["avatar"]["error"] and head.failed == 2
    assert replies[0].response == "太好了！" and replies[0].emotion == "happy"  # heads never change the reply


@dataclass
class ProfiledTurn(Turn):
    profile: dict | None = None


@pytest.mark.parametrize("extras, history, expected, source", [
    ({"meta": {"profile": {"gender": "male", "age": "elderly"}}}, (), Profile("male", "elderly"), "meta"),
    ({}, (ProfiledTurn("助手", "好", "happy", None, {"gender": "male", "age": "unknown"}),
          ProfiledTurn("用户", "嗯", None, None, {"gender": "female", "age": "elderly"})), Profile("male", "young"), "data"),
    ({}, (Turn("助手", "好", "happy"),), Profile("female", "young"), "config"),
])
def test_profile_rule(extras, history, expected, source):
    reply = Reply("happy", "高兴", "好", extras=extras)
    assert profile_for(reply, Request("嗯", history=history), AvatarConfig()) == (expected, source)


def test_a_loaded_pipeline_renders_its_replies(gen_run, tmp_path):
    """elmd.inference.load(..., heads=["avatar"]): every answered turn gets media or a one-line reason."""
    from elmd.inference import load

    pipe = load(gen_run.eerg, "cpu", overrides=["avatar.size=64"], heads=["avatar"], media_dir=tmp_path)
    replies = pipe.respond_batch([Request("你听说了吗？", sample_id="a", dialogue_id="d"),
                                  Request("有个消息。", sample_id="b", dialogue_id="d")])
    rendered = 0
    for reply in replies:
        a = reply.extras["avatar"]
        if "error" in a:
            assert "no Chinese character" in a["error"] or "empty" in a["error"]
            continue
        rendered += 1
        assert (tmp_path / a["video"]).is_file() and a["emotion"] in pipe.labels  # decided (constrained) or default
        assert a["emotion_source"] == ("reply" if reply.emotion == a["emotion"] else "default")
    assert rendered >= 1  # the fixture's tiny model answers in Chinese characters
    if rendered == 2:
        assert replies[0].extras["avatar"]["reference"] != replies[1].extras["avatar"]["reference"]  # own folders
