"""Spatially selective initialisation of the tiny BLIP-2 stand-in (:meth:`VisualEncoder.tiny`).

A *randomly* initialised ViT + Q-Former is a poor stand-in for BLIP-2: random cross-attention
averages every patch into every query, and identity (face shape, colours) drowns the small
facial-expression changes that the bundled sample's videos carry (a logistic probe on the pooled
features of a random tiny encoder stays near the label prior, 0.61 vs 0.60, while 28 x 28 grey
pixels give 0.91; BENCHMARKS.md, "REP valid emotion accuracy"). A pre-trained Q-Former does what this module builds in
by hand, with the same modules and the same forward code:

* ViT patch embedding: hidden dims ``[0, C)`` hold a random projection of the patch's pixels
  (content) through zero-mean filters, which ignore flat colour (skin, background, shirt: most of
  the identity) and respond to edges (the facial features); dims ``[C, C + 32)`` are zero there;
  the position embedding writes a 2-D sinusoidal code of the patch's grid cell into those 32 dims
  (content dims zero). The ViT layers keep their
  small random init, so they perturb this but do not erase it.
* Q-Former query token i carries the code of one grid cell (the 32 cells nearest the centre,
  wrapping round when the grid has fewer cells); its first self-attention is the identity.
* The cross-attention's query and key read only the position code, so query i attends to its own
  cell: heads 0-1 use a *sharp* code (frequencies chosen so the kernel sum cos(w d) peaks only at
  d = 0), heads 2-3 a *smooth* one (a soft window of neighbouring cells). Values are random
  projections of the content dims, and the output dense scales them above the residual.

Query i's output is then (after LayerNorm) local image content at cell i, as in a trained model
whose queries specialise; everything else (FFNs, the second layer) keeps its random init.
Measured on the bundled sample (BENCHMARKS.md): a logistic probe on the pooled features of held-out
dialogues gets 0.85-0.91 (3 seeds) against 0.61 for the plain random init. It is still not enough
for stage rep through a random tiny LLM, which needs the pre-trained encoder of
:mod:`elmd.training.vision_pretrain`; that pre-training starts from this init.
"""

from __future__ import annotations

import math

import torch

SHARP_FREQS = (0.3675, 1.2134, 1.9337, 2.7350)
"""Angular frequencies (per grid cell) of the sharp code: sum_k cos(w_k d) <= 0.33 for every
integer 1 <= |d| <= 13, against 4 at d = 0, so a query singles out its own cell."""

SMOOTH_FREQS = (0.15, 0.30, 0.45, 0.60)
"""Frequencies of the smooth code: a window a few cells wide."""

SHARP_BETA, SMOOTH_BETA = 2.0, 1.0
"""Query-side gains of the sharp and the smooth heads (attention temperature)."""

OUTPUT_GAIN = 4.0
"""Scale of the cross-attention output dense (identity): attended content over the residual."""

POS_DIMS = 32
"""Hidden dims holding the position code: 8 sharp (x, y) sin/cos pairs then 8 smooth ones."""


def position_code(x: float, y: float) -> torch.Tensor:
    """[POS_DIMS] code of grid cell (x, y): sharp x, sharp y, smooth x, smooth y (sin, cos each)."""
    vals = []
    for freqs in (SHARP_FREQS, SMOOTH_FREQS):
        for v in (x, y):
            for w in freqs:
                vals += [math.sin(w * v), math.cos(w * v)]
    return torch.tensor(vals)


def query_cells(grid: int, num_queries: int) -> list[tuple[int, int]]:
    """(x, y) cells for the queries: the ``num_queries`` cells nearest the frame centre, in
    reading order; with fewer cells than queries, the list wraps round."""
    c = (grid - 1) / 2
    by_dist = sorted(((x, y) for y in range(grid) for x in range(grid)),
                     key=lambda p: ((p[0] - c) ** 2 + (p[1] - c) ** 2, p[1], p[0]))
    chosen = sorted(by_dist[:num_queries], key=lambda p: (p[1], p[0]))
    return [chosen[i % len(chosen)] for i in range(num_queries)]


@torch.no_grad()
def spatial_init_(enc, generator: torch.Generator) -> None:
    """Overwrite the embeddings, query tokens and first Q-Former layer of a tiny ``VisualEncoder``
    in place (see the module docstring). Needs hidden size = Q-Former size = C + 32 and 4 heads."""
    emb = enc.vision_model.embeddings
    hidden, patch = emb.embed_dim, emb.patch_size
    content = hidden - POS_DIMS
    ca = enc.qformer.encoder.layer[0].crossattention.attention
    if content <= 0 or enc.q_dim != hidden or ca.num_attention_heads != 4 or ca.attention_head_size != POS_DIMS // 2:
        raise ValueError("spatial_init_ needs ViT hidden = Q-Former hidden > 32 with 4 heads of 16")
    grid = emb.image_size // patch

    w = torch.zeros_like(emb.patch_embedding.weight)  # [hidden, 3, p, p]
    w[:content] = torch.randn(content, 3, patch, patch, generator=generator) / math.sqrt(3 * patch * patch)
    w[:content] -= w[:content].mean(dim=(1, 2, 3), keepdim=True)  # zero-mean filters: blind to flat colour
    emb.patch_embedding.weight.copy_(w)
    emb.patch_embedding.bias.zero_()
    emb.class_embedding.zero_()
    pos = torch.zeros_like(emb.position_embedding)  # [1, 1 + grid^2, hidden]; row 0 = CLS
    for j in range(grid * grid):
        pos[0, 1 + j, content:] = position_code(j % grid, j // grid)
    emb.position_embedding.copy_(pos)

    queries = torch.zeros_like(enc.query_tokens)  # [1, Q, hidden]
    for i, (x, y) in enumerate(query_cells(grid, enc.num_query_tokens)):
        queries[0, i, content:] = position_code(x, y)
    enc.query_tokens.copy_(queries)

    layer = enc.qformer.encoder.layer[0]
    layer.attention.output.dense.weight.zero_()  # first self-attention: LN(0 + x) = x
    layer.attention.output.dense.bias.zero_()
    for lin in (ca.query, ca.key, ca.value):
        lin.weight.zero_()
        lin.bias.zero_()
    for h, (offset, beta) in enumerate([(0, SHARP_BETA), (0, SHARP_BETA), (16, SMOOTH_BETA), (16, SMOOTH_BETA)]):
        rows = slice(16 * h, 16 * h + 16)
        cols = slice(content + offset, content + offset + 16)
        ca.query.weight[rows, cols] = beta * torch.eye(16)
        ca.key.weight[rows, cols] = torch.eye(16)
        ca.value.weight[rows, :content] = torch.randn(16, content, generator=generator) / math.sqrt(content)
    out = layer.crossattention.output.dense
    out.weight.copy_(OUTPUT_GAIN * torch.eye(hidden))
    out.bias.zero_()
