"""Training the emotional retriever: L_r = lambda * L_e + 1/(s n_s) * sum L_c (Sec. 3.3, Alg. 1),
plus the emotion head's cross-entropy (issue 13).

Each epoch draws one group (anchor, positive, n_e - 1 negatives; :mod:`retrieval.groups`) per
labelled training utterance, encodes the ``B * (n_e + 1)`` texts with the sentence encoder, applies
the SSC head (Eq. 3) and the emotion head and minimises :class:`retrieval.losses.RetrievalLoss`
with AdamW. After each epoch the training samples are indexed and the validation utterances
searched: plain-cosine metrics, the emotion head's accuracy / macro-F1, and the best search-time
scoring (:func:`retrieval.tune.tune_scoring`, stored in retriever.json) are logged. The mean of
the head's valid accuracy and macro-F1 (cosine agreement@1 without an emotion head) selects the
best epoch, which is the one kept in the output folder with the scoring tuned for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from pathlib import Path

import numpy as np
import torch

from elmd.configio import save_config
from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.errors import ElmdError
from elmd.io import atomic_dir, atomic_write_jsonl, atomic_write_text
from retrieval.encoder import EmotionHead, Retriever, load_retriever
from retrieval.evaluate import evaluate_index
from retrieval.groups import sample_groups, usable_anchors
from retrieval.index import DemonstrationIndex
from retrieval.losses import EmotionLoss, RetrievalLoss, balanced_weights
from retrieval.metrics import accuracy_macro_f1
from retrieval.ssc import SSCHead, join_blocks
from retrieval.tune import objective, tune_scoring

if TYPE_CHECKING:  # annotations only: retrieval does not import the ELMD config at run time
    from elmd.config import ELMDConfig


def train_retriever(cfg: ELMDConfig, data: str, out: str, valid: str | None = None,
                    encoder: str | None = None, log=print) -> dict:
    """Train from ``cfg.retrieval`` and write the retriever folder ``out``; returns its info dict."""
    rc = cfg.retrieval
    rc.check()
    if rc.n_e < 1:
        raise ElmdError(f"retrieval.n_e must be >= 1 (one positive and n_e - 1 negatives), got {rc.n_e}")
    if rc.epochs > 0 and not (rc.ert or rc.ssc):
        raise ElmdError("both ERT and SSC are off, so there is nothing to train — drop --no-ert or --no-ssc, "
                        "or index the untrained encoder directly with `elmd index build --encoder`")
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    train = read_samples(data, labels, cfg.data.max_samples)
    valid_samples = read_samples(valid, labels, rc.max_valid) if valid else []
    torch.manual_seed(rc.seed)
    retriever = load_retriever(encoder or rc.encoder, texts=[s.utterance.text for s in train], device=rc.device,
                               dim=rc.builtin_dim, vocab=rc.builtin_vocab, seed=rc.seed)
    if not rc.ssc:
        retriever.head = None
    elif rc.epochs > 0 and retriever.head is None:  # a retriever folder with a head continues training it
        if retriever.dim % rc.s:
            raise ElmdError(f"embedding size {retriever.dim} is not divisible by retrieval.s={rc.s} — pick s dividing it")
        retriever.head = SSCHead(retriever.dim, rc.s).to(retriever.st.device)
    if not (rc.ert and rc.emotion_head):
        retriever.emotion_head = None
    elif rc.epochs > 0 and retriever.emotion_head is None:
        retriever.emotion_head = EmotionHead(retriever.represent(torch.zeros(1, retriever.dim)).shape[1], len(labels))
        retriever.emotion_head.to(retriever.st.device)
        retriever.info["emotion_labels"] = list(labels.ids)
    retriever.tfidf = None
    # --epochs 0 with emotion_classifier=tfidf: the untrained encoder + the TF-IDF emotion-aware scoring
    if rc.ert and rc.emotion_classifier != "head" and (rc.epochs > 0 or rc.emotion_classifier == "tfidf"):
        retriever.info.setdefault("emotion_labels", list(labels.ids))
        retriever.tfidf = _fit_tfidf(train, valid_samples, retriever.emotion_labels, rc, log)
    s = retriever.head.s if retriever.head is not None else rc.s
    retriever.info.update({"format": "elmd-retriever/2", "dim": retriever.dim, "s": s, "n_e": rc.n_e,
                           "tau": rc.tau, "lam": rc.lam, "ert": rc.ert and rc.epochs > 0,
                           "ssc": rc.ssc and rc.epochs > 0, "negatives": rc.negatives,
                           "emotion_head": retriever.emotion_head is not None, "class_balanced": rc.class_balanced,
                           "emotion_weight": rc.emotion_weight, "trained_epochs": 0, "best_epoch": 0,
                           "emotion_classifier": rc.emotion_classifier if retriever.tfidf is not None else "head"})
    if retriever.tfidf is not None:
        retriever.info["tfidf"] = {k: v for k, v in retriever.tfidf.info.items() if k != "grid"} | {
            "wb": retriever.tfidf.wb, "ngram": list(retriever.tfidf.ngram)}
    retriever.info.pop("scoring", None)
    history = []
    if valid_samples:
        history.append({"epoch": 0, **_validate(retriever, train, valid_samples, rc)})
        log(f"epoch 0 (untrained): {_fmt(history[-1])}")
    if rc.epochs <= 0:
        retriever.info["valid"] = history[-1] if history else {}
        if history and "scoring" in history[-1]:
            retriever.info["scoring"] = history[-1]["scoring"]
        _save(retriever, cfg, out, history)
        return retriever.info
    _fit(retriever, train, valid_samples, cfg, out, history, log)
    return retriever.info


def _fit(retriever: Retriever, train, valid_samples, cfg: ELMDConfig, out: str, history: list, log) -> None:
    from tqdm.auto import tqdm

    rc = cfg.retrieval
    items = [s for s in train if s.utterance.emotion is not None]
    texts, emotions = [s.utterance.text for s in items], [s.utterance.emotion for s in items]
    anchors = usable_anchors(emotions)
    if len(anchors) == 0 or len(set(emotions)) < 2:
        raise ElmdError(f"{len(items)} labelled utterances in {len(set(emotions))} emotions: ERT needs two "
                        "emotions with at least two utterances each — check the training data")
    names = retriever.emotion_labels or sorted(set(emotions))
    ids = torch.tensor([names.index(e) if e in names else -100 for e in emotions])
    extra = _extra_turns(train, names) if rc.emotion_all_turns and retriever.emotion_head is not None else ([], [])
    emo_loss = None
    if retriever.emotion_head is not None:
        every = torch.cat([ids[ids >= 0], torch.tensor(extra[1], dtype=torch.long)])
        emo_loss = EmotionLoss(balanced_weights(every, len(names)) if rc.class_balanced else None)
    loss_fn = RetrievalLoss(rc.tau, rc.lam, rc.ert, rc.ssc, in_batch=rc.negatives == "batch", emotion=emo_loss,
                            mu=rc.emotion_weight)
    groups_ = [{"params": [p for p in retriever.st.parameters() if p.requires_grad], "lr": rc.lr}]
    for head, lr in ((retriever.head, rc.head_lr), (retriever.emotion_head, rc.emotion_lr)):
        if head is not None:
            groups_.append({"params": list(head.parameters()), "lr": lr})
    opt = torch.optim.AdamW(groups_, weight_decay=rc.weight_decay)
    rng = np.random.default_rng(rc.seed)
    best = -math.inf
    for epoch in range(1, rc.epochs + 1):
        retriever.train()
        groups = sample_groups(rng.permutation(anchors), emotions, rc.n_e, rng)
        bar = tqdm(range(0, len(groups), rc.batch_size), desc=f"epoch {epoch}/{rc.epochs}", unit="batch")
        sums: dict[str, float] = {}
        chunks = np.array_split(rng.permutation(len(extra[0])), len(bar))  # every extra turn once per epoch
        for step, start in enumerate(bar):
            g = groups[start : start + rc.batch_size]
            ex = ([extra[0][i] for i in chunks[step]], torch.tensor([extra[1][i] for i in chunks[step]], dtype=torch.long))
            losses = _step(retriever, loss_fn, [texts[i] for i in g.reshape(-1)], g.shape, ids[g], ex)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            bar.set_postfix({k: f"{v.item():.4f}" for k, v in losses.items()})
        retriever.info["trained_epochs"] = epoch
        n_batches = math.ceil(len(groups) / rc.batch_size)
        row = {"epoch": epoch, **{f"train_{k}": round(v / n_batches, 4) for k, v in sums.items()}}
        if valid_samples:
            row.update(_validate(retriever, train, valid_samples, rc))
        history.append(row)
        log(f"epoch {epoch}: {_fmt(row)}")
        score = row.get("objective", row.get("utt_agree@1", epoch))  # without validation data the last epoch is kept
        if score > best:
            best = score
            retriever.info.update({"best_epoch": epoch, "valid": row})
            if "scoring" in row:
                retriever.info["scoring"] = row["scoring"]
            _save(retriever, cfg, out, history)
    atomic_write_jsonl(Path(out) / "train_log.jsonl", history)


def _fit_tfidf(train, valid_samples, names: list[str], rc, log):
    """The TF-IDF emotion classifier (:mod:`retrieval.tfidf`) on the labelled training utterances (+ the
    other labelled turns with ``emotion_all_turns``), each with its dialogue context (the earlier
    turns' texts), its settings (context weight included) chosen on the valid utterances."""
    from retrieval.tfidf import query_context, select_classifier

    items = [s for s in train if s.utterance.emotion in names and s.utterance.text.strip()]
    texts, ys = [s.utterance.text for s in items], [names.index(s.utterance.emotion) for s in items]
    ctx = [query_context(s.history, s.utterance.speaker) for s in items]
    if rc.emotion_all_turns:
        extra = _extra_turns(train, names, contexts=True)
        texts, ys, ctx = texts + extra[0], ys + extra[1], ctx + extra[2]
    val = [s for s in valid_samples if s.utterance.emotion in names and s.utterance.text.strip()]
    return select_classifier(texts, ys, names, [s.utterance.text for s in val],
                             [names.index(s.utterance.emotion) for s in val], rc.class_balanced, log=log,
                             contexts=ctx, valid_contexts=[query_context(s.history, s.utterance.speaker) for s in val])


def _extra_turns(train, names: list[str], contexts: bool = False) -> tuple[list, ...]:
    """Labelled responses r of the training samples that are no sample's utterance u (same dialogue):
    ``(texts, class ids)``, with ``contexts`` also their :func:`retrieval.tfidf.query_context`."""
    from retrieval.tfidf import query_context

    seen = {(s.dialogue_id, s.utterance.text) for s in train}
    out: dict[tuple, tuple] = {}
    for s in train:
        key = (s.dialogue_id, s.response.text)
        if s.response.emotion in names and key not in seen and s.response.text.strip():
            out[key] = (names.index(s.response.emotion),
                        query_context([*s.history, s.utterance], s.response.speaker))
    got = ([k[1] for k in out], [v[0] for v in out.values()])
    return (*got, [v[1] for v in out.values()]) if contexts else got


def _step(retriever: Retriever, loss_fn: RetrievalLoss, texts: list[str], shape, emotions: torch.Tensor,
          extra: tuple | None = None) -> dict:
    b, g = shape
    n = len(texts)
    both = texts + (list(extra[0]) if extra else [])
    e = retriever.embed(both)  # (B*G + M, d): the group items, then the head-only extra turns
    h = retriever.head(e) if retriever.head is not None else None  # (., s, d/s)
    z = join_blocks(h) if h is not None else retriever.represent(e)
    logits = retriever.emotion_head(z) if retriever.emotion_head is not None else None
    emotions = emotions.to(z.device)
    more = (logits[n:], extra[1].to(z.device)) if logits is not None and extra and len(extra[0]) else None
    return loss_fn(z[:n].view(b, g, -1), h[:n].view(b, g, *h.shape[1:]) if h is not None else None, emotions,
                   logits[:n] if logits is not None else None, more)


def _validate(retriever: Retriever, train, valid_samples, rc) -> dict:
    """Cosine retrieval metrics; with an emotion head also its accuracy / macro-F1 on the labelled
    valid utterances and the tuned scoring with its metrics (``objective`` selects the epoch)."""
    index = DemonstrationIndex.build(train, retriever, "Flat", rc.encode_batch_size)
    row = {k: round(v, 4) if isinstance(v, float) else v
           for k, v in evaluate_index(index, valid_samples, rc.eval_k, rc.encode_batch_size).items()}
    if not retriever.classifiers:
        return row
    tuned = tune_scoring(index, valid_samples, rc.tune_metric, rc.min_f1_ratio, rc.encode_batch_size,
                         classifier=rc.emotion_classifier, whole=rc.tune_whole_index)
    row.update({"scoring": tuned.scoring.to_dict(), **{f"tuned_{k}": v for k, v in tuned.valid.items()},
                "tuned_objective": round(objective(tuned.valid, rc.tune_metric), 4)})
    if retriever.emotion_head is None:
        return row | {"objective": row["tuned_objective"]}
    labelled = [s for s in valid_samples if s.utterance.emotion is not None]
    _, probs = retriever.encode([s.utterance.text for s in labelled], rc.encode_batch_size, with_probs=True)
    names = retriever.emotion_labels
    acc, f1 = accuracy_macro_f1([s.utterance.emotion for s in labelled], [names[i] for i in probs.argmax(1)])
    # The epoch is chosen by the head's quality, not by the tuned agreement: the best of ~400
    # scorings on a small valid split is optimistic, most of all for a noisy early head.
    row.update({"emotion_acc": round(acc, 4), "emotion_macro_f1": round(f1, 4), "objective": round((acc + f1) / 2, 4)})
    return row


def _fmt(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("epoch", "scoring")) + (
        f", scoring={row['scoring']}" if "scoring" in row else "") or "no validation data"


def _save(retriever: Retriever, cfg: ELMDConfig, out: str, history: list) -> None:
    """Write the folder next to ``out`` and swap it in, so ``out`` always holds a whole checkpoint."""
    with atomic_dir(out) as tmp:
        retriever.save(tmp)
        save_config(cfg, tmp / "config.yaml")
        atomic_write_jsonl(tmp / "train_log.jsonl", history)
        atomic_write_text(tmp / "README.md", model_card(retriever.info))
    retriever.path, retriever._fingerprint = str(Path(out)), None


def model_card(info: dict) -> str:
    parts = [n.upper() for n in ("ert", "ssc") if info.get(n)]
    valid = info.get("valid") or {}
    metrics = "\n".join(f"| {k} | {v} |" for k, v in valid.items() if k != "epoch") or "| (no validation data) | |"
    return f"""# ELMD emotional retriever ({'+'.join(parts) or 'untrained base encoder'})

Sentence encoder of the Emotional Retrieval Module of ELMD (Speak From Heart, ICMR 2024, Sec. 3.3),
written by `elmd retriever train`.

- Base encoder: `{info.get('base_encoder')}` ({info.get('dim')}-d)
- Losses: {'ERT (Eq. 2)' if info.get('ert') else 'no ERT'}, {'SSC (Alg. 1, Eq. 3-4) with s = ' + str(info.get('s')) if info.get('ssc') else 'no SSC'};
  n_e = {info.get('n_e')}, tau = {info.get('tau')}, lambda = {info.get('lam')}
- Emotion head: {'P(emotion | u) over ' + ', '.join(info.get('emotion_labels') or []) + (' (class-balanced loss)' if info.get('class_balanced') else '') if info.get('emotion_head') else 'none'}
- TF-IDF emotion classifier of the query: {info.get('tfidf') or 'none'}
- Search-time scoring (tuned on the valid split): `{info.get('scoring') or {'mode': 'cosine'}}`
- Epochs trained: {info.get('trained_epochs')}; best epoch kept: {info.get('best_epoch')}

## Validation (epoch {valid.get('epoch', '-')}, queries = valid utterances, index = train samples)

| metric | value |
|---|---|
{metrics}

## Use

```bash
elmd index build --data train.jsonl --retriever THIS_FOLDER --out INDEX_DIR
```

The folder is a sentence-transformers model (`SentenceTransformer(THIS_FOLDER)` gives e_u, mean
pooling, not normalised); `ssc_head.safetensors` holds the SSC head, `emotion_head.safetensors`
the emotion classifier, `emotion_tfidf.safetensors` + `emotion_tfidf.json` the TF-IDF classifier, and `retrieval.encoder.load_retriever(THIS_FOLDER).encode(texts)` gives
the normalised search vectors (`with_probs=True`: also P(emotion | text)).
"""
