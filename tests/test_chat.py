"""`elmd chat`: history kept across turns, emotion / demonstration / response shown, video per turn,
clean exit at end of input (what Ctrl-D gives)."""

from __future__ import annotations

from click.testing import CliRunner

from elmd.cli.chat_cmd import cli
from elmd.evaluation.chat import open_chat
from elmd.resources import labels_of, open_index
from elmd.runs import run_config
from retrieval.demonstration import format_demonstration


def prompts(output: str) -> list[str]:
    """The --show-prompt blocks of a chat transcript."""
    blocks = output.split("[prompt] ")[1:]
    return [b.split("[emotion]")[0] for b in blocks]


def test_two_turns_keep_history_and_eof_exits_cleanly(gen_run):
    res = CliRunner().invoke(cli, ["--checkpoint", gen_run.eerg, "--show-prompt", "--set", "generate.greedy=true"],
                             input="你听说了吗？\n我跟你说件事。\n")
    assert res.exit_code == 0, res.output
    first, second = prompts(res.output)
    assert "当前话语：用户：你听说了吗？" in first and "\n对话历史：" not in first
    assert "对话历史：\n用户：你听说了吗？\n助手：" in second and "当前话语：用户：我跟你说件事。" in second
    assert res.output.count("[emotion] ") == 2 and res.output.rstrip().endswith("bye")
    cfg = run_config(gen_run.eerg)
    hit = open_index(cfg).search(["你听说了吗？"], 1)[0][0]
    assert f"[demonstration] {format_demonstration(hit, labels_of(cfg))}\n" in res.output


def test_end_of_input_at_once_says_goodbye_and_a_video_line_applies_to_the_next_turn(gen_run):
    res = CliRunner().invoke(cli, ["--checkpoint", gen_run.eerg], input="")
    assert res.exit_code == 0 and "[emotion]" not in res.output and res.output.rstrip().endswith("bye")
    video = gen_run.folder / "cold.mp4"
    res = CliRunner().invoke(cli, ["--checkpoint", gen_run.eerg, "--show-prompt"], input=f"/video {video}\n有个消息。\n好吧\n")
    assert res.exit_code == 0, res.output
    with_video, without = prompts(res.output)
    assert "\n视频：" in with_video and "\n视频：" not in without.split("当前话语")[1]


def test_history_holds_both_speakers_and_the_video_is_for_one_turn(gen_run):
    cfg = run_config(gen_run.eerg, ["generate.greedy=true"])
    chat = open_chat(gen_run.eerg, ["generate.greedy=true"])
    video = str(gen_run.folder / "warm.mp4")
    a = chat.say("你听说了吗？", video)
    a_prompt = chat.last_prompt
    b = chat.say("有个消息。")
    b_prompt = chat.last_prompt
    assert [(t.speaker, t.text) for t in chat.history] == [("用户", "你听说了吗？"), ("助手", a.response),
                                                           ("用户", "有个消息。"), ("助手", b.response)]
    assert chat.history[0].video == video and chat.history[2].video is None
    assert "\n视频：" in a_prompt and "\n视频：" not in b_prompt.split("当前话语")[1]
    assert a.emotion is None or a.emotion in labels_of(cfg)


def test_commands_and_bad_videos_never_end_the_chat(gen_run, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    lines = ["/help", f"/video {tmp_path / 'missing.mp4'}", "你听说了吗？", f"/video {bad}", "有个消息。", "/history",
             "/reset", "/history", "/nope", f"/video {gen_run.folder / 'warm.mp4'}", "好吧"]
    res = CliRunner().invoke(cli, ["--checkpoint", gen_run.eerg, "--show-prompt"], input="\n".join(lines) + "\n")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "/video PATH" in out and "/reset" in out  # the help text, not an utterance sent to the model
    assert "missing.mp4: no such video file" in out and "bad.mp4: cannot decode video" in out
    assert out.count("[emotion] ") == 3 and "Traceback" not in out  # all three utterances were answered
    assert "用户：你听说了吗？" in out.split("[reset]")[0] and "(no turns yet)" in out.split("[reset]")[1]
    assert "unknown command /nope" in out
    prompts_ = prompts(out)
    assert "\n视频：" not in prompts_[0] and "\n视频：" not in prompts_[1] and "\n视频：" in prompts_[2]
    assert "\n对话历史：" not in prompts_[2] and "\n对话历史：" in prompts_[1]  # /reset forgot the first two turns
