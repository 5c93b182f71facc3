"""ChatGLM2-style tokenizer: special ids after the vocabulary, prefix, left padding, round template,
byte-fallback round trips, and the tiny model's cache."""

from __future__ import annotations

import pytest

from elmd.errors import ElmdError
from elmd.models.presets import tiny_tokenizer as build_tiny
from elmd.models.tokenizer import SPECIAL_TOKENS, ChatGLMTokenizer


def test_special_ids_follow_the_vocabulary_in_chatglm2_order(tiny_tokenizer):
    tok = tiny_tokenizer
    n = tok.sp.get_piece_size()
    # ChatGLM2: [MASK] 64789, [gMASK] 64790, [sMASK] 64791, sop 64792, eop 64793 after 64789 pieces
    assert SPECIAL_TOKENS == ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
    assert [tok.mask_id, tok.gmask_id, tok.special_ids["[sMASK]"], tok.sop_id, tok.eop_id] == [n, n + 1, n + 2, n + 3, n + 4]
    assert tok.vocab_size == n + 5
    assert (tok.eos_id, tok.pad_id) == (2, 0)
    assert tok.sp.id_to_piece(2) == "</s>" and tok.sp.id_to_piece(0) == "<unk>"


def test_every_input_starts_with_gmask_sop(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok.encode_input("你好")
    assert ids[:2] == [tok.gmask_id, tok.sop_id]
    assert ids[2:] == tok.encode("你好") and len(ids) > 2
    assert tok.decode(ids) == "你好"
    assert tok.decode(ids, skip_special=False) == "[gMASK]sop你好"


@pytest.mark.parametrize("text", [
    "哎，这不是李雷吗？好久不见！",
    "“引号”、《书名》；冒号：括号（）……——～",
    "龘靐齉 never seen 😀 \t two  spaces\n换行",
], ids=["dialogue", "punctuation", "unseen-chars"])
def test_decode_round_trips_with_byte_fallback(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text)
    assert all(0 <= i < tiny_tokenizer.n_words for i in ids)
    assert 0 not in ids  # never unk: unseen characters fall back to bytes
    assert tiny_tokenizer.decode(ids) == text


def test_batch_encode_pads_on_the_left(tiny_tokenizer):
    tok = tiny_tokenizer
    a, b = tok.encode("好"), tok.encode("这是什么味道？好恶心。")
    batch = tok.batch_encode(["好", "这是什么味道？好恶心。"])
    width = 2 + len(b)
    assert batch["input_ids"].shape == (2, width)
    pad = width - 2 - len(a)
    assert batch["input_ids"][0].tolist() == [0] * pad + [tok.gmask_id, tok.sop_id] + a
    assert batch["attention_mask"][0].tolist() == [0] * pad + [1] * (2 + len(a))
    assert batch["attention_mask"][1].tolist() == [1] * width


def test_round_template_is_chatglm2s(tiny_tokenizer):
    assert tiny_tokenizer.round_prompt("你好") == "[Round 1]\n\n问：你好\n\n答："
    assert tiny_tokenizer.round_prompt("嗯", n=3) == "[Round 3]\n\n问：嗯\n\n答："
    text = tiny_tokenizer.round_prompt("你好")
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


def test_tiny_tokenizer_is_cached_and_deterministic(tmp_path):
    texts = ["今天天气真好。", "你吃饭了吗？", "我们去公园散步吧。"] * 5
    a = build_tiny(texts, tmp_path / "a.model", vocab_size=400)
    b = build_tiny(texts, tmp_path / "b.model", vocab_size=400)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    again = build_tiny(lambda: pytest.fail("cached model was retrained"), tmp_path / "a.model")
    assert again.encode("你吃饭了吗？") == a.encode("你吃饭了吗？") == b.encode("你吃饭了吗？")
    with pytest.raises(ElmdError, match="no texts"):
        build_tiny([], tmp_path / "c.model")


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ElmdError, match="tokenizer.model not found"):
        ChatGLMTokenizer(tmp_path / "nope.model")
