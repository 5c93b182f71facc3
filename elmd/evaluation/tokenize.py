"""Tokenisation used by the response metrics (paper Sec. 5.1 / Table 2 evaluation).

Two tokenisations, each named in ``report.json`` next to the scores it produced:

* **characters** (:func:`chars`): every non-whitespace character of the text is one token
  ("我很高兴!" -> 我 很 高 兴 !). Used by BLEU-2/4, as in ChatGLM2's ``ptuning/main.py``
  (which calls ``list(text)``; we additionally drop whitespace characters).
* **jieba words** (:func:`words`): ``jieba.lcut(text)`` in its default mode (accurate mode, HMM
  on, the dictionary shipped inside the jieba package), with whitespace-only tokens dropped.
  Used by METEOR, ROUGE-1/L and Dist-1/2. Dropping whitespace tokens gives the same tokens that
  ChatGLM2's script ends up with after ``' '.join(jieba.cut(text))`` is split on spaces by
  rouge_chinese.

jieba is loaded once per process into a private :class:`jieba.Tokenizer` (so words that other
code adds to the global jieba dictionary cannot change the scores) with its log output
silenced; nothing is downloaded.
"""

from __future__ import annotations

import logging
import threading

_LOCK = threading.Lock()
_TOKENIZER = None

CHARS_DOC = "characters: every non-whitespace character is a token"
WORDS_DOC = "jieba words: jieba.lcut(text) (default dictionary, accurate mode, HMM on), whitespace tokens dropped"


def chars(text: str) -> list[str]:
    """Non-whitespace characters of ``text``."""
    return [c for c in text if not c.isspace()]


def words(text: str) -> list[str]:
    """jieba words of ``text`` without whitespace tokens."""
    if not text or text.isspace():
        return []
    return [w for w in _jieba().lcut(text) if w.strip()]


def _jieba():
    """The process-wide private jieba tokenizer, initialised quietly on first use."""
    global _TOKENIZER
    if _TOKENIZER is None:
        with _LOCK:
            if _TOKENIZER is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)  # silences "Building prefix dict ..." on stderr
                tok = jieba.Tokenizer()  # default dictionary shipped with the package
                tok.initialize()
                _TOKENIZER = tok
    return _TOKENIZER
