"""Stage `sticker`'s validation of the retrieval projection (teacher forced, PEGS's retrieval recall).

Each valid sample whose reply carries a gold sticker goes through the model with its target (reply +
``[IMG1..r]``) as in training; the run's hidden states are projected and every library sticker scored
(``emotion_mode=ignore``: the projection alone decides). Reported: recall@1 / @5 of the gold sticker,
and the share whose top-1 sticker has the reply's emotion, beside the library's emotion prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ValidRetrieval:
    """Teacher-forced retrieval on the valid split's sticker replies."""

    n: int
    """Valid replies with a gold sticker."""
    recall_at_1: float
    recall_at_5: float
    emotion_accuracy: float
    """Share of those whose top-1 sticker shows the reply's emotion."""
    prior_emotion_accuracy: float
    """The same for a sticker drawn uniformly from the library."""


@torch.no_grad()
def valid_retrieval(s, batch_size: int = 8) -> ValidRetrieval:
    """:class:`ValidRetrieval` of session ``s`` (a :class:`~elmd.heads.sticker.stage.StickerSession`)."""
    from elmd.heads.sticker.metrics import prior_emotion_accuracy, recall_at_k, sticker_emotion_accuracy
    from elmd.heads.sticker.tokens import gather_run, img_run_start

    model, lib, obj = s.model, s.library, s.objective
    was = model.training
    model.eval()
    idx = [i for i, r in enumerate(s.rows["valid"]) if r >= 0]
    keys = model.sticker.library_keys(lib.vectors, lib.emotions.tolist())
    returned, gold, emotions, refs = [], [], [], []
    for i in range(0, len(idx), batch_size):
        part = idx[i:i + batch_size]
        batch = s.batch(s.valid, part)
        batch.pop("labels")
        out = model(**batch)
        starts = img_run_start(batch["input_ids"], obj.img_ids)
        q = model.sticker.retrieval_embedding(gather_run(out.hidden_states, starts, len(obj.img_ids)))
        top = (q @ keys.t()).topk(min(5, len(lib)), dim=-1).indices.tolist()
        for j, row in zip(part, top):
            returned.append([lib.ids[t] for t in row])
            gold.append(lib.ids[s.rows["valid"][j]])
            emotions.append(str(lib.emotions[row[0]]))
            refs.append(s.valid.samples[j].target_emotion)
    model.train(was)
    if not idx:
        nan = float("nan")
        return ValidRetrieval(0, nan, nan, nan, nan)
    return ValidRetrieval(len(idx), recall_at_k(returned, gold, 1), recall_at_k(returned, gold, 5),
                          sticker_emotion_accuracy(emotions, refs), prior_emotion_accuracy(lib.emotions.tolist(), refs))
