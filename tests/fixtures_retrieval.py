"""Session fixtures of the retrieval tests: tiny hand-made dialogue JSONL, a builtin encoder, an index."""

from __future__ import annotations

import json
import random

import pytest

# Phrases that signal an emotion lexically, and neutral filler; dialogues alternate two speakers.
PHRASES = {
    "happy": ["太好了我们赢了", "真开心见到你", "哈哈这个礼物我很喜欢", "今天好高兴啊"],
    "anger": ["你给我滚出去", "气死我了别再说了", "你凭什么骂我", "我受够你了"],
    "sad": ["我好难过想哭", "他离开我了心里很痛", "一个人好孤单", "我真的很伤心"],
    "neutral": ["明天几点上班", "我们去吃饭吧", "这份文件放桌上", "下午开会讨论方案"],
    "surprise": ["什么你说真的吗", "天哪怎么会这样", "居然是你啊"],
}


def make_dialogues(n: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    emotions = sorted(PHRASES)
    out = []
    for d in range(n):
        turns = []
        for t in range(6):
            emo = rng.choice(emotions)
            text = rng.choice(PHRASES[emo]) + rng.choice(["", "呀", "吧", "啊", "了"])
            turns.append({"speaker": "AB"[t % 2], "text": text, "emotion": emo})
        out.append({"dialogue_id": f"{prefix}{d:03d}", "series": "s1", "background": "", "turns": turns})
    return out


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def retrieval_data(tmp_path_factory):
    """{'train', 'valid', 'test'} paths of tiny canonical JSONL splits (disjoint dialogue ids)."""
    root = tmp_path_factory.mktemp("retrieval_data")
    return {
        "train": write_jsonl(root / "train.jsonl", make_dialogues(30, 1, "tr")),
        "valid": write_jsonl(root / "valid.jsonl", make_dialogues(6, 2, "va")),
        "test": write_jsonl(root / "test.jsonl", make_dialogues(6, 3, "te")),
    }


@pytest.fixture(scope="session")
def train_texts(retrieval_data):
    from elmd.data.jsonl import read_samples

    return [s.utterance.text for s in read_samples(retrieval_data["train"])]


@pytest.fixture(scope="session")
def saved_builtin(tmp_path_factory, train_texts):
    """Path of a saved, untrained builtin encoder (64-d) built from the training texts."""
    from retrieval.encoder import load_retriever

    r = load_retriever("builtin:char", texts=train_texts, device="cpu", dim=64, vocab=300, seed=0)
    return str(r.save(tmp_path_factory.mktemp("enc") / "builtin"))


@pytest.fixture(scope="session")
def tiny_cfg():
    from elmd.config import load_config

    return load_config("tiny", ["retrieval.builtin_dim=64", "retrieval.builtin_vocab=300", "retrieval.device=cpu",
                                "index.use_gpu=false"])


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, tiny_cfg, retrieval_data, saved_builtin):
    """Index folder of the training split built with ``saved_builtin``."""
    from retrieval.build import build_index

    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(tiny_cfg, retrieval_data["train"], str(out), saved_builtin, progress=False)
    return str(out)


@pytest.fixture(scope="session")
def tiny_st_bert(tmp_path_factory, train_texts):
    """A local sentence-transformers folder shaped like m3e-base (BERT + mean pooling, no Normalize),
    random-initialised and tiny (32-d, 1 layer), with a character vocabulary of the training texts."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({c for t in train_texts for c in t})
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file here (every character became [UNK]): pass the vocabulary itself
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tok.unk_token_id not in tok(train_texts[0], add_special_tokens=False)["input_ids"]
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(root / "hf")
    tok.save_pretrained(root / "hf")
    st = SentenceTransformer(modules=[Transformer(str(root / "hf"), max_seq_length=32), Pooling(32, "mean")], device="cpu")
    st.save(str(root / "st"), create_model_card=False)
    return str(root / "st")
