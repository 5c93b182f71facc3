"""The builtin CPU stand-in for m3e-base: a sub-word static-embedding encoder built in-process.

Nothing is downloaded. From the training texts we

1. train a byte-pair-encoding tokenizer (``tokenizers``) whose merges are limited to two
   characters: every character seen becomes a token and frequent character bigrams (most Chinese
   words: 什么 / 怎么 / 你们 / 气死) become merged tokens, up to ``vocab`` entries; unseen
   characters map to ``[UNK]``. (Longer merges would hide shared parts: 气死我了 vs 气死.)
2. give every token the embedding ``idf(t) * g_t`` with ``g_t ~ N(0, I_d / d)`` fixed by the seed
   (``[UNK]`` gets the zero vector).

The encoder is a sentence-transformers ``StaticEmbedding`` (mean of the token embeddings, no
normalisation module), saved and loaded like any other sentence-transformers folder. The mean of
``idf(t) g_t`` over a text is a Johnson-Lindenstrauss random projection of the text's TF-IDF
bag-of-tokens vector, so **before any training** the cosine of two embeddings approximates their
TF-IDF cosine: the untrained encoder is a lexical retriever (it finds utterances sharing rare
characters and words), a meaningful baseline that contrastive training (ERT/SSC) then reshapes.

m3e-base (768-d, mean pooling) replaces it in production: ``--encoder /models/m3e-base``.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

BUILTIN = "builtin:char"
UNK = "[UNK]"


def is_builtin(spec: str) -> bool:
    return str(spec).startswith("builtin:")


def train_tokenizer(texts: list[str], vocab: int, max_len: int = 2) -> Tokenizer:
    """A BPE tokenizer over characters trained on ``texts``, merges limited to ``max_len`` characters
    (punctuation and spaces split words)."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=[UNK], show_progress=False,
                                  max_token_length=max_len)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def idf_weights(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    """Smoothed inverse document frequency ``log((N + 1) / (df + 1)) + 1`` per token id; 0 for [UNK]."""
    df: Counter[int] = Counter()
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        df.update(set(enc.ids))
    n = len(texts)
    idf = np.array([math.log((n + 1) / (df.get(i, 0) + 1)) + 1 for i in range(tok.get_vocab_size())], dtype=np.float32)
    idf[tok.token_to_id(UNK)] = 0.0
    return idf


def build_builtin_encoder(texts: list[str], dim: int = 256, vocab: int = 8000, seed: int = 42, max_len: int = 2):
    """The untrained builtin encoder for ``texts`` (a ``SentenceTransformer``; see module docstring)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("the builtin encoder needs training texts")
    tok = train_tokenizer(texts, vocab, max_len)
    idf = idf_weights(tok, texts)
    gen = torch.Generator().manual_seed(seed)
    weights = torch.randn(tok.get_vocab_size(), dim, generator=gen) / math.sqrt(dim)
    weights *= torch.from_numpy(idf)[:, None]
    return SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)], device="cpu")
