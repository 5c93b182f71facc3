"""Stage eerg's loss with the emotion word weighted (a deviation from the paper's Eq. 11; issue 12 item 4).

The paper trains eerg on the plain next-token loss of "emotion word + newline + reply + eos",
averaged over the target tokens. The emotion word is 1-3 of those ~20 tokens, so its share of the
gradient is small, and the prefix is free to move the first target position wherever the reply
tokens pull it: on the CPU replica the emotion stage rep had learnt (valid accuracy 0.79) fell to
0.11 after eerg. This loss adds the emotion word's own term::

    L = L_target + w * L_emotion

    L_target  = sum of CE over all target tokens / global target tokens      (the paper's Eq. 11)
    L_emotion = sum over samples of the mean CE over the emotion word's tokens / global samples
                (stage rep's loss, one term per sample whatever the word's token count)

``w = train.eerg_emotion_weight``; ``w = 0`` is the paper's loss exactly. The emotion word is the
start of every eerg target (both ``train.target=reply`` and ``meta``), so its span in a row is
the longest label word that the row's first target tokens spell (:func:`emotion_spans`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from elmd.models.prompt import IGNORE
from elmd.training.loop import target_token_loss


def emotion_spans(labels: torch.Tensor, label_ids: list[list[int]]) -> list[tuple[int, int]]:
    """For each row of ``labels`` [B, T]: (start, length) of the label word its target opens with,
    in positions of ``labels``; length 0 when the target opens with no label word."""
    words = sorted(label_ids, key=len, reverse=True)
    spans = []
    for row in labels.tolist():
        start = next((i for i, t in enumerate(row) if t != IGNORE), len(row))
        length = next((len(w) for w in words if row[start:start + len(w)] == w), 0)
        spans.append((start, length))
    return spans


class EmotionWeightedLoss(torch.nn.Module):
    """``forward(output, batch) -> {"loss", "target", "emotion"}``: the loop's ``loss_fn`` for eerg.

    ``label_ids``: the token ids of each label word (:func:`elmd.models.prompt.label_word_ids`);
    ``weight``: w above. The parts are logged: ``target`` (the paper's loss) and ``emotion``
    (stage rep's loss on the same batch), each already divided by its global count.
    """

    def __init__(self, label_ids: list[list[int]], weight: float):
        super().__init__()
        self.label_ids = [list(w) for w in label_ids]
        self.weight = float(weight)

    def forward(self, output, batch: dict) -> dict[str, torch.Tensor]:
        target = target_token_loss(output, batch)["loss"]
        logits, labels = output.logits, batch["labels"]
        rows, cols = [], []
        per_row = []
        for b, (start, length) in enumerate(emotion_spans(labels, self.label_ids)):
            if length:  # logits at p predict the token at p + 1
                rows += [b] * length
                cols += list(range(start - 1, start - 1 + length))
                per_row.append(length)
        if not rows:
            emotion = target * 0.0
        else:
            rows_t = torch.tensor(rows, device=logits.device)
            cols_t = torch.tensor(cols, device=logits.device)
            ce = F.cross_entropy(logits[rows_t, cols_t].float(), labels[rows_t, cols_t + 1], reduction="none")
            weights = torch.cat([torch.full((n,), 1.0 / n, device=ce.device) for n in per_row])
            emotion = (ce * weights).sum() / batch["global_samples"]
        return {"loss": target + self.weight * emotion, "target": target.detach(), "emotion": emotion.detach()}
