"""The meta-response target of stage eerg (train.target=meta): its prompt and target ids, the
config field, a run trained on it (every output parsed or counted as failed), and the parsed block
reaching Reply.extras["meta"] and the avatar head's voice."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_meta import meta_dialogues, meta_run  # noqa: F401  (session fixture)

from elmd.data.labels import M3ED_LABELS, LabelSet
from elmd.data.schema import Dialogue, Turn, build_samples
from elmd.errors import ConfigError, ElmdError
from elmd.models.config import PromptConfig
from elmd.models.prompt import HEAD, TAIL, encode_prompt, encode_sample, instruction, target_ids
from elmd.stages import run_target

LABELS = LabelSet(M3ED_LABELS)
HAPPY = "高兴\n场景：家里\n行为：观点\n性别：男\n年龄：老年\n语气：轻快\n回复：太好了，真为你高兴！"
SAD = "悲伤\n场景：未知\n行为：未知\n性别：女\n年龄：青年\n语气：低沉\n回复：唉，真让人难过。"  # no profile: the rule


def samples():
    dialogues = [Dialogue(d["dialogue_id"], d["series"], d["background"], [Turn(**t) for t in d["turns"]])
                 for d in meta_dialogues(2)]
    happy, sad = build_samples(dialogues)
    assert (happy.target_emotion, sad.target_emotion, sad.response.profile) == ("happy", "sad", None)
    return happy, sad


@pytest.mark.parametrize("which, text", [(0, HAPPY), (1, SAD)])
def test_meta_target_text_is_the_block_after_its_opening(tiny_tokenizer, which, text):
    s, tok = samples()[which], tiny_tokenizer
    ids = target_ids(s, tok, LABELS, "eerg", PromptConfig(max_target_length=200), target="meta")
    word, header, reply = text.split("\n")[0], text[text.index("\n"):text.index("回复：") + 3], text.split("回复：")[1]
    assert ids == tok.encode(word) + tok.encode(header) + tok.encode(reply) + [tok.eos_id]
    assert tok.decode(ids[:-1]) == text
    enc = encode_sample(s, "", tok, LABELS, "eerg", 0, PromptConfig(max_target_length=200), target="meta")
    prompt = enc["input_ids"][:len(enc["input_ids"]) - len(ids)]
    assert prompt == encode_prompt(s, "", tok, LABELS, "eerg", 0, PromptConfig(), target="meta")["input_ids"]
    assert prompt[-len(tok.encode(TAIL + "情绪：")):] == tok.encode(TAIL + "情绪：")  # the block's opening
    head = tok.prefix_ids() + tok.encode(HEAD.format(n=1))
    assert prompt[len(head):len(head) + len(tok.encode(instruction("eerg", LABELS, "meta")))] == \
        tok.encode(instruction("eerg", LABELS, "meta"))
    assert "性别、年龄、语气" in instruction("eerg", LABELS, "meta")
    assert enc["labels"][-len(ids):] == ids and set(enc["labels"][:-len(ids)]) == {-100}


def test_the_default_target_is_unchanged(tiny_tokenizer):
    s, tok = samples()[0], tiny_tokenizer
    plain = target_ids(s, tok, LABELS, "eerg", PromptConfig(max_target_length=200))
    assert plain == tok.encode("高兴") + tok.encode("\n太好了，真为你高兴！") + [tok.eos_id]
    assert encode_prompt(s, "", tok, LABELS, "eerg", 0, PromptConfig())["input_ids"][-len(tok.encode(TAIL)):] == tok.encode(TAIL)
    assert target_ids(s, tok, LABELS, "rep", PromptConfig(), target=run_target("rep", "meta")) == tok.encode("高兴")


def test_the_reply_is_cut_to_fit_and_a_too_small_length_is_one_line(tiny_tokenizer):
    s, tok = samples()[0], tiny_tokenizer
    fixed = len(tok.encode("高兴")) + len(tok.encode(HAPPY[2:HAPPY.index("回复：") + 3]))
    cut = target_ids(s, tok, LABELS, "eerg", PromptConfig(max_target_length=fixed + 3), target="meta")
    assert len(cut) == fixed + 3 and cut[-1] == tok.eos_id and cut[fixed:-1] == tok.encode("太好了，真为你高兴！")[:2]
    with pytest.raises(ElmdError, match=r"prompt.max_target_length=\d+ leaves no room"):
        target_ids(s, tok, LABELS, "eerg", PromptConfig(max_target_length=fixed), target="meta")


def test_run_target_and_the_config_field():
    from elmd.config import load_config

    assert (run_target("rep", "meta"), run_target("eerg", "meta"), run_target("eerg", "reply")) == \
        ("emotion", "meta", "emotion_response")
    assert load_config("tiny").train.target == "reply"
    with pytest.raises(ConfigError, match="train.target"):
        load_config("tiny", ["train.target=block"])


def test_the_meta_runs_tokenizer_has_pieces_for_the_block(meta_run):
    from elmd.models.tokenizer import ChatGLMTokenizer

    tok = ChatGLMTokenizer(meta_run.eerg / "tokenizer.model")
    assert any(p.name.endswith("-meta.model") for p in meta_run.folder.glob("tiny_tokenizer-*"))
    newline = tok.sp.piece_to_id("<0x0A>")
    assert not [i for i in tok.encode(HAPPY + SAD) if tok.sp.is_byte(i) and i != newline]  # writable, not banned


def test_a_meta_run_parses_every_output_or_counts_it(meta_run, tmp_path):
    """What a 6-epoch tiny model writes is not asserted to parse (it does not learn the block in
    seconds); what is: the emotion line opens every output, each row carries the strict parse's
    verdict, a failure leaves no response, and the counts in the meta add up to the rows."""
    from elmd.evaluation.generate import generate_file

    out = tmp_path / "preds.jsonl"
    meta = generate_file(meta_run.eerg, meta_run.test, out, progress=False)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and all(isinstance(r["meta"]["ok"], bool) for r in rows)
    for r in rows:
        assert r["generated"].split("\n")[0] == LABELS.word(r["emotion_pred"])
        assert (r["response"] != "") == r["meta"]["ok"]
        if not r["meta"]["ok"]:
            assert r["meta"]["error"] and r["response"] == ""
    mp = meta["meta_parse"]
    assert mp["parsed"] == sum(r["meta"]["ok"] for r in rows) and mp["parsed"] + mp["failed"] == 4
    assert len(mp["errors"]) == mp["failed"] and mp["parse_rate"] == mp["parsed"] / 4
    from elmd.evaluation.evaluate import evaluate_file, format_summary

    report = evaluate_file(out, tmp_path / "eval", progress=False)
    assert {k: report["heads"]["meta"][k] for k in ("parsed", "failed")} == {"parsed": mp["parsed"], "failed": mp["failed"]}
    assert f"meta-response: {mp['parsed']} parsed, {mp['failed']} failed" in format_summary(report)


def _forced(pipe, text: str):
    """decode_batch stand-in: every row 'generates' ``text`` (+ eos)."""
    from elmd.inference.decoding import Decoded

    ids = pipe.tokenizer.encode(text) + [pipe.tokenizer.eos_id]

    def decode_batch(batch, settings, gens, **kw):
        n = batch["input_ids"].shape[0]
        return Decoded(torch.tensor([ids] * n), [len(ids)] * n), None

    return decode_batch


def test_the_parsed_block_reaches_extras_and_the_avatar_voice(meta_run, tmp_path, monkeypatch):
    from elmd.inference import load

    pipe = load(meta_run.eerg, heads=["avatar"], media_dir=tmp_path, overrides=["avatar.size=64", "avatar.fps=10"])
    assert pipe.target == "meta"
    monkeypatch.setattr(pipe, "decode_batch", _forced(pipe, HAPPY))
    reply = pipe.respond("你猜怎么着？", responder="乙")
    assert reply.extras["meta"] == {"ok": True, "emotion": "happy", "scene": "家里", "act": "观点",
                                    "profile": {"gender": "male", "age": "elderly"}, "style": "轻快"}
    assert (reply.emotion, reply.response) == ("happy", "太好了，真为你高兴！")
    avatar = reply.extras["avatar"]
    assert (avatar["gender"], avatar["age"], avatar["profile_source"]) == ("male", "elderly", "meta")
    said = json.loads((tmp_path / avatar["video"]).parent.joinpath("meta.json").read_text(encoding="utf-8"))
    assert said["speech"]["voice"] == "cmn+grandpa" and (said["style"], said["speech"]["rate"]) == ("轻快", round(190 * 0.85))

    monkeypatch.setattr(pipe, "decode_batch", _forced(pipe, HAPPY.replace("语气：轻快", "语气：低沉")))
    calm = pipe.respond("你猜怎么着？", responder="乙")  # the parsed 语气 sets the prosody, the face stays happy
    said = json.loads((tmp_path / calm.extras["avatar"]["video"]).parent.joinpath("meta.json").read_text(encoding="utf-8"))
    assert (calm.extras["avatar"]["emotion"], said["style"], said["speech"]["rate"]) == ("happy", "低沉", round(130 * 0.85))

    monkeypatch.setattr(pipe, "decode_batch", _forced(pipe, "高兴\n性别：未知\n回复：好"))
    bad = pipe.respond("你猜怎么着？", responder="乙")
    assert bad.extras["meta"]["ok"] is False and "性别" in bad.extras["meta"]["error"]
    assert bad.response == "" and "error" in bad.extras["avatar"]  # nothing spoken for an unparsed block
