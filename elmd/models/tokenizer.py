"""ChatGLM2's tokenizer: a SentencePiece model plus five special ids appended after its vocabulary.

ChatGLM2-6B's ``tokenizer.model`` holds the ordinary pieces 0..64788 (unk = pad = 0, bos 1,
eos 2); the special tokens ``[MASK] [gMASK] [sMASK] sop eop`` get the next ids (64789..64793).
Every model input starts with ``[gMASK] sop``; a target ends with eos; batches are padded on the
left with 0. One dialogue round is written ``"[Round n]\\n\\n问：{q}\\n\\n答："``.

For the tiny preset and the tests :func:`train_tiny_tokenizer` trains a small SentencePiece model
in-process with the same conventions (identity normalisation, byte fallback, unk 0 / bos 1 /
eos 2, specials appended after its vocabulary), so no code hard-codes 64790: ids are read from
the tokenizer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
import torch

from elmd.errors import ElmdError
from elmd.io import atomic_write_bytes

SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
ROUND_TEMPLATE = "[Round {n}]\n\n问：{q}\n\n答："


class ChatGLMTokenizer:
    """encode / decode / left-padded batch encoding over a SentencePiece model file."""

    def __init__(self, model_file: str | Path):
        path = Path(model_file)
        if not path.is_file():
            raise ElmdError(f"{path}: tokenizer.model not found — it ships with THUDM/chatglm2-6b (set llm.tokenizer to it)")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.n_words = self.sp.get_piece_size()
        self.special_ids = {tok: self.n_words + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.mask_id = self.special_ids["[MASK]"]
        self.gmask_id = self.special_ids["[gMASK]"]
        self.sop_id = self.special_ids["sop"]
        self.eop_id = self.special_ids["eop"]
        self.eos_id = self.sp.eos_id()
        self.pad_id = self.sp.unk_id()
        if self.eos_id < 0 or self.pad_id < 0:
            raise ElmdError(f"{path}: SentencePiece model lacks eos/unk ids — use ChatGLM2's tokenizer.model")
        self.added_ids: dict[str, int] = {}
        """Tokens a head appended after the LLM's vocabulary (e.g. ``[IMG1..r]``): name -> id (:meth:`add_tokens`)."""

    def add_tokens(self, names: list[str], ids: list[int]) -> list[int]:
        """Register a head's added tokens (ids past the LLM's vocabulary, :meth:`ELMDModel.attach_tokens`);
        :meth:`decode` drops them (or shows their names), :meth:`token_ids` finds them by name."""
        if len(names) != len(ids) or any(i < self.vocab_size for i in ids):
            raise ElmdError(f"added tokens need one id each, past the tokenizer's {self.vocab_size} ids; got {list(ids)[:4]}")
        self.added_ids.update(zip(names, map(int, ids)))
        return list(ids)

    def token_ids(self, names: list[str]) -> list[int]:
        """Ids of added tokens by name (an unknown name is an ElmdError)."""
        missing = [n for n in names if n not in self.added_ids]
        if missing:
            raise ElmdError(f"tokens {missing[:3]} were not added to this tokenizer (a run of the stage that adds them?)")
        return [self.added_ids[n] for n in names]

    @property
    def vocab_size(self) -> int:
        """Pieces + the five special tokens."""
        return self.n_words + len(SPECIAL_TOKENS)

    def prefix_ids(self) -> list[int]:
        """``[gMASK] sop``, put in front of every input."""
        return [self.gmask_id, self.sop_id]

    def encode(self, text: str) -> list[int]:
        """Plain piece ids of ``text`` (no specials)."""
        return list(self.sp.encode(text)) if text else []

    def encode_input(self, text: str) -> list[int]:
        """A model input: ``[gMASK] sop`` + pieces."""
        return self.prefix_ids() + self.encode(text)

    def decode(self, ids, skip_special: bool = True) -> str:
        """Text of ``ids``; special, pad and eos ids are dropped (or shown by name)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        names = {v: k for k, v in {**self.special_ids, **self.added_ids}.items()}
        out, run = [], []
        for i in ids:
            if i < self.n_words and not (skip_special and i in (self.pad_id, self.eos_id)):
                run.append(i)
                continue
            if run:
                out.append(self.sp.decode(run))
                run = []
            if not skip_special:
                out.append(names.get(i, f"<{i}>"))
        if run:
            out.append(self.sp.decode(run))
        return "".join(out)

    def batch_encode(self, texts: list[str], max_length: int = 0) -> dict[str, torch.Tensor]:
        """Inputs for ``texts`` (each with the prefix), left-padded with pad id to the longest.

        ``max_length`` > 0 keeps the last ``max_length`` tokens of each (the prefix is kept).
        """
        seqs = []
        for t in texts:
            ids = self.encode(t)
            if max_length > 0:
                ids = ids[-max(max_length - 2, 0):] if max_length > 2 else []
            seqs.append(self.prefix_ids() + ids)
        return left_pad(seqs, self.pad_id)

    def never_generated_ids(self, keep=()) -> list[int]:
        """Ids a reply never contains: byte-fallback pieces (except the newline between the emotion
        word and the reply), control and unknown pieces, and the special tokens; ``keep`` spares
        ids (e.g. a head's added tokens). Masking them keeps U+FFFD, control characters and broken
        UTF-8 fragments out of every generated text (a character outside the vocabulary then cannot
        be written, which the data-sized tiny vocabulary and ChatGLM2's 64k pieces make rare)."""
        newline = self.sp.piece_to_id("<0x0A>")
        out = [i for i in range(self.n_words)
               if (self.sp.is_byte(i) and i != newline) or self.sp.is_control(i) or self.sp.is_unknown(i)]
        out += [i for i in self.special_ids.values()]
        return [i for i in out if i not in set(keep) and i != self.eos_id]

    def round_prompt(self, query: str, n: int = 1) -> str:
        return ROUND_TEMPLATE.format(n=n, q=query)


def left_pad(seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` [B, T] with padding on the left."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        if s:
            ids[b, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[b, width - len(s):] = 1
    return {"input_ids": ids, "attention_mask": mask}


def train_tiny_tokenizer(texts: Iterable[str], out_file: str | Path, vocab_size: int = 2000,
                         extra_texts: Iterable[str] = ()) -> Path:
    """Train a small SentencePiece BPE model on ``texts`` with ChatGLM2's conventions; write it atomically.

    ``extra_texts`` (the prompt template's fixed strings, :func:`elmd.models.prompt.template_strings`)
    are added to the training text so that they get pieces.
    """
    lines = [t.replace("\n", " ").strip() for t in texts]
    lines = [t for t in lines if t] + list(extra_texts)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return atomic_write_bytes(out_file, buf.getvalue())
