"""The retriever: a sentence-transformers encoder, optionally followed by the SSC head (Sec. 3.3).

A *retriever folder* (written by ``elmd retriever train``) is a sentence-transformers model folder
(``SentenceTransformer(DIR)`` loads it) plus::

    ssc_head.safetensors   the SSC MLP (only when trained with SSC)
    emotion_head.safetensors  the emotion classifier P(emotion | u) (only when trained with one)
    emotion_tfidf.safetensors + emotion_tfidf.json
                           the TF-IDF emotion classifier of the query (:mod:`retrieval.tfidf`; only
                           when trained with one)
    retriever.json         s, dim, ert/ssc switches, base encoder, emotion labels, the tuned
                           search-time scoring, validation scores
    config.yaml, README.md the run config and a model card

:func:`load_retriever` accepts such a folder, any local sentence-transformers folder (production:
m3e-base, whose output is mean pooling without normalisation; the representation is normalised
here before any cosine) or ``builtin:char`` (the in-process stand-in of :mod:`retrieval.builtin`,
built from the given training texts). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from elmd.errors import ElmdError
from elmd.io import atomic_write_json, file_sha256
from retrieval.builtin import BUILTIN, UNK, build_builtin_encoder, is_builtin
from retrieval.ssc import SSCHead, search_representation
from retrieval.tfidf import VOCAB_FILE, WEIGHTS_FILE, TfidfClassifier

HEAD_FILE = "ssc_head.safetensors"
EMOTION_FILE = "emotion_head.safetensors"
INFO_FILE = "retriever.json"
# Files of a folder that are not part of the encoder's identity (fingerprint).
_NOT_WEIGHTS = {"README.md", "config.yaml", INFO_FILE, "train_log.jsonl"}
SOURCES = ("head", "tfidf", "mean")
"""Where P(emotion | q) comes from: the emotion head, the TF-IDF classifier, or the mean of both."""
CLASSIFIER_FILES = {"head": (EMOTION_FILE,), "tfidf": (WEIGHTS_FILE, VOCAB_FILE), "mean": (EMOTION_FILE, WEIGHTS_FILE, VOCAB_FILE)}


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def folder_fingerprint(path: str | Path) -> str:
    """sha256 over the relative names and contents of the folder's model files (weights, tokenizer,
    module configs); model cards, run configs and logs are left out."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if f.name in _NOT_WEIGHTS or any(part.startswith(".") for part in f.relative_to(path).parts):
            continue
        h.update(rel.encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return h.hexdigest()


class EmotionHead(nn.Module):
    """``P(emotion | u) = softmax(W z + b)`` on the unit search representation ``z`` (issue 13):
    a linear classifier trained jointly with ERT (+ SSC); its labels are ``info['emotion_labels']``."""

    def __init__(self, d: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(d, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)``."""
        return self.linear(z)


class Retriever(nn.Module):
    """Encoder ``e_u`` + optional SSC head + optional emotion head; :meth:`encode` gives unit search
    vectors (float32) and, when asked, ``P(emotion | text)``."""

    def __init__(self, st, head: SSCHead | None = None, info: dict | None = None, path: str | None = None,
                 emotion_head: EmotionHead | None = None, tfidf: TfidfClassifier | None = None):
        super().__init__()
        self.st, self.head, self.emotion_head = st, head, emotion_head
        self.tfidf = tfidf
        self.info = dict(info or {})
        self.path = path
        self._fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return int(self.st.get_embedding_dimension())

    @property
    def label(self) -> str:
        """Short description for tables: base encoder, '+ERT', '+SSC', '+ERT+SSC'."""
        if not self.info.get("trained_epochs"):
            return f"base ({self.info.get('base_encoder', self.path)})"
        return "".join(f"+{n.upper()}" for n in ("ert", "ssc") if self.info.get(n)) or "trained"

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            if self.path is None:
                raise ElmdError("this retriever is not saved, so it has no fingerprint — save it first")
            self._fingerprint = folder_fingerprint(self.path)
        return self._fingerprint

    def embed(self, texts: list[str], feats: dict | None = None) -> torch.Tensor:
        """Raw sentence embeddings ``e_u`` (B, d), with gradients (``feats``: ``st.preprocess(texts)``)."""
        feats = feats if feats is not None else self.st.preprocess(list(texts))
        dev = self.st.device
        feats = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}
        return self.st(feats)["sentence_embedding"].float()

    def represent(self, e: torch.Tensor) -> torch.Tensor:
        return search_representation(e, self.head)

    @property
    def emotion_labels(self) -> list[str]:
        return list(self.info.get("emotion_labels") or [])

    @property
    def classifiers(self) -> tuple[str, ...]:
        """The sources of P(emotion | q) this retriever has (subset of :data:`SOURCES`)."""
        have = {"head": self.emotion_head is not None, "tfidf": self.tfidf is not None}
        have["mean"] = have["head"] and have["tfidf"]
        return tuple(s for s in SOURCES if have[s])

    def emotion_probs(self, texts: list[str], source: str, head_probs: np.ndarray | None = None,
                      contexts: list[tuple[str, str]] | None = None) -> np.ndarray:
        """``P(emotion | text)`` ``(N, C)`` over :attr:`emotion_labels` from ``source``; ``head_probs``:
        the head's, when :meth:`encode` already computed them; ``contexts``: the queries' dialogue
        context (:func:`retrieval.tfidf.query_context`), read by a TF-IDF classifier fitted with it."""
        if source not in self.classifiers:
            raise ElmdError(f"emotion classifier '{source}' is not part of retriever {self.path} (it has: "
                            f"{', '.join(self.classifiers) or 'none'}) — retrain it with "
                            f"retrieval.emotion_classifier={source}, or pick one it has")
        if source != "tfidf" and head_probs is None:
            head_probs = self.encode(list(texts), with_probs=True)[1]
        if source == "head":
            return head_probs
        tf = self.tfidf.predict_proba(list(texts), contexts)
        return tf if source == "tfidf" else ((tf + head_probs) / 2).astype(np.float32)

    def classifier_fingerprint(self, source: str) -> str:
        """sha256 over the saved files of the classifier ``source`` (:data:`CLASSIFIER_FILES`)."""
        if self.path is None:
            raise ElmdError("this retriever is not saved, so its emotion classifier has no fingerprint — save it first")
        h = hashlib.sha256()
        for name in CLASSIFIER_FILES[source]:
            f = Path(self.path) / name
            h.update(name.encode() + b"\0" + (file_sha256(f).encode() if f.exists() else b"missing") + b"\n")
        return h.hexdigest()

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256, progress: bool = False, with_probs: bool = False,
               degenerate: np.ndarray | None = None):
        """Unit search vectors ``(N, D)`` float32 (inner product = cosine / mean block cosine); with
        ``with_probs`` also ``P(emotion | text)`` ``(N, C)`` from the emotion head (None without one).
        ``degenerate``: an ``(N,)`` bool array filled in with :meth:`degenerate` flags (from the same
        tokenisation, no second pass)."""
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch (less padding)
        width = self.represent(torch.zeros(1, self.dim, device=self.st.device)).shape[1]
        out = np.zeros((len(texts), width), dtype=np.float32)
        head = self.emotion_head if with_probs else None
        probs = np.zeros((len(texts), head.linear.out_features), np.float32) if head is not None else None
        starts = range(0, len(texts), batch_size)
        for i in tqdm(starts, desc="encode", unit="batch", disable=not progress, leave=False):
            idx = order[i : i + batch_size]
            feats = self.st.preprocess([texts[j] for j in idx])
            if degenerate is not None:
                degenerate[idx] = self._degenerate_features(feats, len(idx))
            z = self.represent(self.embed([], feats)).float()
            out[idx] = z.cpu().numpy()
            if head is not None:
                probs[idx] = torch.softmax(head(z), dim=-1).cpu().numpy()
        self.train(was_training)
        return (out, probs) if with_probs else out

    def degenerate(self, texts: list[str]) -> np.ndarray:
        """``(N,)`` bool: texts with no in-vocabulary token (empty, or only [UNK] / special tokens).
        Their embedding carries no content (one constant vector), so an index never returns them."""
        return self._degenerate_features(self.st.preprocess(list(texts)), len(texts))

    def _degenerate_features(self, feats: dict, n: int) -> np.ndarray:
        tok = getattr(self.st[0], "tokenizer", None)
        ids = feats.get("input_ids")
        if tok is None or ids is None:
            return np.zeros(n, dtype=bool)
        ids = ids.cpu().numpy()
        if "offsets" in feats:  # StaticEmbedding: flat ids + per-text offsets (EmbeddingBag)
            unk = tok.token_to_id(UNK) if hasattr(tok, "token_to_id") else tok.unk_token_id
            known = np.concatenate([[0], np.cumsum(ids != unk)])
            starts = feats["offsets"].cpu().numpy()
            ends = np.append(starts[1:], len(ids))
            return (known[ends] - known[starts]) == 0
        special = set(getattr(tok, "all_special_ids", []) or []) | {tok.unk_token_id}
        mask = feats["attention_mask"].cpu().numpy().astype(bool) if "attention_mask" in feats else np.ones_like(ids, bool)
        return ~(mask & ~np.isin(ids, list(special))).any(axis=1)

    def save(self, out: str | Path) -> Path:
        """Write the folder described in the module docstring (model card and config by the caller)."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.st.save(str(out), create_model_card=False)
        if self.head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD_FILE))
        if self.emotion_head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.emotion_head.state_dict().items()},
                      str(out / EMOTION_FILE))
        if self.tfidf is not None:
            self.tfidf.save(out)
        atomic_write_json(out / INFO_FILE, self.info)
        self.path, self._fingerprint = str(out), None
        return out


def load_retriever(spec: str, texts: list[str] | None = None, device: str = "auto", dim: int = 256,
                   vocab: int = 8000, seed: int = 42) -> Retriever:
    """A retriever folder, a local sentence-transformers folder, or ``builtin:char`` (needs ``texts``)."""
    device = resolve_device(device)
    if is_builtin(spec):
        if spec != BUILTIN:
            raise ElmdError(f"unknown builtin encoder '{spec}' — use '{BUILTIN}' or a local sentence-transformers folder")
        if not texts:
            raise ElmdError(f"'{BUILTIN}' is built from training texts — pass --data, or give a saved encoder folder")
        st = build_builtin_encoder(texts, dim=dim, vocab=vocab, seed=seed).to(device)
        return Retriever(st, info={"base_encoder": BUILTIN, "trained_epochs": 0, "ert": False, "ssc": False})
    path = Path(spec)
    if not path.is_dir():
        raise ElmdError(f"{spec}: encoder folder not found — give a local sentence-transformers folder "
                        f"(e.g. /models/m3e-base; nothing is downloaded) or '{BUILTIN}'")
    if not ((path / "modules.json").exists() or (path / "config.json").exists()):
        raise ElmdError(f"{spec}: not a sentence-transformers folder (no modules.json / config.json) — "
                        "point --encoder at the folder that holds the model files")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device=device, local_files_only=True)
    info = json.loads((path / INFO_FILE).read_text(encoding="utf-8")) if (path / INFO_FILE).exists() else {}
    info.setdefault("base_encoder", str(path))
    head = None
    if (path / HEAD_FILE).exists():
        from safetensors.torch import load_file

        head = SSCHead(int(st.get_embedding_dimension()), int(info.get("s", 4)))
        head.load_state_dict(load_file(str(path / HEAD_FILE)))
        head.to(device)
    emotion = None
    if (path / EMOTION_FILE).exists():
        from safetensors.torch import load_file

        weights = load_file(str(path / EMOTION_FILE))
        emotion = EmotionHead(weights["linear.weight"].shape[1], weights["linear.weight"].shape[0])
        emotion.load_state_dict(weights)
        emotion.to(device)
    tfidf = TfidfClassifier.load(path) if (path / WEIGHTS_FILE).exists() else None
    if tfidf is not None and emotion is not None and tfidf.labels != info.get("emotion_labels"):
        raise ElmdError(f"{path}: the TF-IDF classifier's labels {tfidf.labels} differ from retriever.json's "
                        f"emotion_labels {info.get('emotion_labels')} — retrain the retriever")
    if tfidf is not None:
        info.setdefault("emotion_labels", list(tfidf.labels))
    return Retriever(st, head, info, str(path), emotion, tfidf)
