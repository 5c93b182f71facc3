"""Model presets (``llm.preset``): ``tiny`` (random init, CPU seconds) and ``chatglm2-6b`` (paper Sec. 4.3).

* ``tiny``: a 2-layer GLM with ChatGLM2's architecture flags and a SentencePiece tokenizer trained
  in-process on the training split's texts, cached as ``tiny_tokenizer-<hash>.model`` beside
  ``data.train`` (the hash is the train file's content, so a re-prepared split retrains it) (or read from ``llm.tokenizer`` when set). Weights are a seeded random init, so
  the same model is rebuilt every run — or, when ``llm.path`` is set, the GLM pre-trained by
  `elmd lm pretrain` (:mod:`elmd.training.lm_pretrain`), loaded like ChatGLM2-6B's with its
  ``tokenizer.model`` (``llm.tokenizer``, else ``llm.path/tokenizer.model``).
* ``chatglm2-6b``: converted weights from ``llm.path`` (``elmd convert chatglm2``) and ChatGLM2's
  ``tokenizer.model`` (``llm.tokenizer``, else ``llm.path/tokenizer.model``). Nothing is downloaded:
  a missing folder stops at once with what to download and where to put it
  (:func:`check_preset`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import torch

from elmd.errors import ConfigError, ElmdError
from elmd.io import file_sha256
from elmd.models.config import LLMConfig
from elmd.models.elmd_model import ELMDModel
from elmd.models.glm import load_glm, random_glm, resolve_dtype, tiny_config
from elmd.models.tokenizer import ChatGLMTokenizer, train_tiny_tokenizer

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

PRESETS = ("tiny", "chatglm2-6b")
TINY_TOKENIZER = "tiny_tokenizer-{hash}.model"
TINY_VOCAB = 2000
"""The tiny tokenizer's vocabulary when the data needs no more (its cache name then has no size)."""


def tiny_vocab_size(texts: list[str], requested: int = 0) -> int:
    """``requested`` when > 0, else the vocabulary the texts need (see ``llm.tiny_vocab_size``).

    SentencePiece with character coverage 1.0 needs a piece per distinct character, plus its 256
    byte-fallback pieces and the 3 control pieces; the template's strings are added here too."""
    if requested > 0:
        return requested
    from elmd.models.prompt import template_strings

    chars = {c for t in list(texts) + template_strings() for c in t if not c.isspace()}
    return max(TINY_VOCAB, len(chars) + 256 + 3 + 500)


def _download_hint(llm: LLMConfig) -> str:
    src = str(Path(llm.tokenizer).parent) if llm.tokenizer else "/models/chatglm2-6b"
    out = llm.path or "/models/chatglm2-6b-hf"
    return (f"download THUDM/chatglm2-6b yourself (git lfs clone https://huggingface.co/THUDM/chatglm2-6b {src}), "
            f"convert it with `elmd convert chatglm2 --src {src} --out {out}` and set llm.path={out} "
            f"llm.tokenizer={src}/tokenizer.model")


def check_preset(cfg: ELMDConfig) -> None:
    """Fail at once (ElmdError) when a preset's weights are not on disk. ``cfg``: ELMDConfig."""
    llm = cfg.llm
    if llm.preset not in PRESETS:
        raise ConfigError(f"unknown llm.preset '{llm.preset}' — choose one of {PRESETS}")
    resolve_dtype(llm.dtype)
    if llm.preset == "chatglm2-6b":
        path = Path(llm.path) if llm.path else None
        if path is None or not (path / "config.json").exists():
            raise ElmdError(f"llm.path '{llm.path}' holds no converted ChatGLM2-6B — {_download_hint(llm)}")
        if not _tokenizer_file(llm).exists():
            raise ElmdError(f"tokenizer '{_tokenizer_file(llm)}' not found — it ships with THUDM/chatglm2-6b; {_download_hint(llm)}")
        vision = cfg.vision
        if vision.use_video and not getattr(vision, "feature_cache", "") and not (vision.path and Path(vision.path).exists()):
            raise ElmdError(f"vision.path '{vision.path}' not found — download Salesforce/blip2-opt-2.7b (or THUDM/visualglm-6b) "
                            "yourself with git lfs, put it in a local folder and set vision.path to it (or vision.use_video=false)")
    elif llm.path:  # a pre-trained tiny LM (`elmd lm pretrain --out DIR`)
        if not (Path(llm.path) / "config.json").exists():
            raise ElmdError(f"llm.path '{llm.path}' holds no pre-trained tiny LM (no config.json) — run `elmd lm pretrain "
                            f"--data runs/sample/data/train.jsonl --out {llm.path}` or leave llm.path empty for the random one")
        if not _tokenizer_file(llm).exists():
            raise ElmdError(f"tokenizer '{_tokenizer_file(llm)}' not found — set llm.tokenizer to the tokenizer.model "
                            "saved beside the pre-trained tiny LM")
    elif llm.tokenizer and not Path(llm.tokenizer).exists():
        raise ElmdError(f"llm.tokenizer '{llm.tokenizer}' not found — leave it empty to train the tiny tokenizer")


def _tokenizer_file(llm: LLMConfig) -> Path:
    return Path(llm.tokenizer) if llm.tokenizer else Path(llm.path) / "tokenizer.model"


def tiny_tokenizer(texts, cache_file: str | Path, vocab_size: int = TINY_VOCAB) -> ChatGLMTokenizer:
    """The tiny SentencePiece tokenizer: read from ``cache_file``, trained on ``texts`` when absent."""
    cache_file = Path(cache_file)
    if not cache_file.exists():
        texts = list(texts() if callable(texts) else texts)
        if not texts:
            raise ElmdError(f"{cache_file}: no texts to train the tiny tokenizer on — prepare data first (`elmd data prepare`)")
        from elmd.models.prompt import template_strings

        train_tiny_tokenizer(texts, cache_file, vocab_size, template_strings())
    return ChatGLMTokenizer(cache_file)


def load_tokenizer(cfg: ELMDConfig) -> ChatGLMTokenizer:
    """The preset's tokenizer (tiny: cached beside ``data.train``, trained on its texts when absent)."""
    check_preset(cfg)
    if cfg.llm.preset == "chatglm2-6b" or cfg.llm.tokenizer or cfg.llm.path:
        return ChatGLMTokenizer(_tokenizer_file(cfg.llm))
    train = Path(cfg.data.train)
    if not train.exists():
        raise ElmdError(f"{train}: data.train not found — run `elmd data prepare` first or set data.train")
    texts = _dialogue_texts(train)
    meta = cfg.train.target == "meta"  # the meta-response block's words get pieces (its own cached tokenizer)
    if meta:
        from elmd.data.meta_response import meta_strings
        from elmd.models.prompt import INSTRUCTIONS

        texts += meta_strings() + [INSTRUCTIONS["meta"]]
    size = tiny_vocab_size(texts, cfg.llm.tiny_vocab_size)
    key = file_sha256(train)[:12] + ("" if size == TINY_VOCAB else f"-v{size}") + ("-meta" if meta else "")
    return tiny_tokenizer(texts, train.parent / TINY_TOKENIZER.format(hash=key), size)


def _dialogue_texts(path: Path) -> list[str]:
    from elmd.data.jsonl import read_dialogues

    dialogues = read_dialogues(path, resolve_videos=False)
    return [t.text for d in dialogues for t in d.turns] + [d.background for d in dialogues if d.background]


def load_llm(cfg: ELMDConfig, tokenizer: ChatGLMTokenizer) -> torch.nn.Module:
    """The frozen-to-be ``GlmForCausalLM`` of the preset, in ``llm.dtype``, in eval mode."""
    check_preset(cfg)
    dtype = resolve_dtype(cfg.llm.dtype)
    if cfg.llm.preset == "tiny" and not cfg.llm.path:
        return random_glm(tiny_config(tokenizer.vocab_size, tokenizer.pad_id, tokenizer.eos_id), seed=0, dtype=dtype)
    model = load_glm(cfg.llm.path, dtype)
    if model.config.vocab_size < tokenizer.vocab_size:
        own = "ChatGLM2-6B's own tokenizer.model" if cfg.llm.preset == "chatglm2-6b" else "the tokenizer.model saved beside it"
        raise ElmdError(f"{_tokenizer_file(cfg.llm)}: {tokenizer.vocab_size} ids but the model at {cfg.llm.path} has "
                        f"{model.config.vocab_size} — use {own}")
    return model


def build_elmd_model(cfg: ELMDConfig, tokenizer: ChatGLMTokenizer, q_dim: int) -> ELMDModel:
    """Frozen LLM + a fresh VideoProjector (q_dim -> hidden) seeded with ``train.seed``."""
    from elmd.models.pooling import VideoProjector

    llm = load_llm(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        projector = VideoProjector(q_dim, llm.config.hidden_size)
    return ELMDModel(llm, projector)
