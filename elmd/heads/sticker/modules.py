"""The sticker head's trainable modules on top of the LLM's ``[IMG]`` hidden states (PEGS / GILL).

The LLM emits ``[IMG1..r]`` after its text. Following PEGS (``model/pegs/model/pegs_model.py``,
``retrieval_image`` / ``forward``) and GILL (``gill/layers.py``, ``TextFcLayer``):

* :class:`RetrievalProjection` maps the hidden states of the first k tokens (text side, GILL's
  ``ret_text_hidden_fcs`` in ``linear`` mode: one Linear, the first token's output kept) and the
  library's image vectors (image side, PEGS / GILL ``visual_fc``) into one ``ret_dim`` space; with
  ``num_emotions`` > 0 (``sticker.key_emotion``, an addition to PEGS) a learned vector of the
  sticker's emotion label is added to its image-side key before normalising;
* :class:`InfoNCELoss` is the symmetric contrastive loss between the two (text -> image and
  image -> text cross-entropy over the batch, averaged), with the logit scale fixed at 1 / 0.07;
* :class:`LibraryInfoNCELoss` is the text -> image variant against the whole library (an option,
  ``sticker.ret_negatives=library``, for batches that hold few stickers);
* :class:`FeatureMapper` (GILL's ``gill_mapper``, PEGS's ``OutputProjectionLayer``) turns the
  hidden states of the other r - k tokens into a ``77 x prompt_dim`` Stable Diffusion prompt
  embedding: Linear -> 4+4-layer ``nn.Transformer`` (pre-norm, no dropout) whose decoder reads 77
  learned queries -> Linear;
* :class:`MapperLoss` is the MSE between that and the SD text encoder's embedding of the sticker's
  caption (PEGS: ``encode_prompt(caption)``).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn


class RetrievalProjection(nn.Module):
    """Text side: ``[B, k, hidden]`` -> ``[B, ret_dim]``; image side: ``[N, image_dim]`` -> ``[N, ret_dim]``.

    Both outputs are L2-normalised, so their inner product is a cosine. ``pool='first'`` keeps the
    projection of the first ``[IMG]`` token (GILL / PEGS), ``'mean'`` averages the k projections.

    >>> proj = RetrievalProjection(hidden=16, image_dim=8, ret_dim=4)
    >>> proj.text(torch.randn(2, 3, 16)).shape, proj.image(torch.randn(5, 8)).shape
    (torch.Size([2, 4]), torch.Size([5, 4]))
    """

    def __init__(self, hidden: int, image_dim: int, ret_dim: int = 256, pool: str = "first", num_emotions: int = 0):
        super().__init__()
        if pool not in ("first", "mean"):
            raise ValueError(f"pool must be 'first' or 'mean', got {pool!r}")
        self.text_fc = nn.Linear(hidden, ret_dim)
        self.visual_fc = nn.Linear(image_dim, ret_dim)
        self.pool = pool
        self.register_buffer("text_center", torch.zeros(hidden))
        """Subtracted from the pooled hidden state before ``text_fc`` (zeros = PEGS; stage `sticker` sets it to the
        training set's mean, so the projection sees what differs between replies and not the run's shared state)."""
        self.emotion = nn.Embedding(num_emotions, ret_dim) if num_emotions else None
        if self.emotion is not None:
            nn.init.zeros_(self.emotion.weight)  # starts as PEGS's image-only key

    def text(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Hidden states of the k retrieval tokens ``[B, k, hidden]`` -> unit ``[B, ret_dim]``."""
        x = hidden_states[:, 0] if self.pool == "first" else hidden_states.mean(dim=1)
        x = x.to(self.text_fc.weight.dtype) - self.text_center
        return F.normalize(self.text_fc(x), dim=-1)

    def pooled(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """What ``text`` reads before centring: [B, k, hidden] -> [B, hidden]."""
        return hidden_states[:, 0] if self.pool == "first" else hidden_states.mean(dim=1)

    def image(self, image_vectors: torch.Tensor, emotions: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen image-encoder vectors ``[N, image_dim]`` (+ emotion codes ``[N]``) -> unit ``[N, ret_dim]``."""
        x = self.visual_fc(image_vectors.to(self.visual_fc.weight.dtype))
        if self.emotion is not None and emotions is not None:
            x = x + self.emotion(emotions.to(x.device))
        return F.normalize(x, dim=-1)

    def forward(self, hidden_states: torch.Tensor, image_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text(hidden_states), self.image(image_vectors)


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (CLIP / FROMAGe / GILL / PEGS retrieval loss).

    Inputs: unit text embeddings ``t`` [B, D] and unit image embeddings ``v`` [B, D], row i of each
    being a positive pair. ``logits = scale * t @ v.T``; loss = (CE(logits, arange) + CE(logits.T,
    arange)) / 2, i.e. the mean of the text->image and image->text losses. The scale is a fixed
    buffer (1 / temperature; PEGS: tau = 0.07 and ``train_logit_scale=False``).

    >>> loss = InfoNCELoss(temperature=0.07)
    >>> t = v = torch.eye(3)
    >>> round(loss(t, v).item(), 4)  # log(1 + 2 exp(-1/0.07))
    0.0
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.register_buffer("logit_scale", torch.tensor(1.0 / temperature), persistent=False)

    def logits(self, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """[B, B] text-to-image logits."""
        return self.logit_scale * t @ v.t()

    def forward(self, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if t.shape != v.shape:
            raise ValueError(f"text and image embeddings differ in shape: {tuple(t.shape)} vs {tuple(v.shape)}")
        logits = self.logits(t.float(), v.float())
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class LibraryInfoNCELoss(nn.Module):
    """Text -> image InfoNCE against a whole sticker library: ``CE(scale * t @ keys.T, gold)``.

    ``t`` [B, D] unit text embeddings, ``keys`` [N, D] unit embeddings of every library sticker,
    ``gold`` [B] the library row of each reply's sticker. Every other sticker is a negative, so a
    batch with one sticker reply still learns (in-batch InfoNCE is 0 for a batch of one).
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.register_buffer("logit_scale", torch.tensor(1.0 / temperature), persistent=False)

    def forward(self, t: torch.Tensor, keys: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logit_scale * t.float() @ keys.float().t(), gold.to(t.device))


class FeatureMapper(nn.Module):
    """``[B, r-k, hidden]`` hidden states -> ``[B, num_queries, out_dim]`` SD prompt embeddings.

    Linear(hidden -> width) -> ``nn.Transformer`` (``encoder_layers`` + ``decoder_layers``, pre-norm,
    ``heads`` heads, feed-forward 4 x width, dropout 0) with the encoder over the projected hidden
    states and the decoder over ``num_queries`` learned queries -> Linear(width -> out_dim).
    PEGS / GILL: width 512, 4 + 4 layers, 4 heads, 77 queries, out_dim 768 (SD 1.5).

    >>> m = FeatureMapper(hidden=16, out_dim=8, width=32, encoder_layers=1, decoder_layers=1, heads=2, num_queries=5)
    >>> m(torch.randn(2, 3, 16)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, hidden: int, out_dim: int = 768, width: int = 512, encoder_layers: int = 4,
                 decoder_layers: int = 4, heads: int = 4, num_queries: int = 77):
        super().__init__()
        self.fc_in = nn.Linear(hidden, width)
        with warnings.catch_warnings():  # pre-norm layers cannot use nested tensors; torch warns about it
            warnings.filterwarnings("ignore", message="enable_nested_tensor")
            self.transformer = nn.Transformer(d_model=width, nhead=heads, num_encoder_layers=encoder_layers,
                                              num_decoder_layers=decoder_layers, dim_feedforward=4 * width,
                                              dropout=0.0, batch_first=True, norm_first=True)
        self.fc_out = nn.Linear(width, out_dim)
        self.queries = nn.Parameter(torch.randn(1, num_queries, width) / math.sqrt(width))

    @classmethod
    def from_config(cls, cfg, hidden: int) -> "FeatureMapper":
        """The mapper a :class:`~elmd.heads.sticker.config.StickerConfig` describes."""
        return cls(hidden, cfg.prompt_dim, cfg.mapper_hidden, cfg.mapper_encoder_layers, cfg.mapper_decoder_layers,
                   cfg.mapper_heads, cfg.num_clip_tokens)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.fc_in(hidden_states.to(self.fc_in.weight.dtype))  # [B, r-k, width]
        q = self.queries.expand(x.shape[0], -1, -1)  # [B, Q, width]
        return self.fc_out(self.transformer(x, q))  # [B, Q, out_dim]


class MapperLoss(nn.Module):
    """MSE between the mapper's output and the SD text encoder's embedding of the caption (PEGS L_gen).

    ``pred`` and ``target`` are ``[B, Q, D]``; ``target`` is detached (the SD text encoder is frozen).
    ``mask`` [B] (bool) keeps only replies that carry a sticker; with none the loss is 0 (with a grad).
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"mapper output {tuple(pred.shape)} and SD embedding {tuple(target.shape)} differ — "
                             "set sticker.num_clip_tokens / prompt_dim to the SD text encoder's")
        if mask is not None:
            pred, target = pred[mask], target[mask]
        if pred.shape[0] == 0:
            return pred.sum() * 0.0
        return F.mse_loss(pred.float(), target.detach().float())
