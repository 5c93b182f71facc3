"""Settings of the tiny LM's pre-training (`elmd lm pretrain`, :mod:`elmd.training.lm_pretrain`).

The section ``lm_pretrain:`` of a config. Every field decides the weights, so all of them go into
the output's cache key (an output with the same inputs and settings is reused).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LMPretrainConfig:
    """A small GLM (ChatGLM2's architecture) pre-trained as a causal LM on train-split dialogues."""

    layers: int = 4
    """Decoder layers (ChatGLM2-6B: 28)."""
    hidden: int = 256
    """Hidden size (ChatGLM2-6B: 4096)."""
    heads: int = 8
    """Attention heads; head_dim = hidden / heads (rotary on its first half, interleaved)."""
    kv_heads: int = 2
    """Key/value groups of multi-query attention (ChatGLM2: 2); must divide heads."""
    intermediate: int = 704
    """SwiGLU inner size (ChatGLM2-6B: 13696, about 3.3 x hidden)."""
    vocab_size: int = 0
    """SentencePiece pieces; 0 = sized to the data (elmd.models.presets.tiny_vocab_size)."""
    seq_len: int = 256
    """Tokens per packed training block (whole rows are packed; a longer row is cut)."""
    batch_size: int = 16
    """Blocks per optimiser step."""
    lr: float = 3.0e-3
    """AdamW peak learning rate (linear warm-up, cosine decay to 10 %)."""
    warmup: int = 30
    """Warm-up steps."""
    weight_decay: float = 0.1
    """AdamW weight decay (not on norms and biases)."""
    epochs: int = 4
    """Passes over the training rows (when max_tokens is 0)."""
    max_tokens: int = 0
    """Train for this many block tokens instead (steps = max_tokens / (batch_size x seq_len), however
    many epochs that is); 0 = epochs decide."""
    heldout_share: float = 0.05
    """Share of the train files' dialogues kept out of training for the held-out loss (by dialogue)."""
    prompt_share: float = 0.25
    """Share of the samples also written as stage eerg's six-part prompt (no video) followed by
    `emotion word \\n reply eos`, loss on the reply only (0 = plain dialogue text only). Such a row
    costs ~10x the tokens of its reply, so a share well below 1 buys the format for little time."""
    emotion_loss: bool = False
    """In prompt rows, also predict the emotion word (False: the emotion stays for rep/eerg to
    decide from the video; the LM learns only to write a reply that fits a given emotion)."""
    video_share: float = 0.5
    """Share of the prompt rows that also carry a video span of ``video_tokens`` positions holding the
    reply emotion word's tokens, with the loss on the emotion word: a stand-in for the visual-language
    alignment pre-training (BLIP-2 / VisualGLM) that lets a real LLM read its visual tokens as
    word-like input. Stage rep then learns a Linear that makes video features look like the word
    of the emotion they show (0 = no such rows: a frozen tiny LM then ignores the video tokens and
    rep cannot beat the label prior, BENCHMARKS.md "eerg keeps rep's emotion")."""
    video_tokens: int = 36
    """Positions of that span: the prompt's video tokens, m + Q (the tiny preset: 4 frames + 32 queries)."""
    eval_every: int = 50
    """Steps between held-out evaluations (also evaluated at the end)."""
    checkpoint_every: int = 100
    """Steps between resumable checkpoints (0 = none)."""
    seed: int = 0
    """Seeds the init, the held-out split, the demonstrations and the row order."""

    def validate(self, prefix: str = "lm_pretrain") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import bad_value, check_range

        for key in ("layers", "hidden", "heads", "kv_heads", "intermediate", "batch_size", "epochs", "eval_every"):
            check_range(prefix, self, key, 1)
        check_range(prefix, self, "seq_len", 16)
        check_range(prefix, self, "vocab_size", 0)
        check_range(prefix, self, "lr", 0, lo_open=True)
        for key in ("warmup", "max_tokens", "checkpoint_every", "seed"):
            check_range(prefix, self, key, 0)
        check_range(prefix, self, "weight_decay", 0)
        check_range(prefix, self, "heldout_share", 0, 0.5, lo_open=True)
        check_range(prefix, self, "prompt_share", 0, 1)
        check_range(prefix, self, "video_share", 0, 1)
        check_range(prefix, self, "video_tokens", 1)
        if self.hidden % self.heads or (self.hidden // self.heads) % 4:
            bad_value(prefix, "heads", self.heads, f"a divisor of hidden={self.hidden} leaving a head_dim divisible by 4")
        if self.heads % self.kv_heads:
            bad_value(prefix, "kv_heads", self.kv_heads, f"a divisor of heads={self.heads}")
