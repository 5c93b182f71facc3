"""The three ways a reply gets its sticker, from the ``[IMG]`` hidden states (issue 14, item 4).

* :class:`RetrieveBackend` (``retrieve``): the retrieval embedding against the library's keys
  (the projected image vectors, computed once), top-k by :func:`~elmd.heads.sticker.select.select_stickers`
  with the reply's emotion and the stickers already shown;
* :class:`GenerateBackend` (``generate``, PEGS-G): the mapper's prompt embeddings -> SD text-to-image;
* :class:`RagBackend` (``rag``, PEGS-RAG): retrieve, then img2img from the retrieved sticker.

Each ``__call__`` takes a batch and returns one :class:`StickerResult` per reply; generated images
are written as PNG under ``media_dir`` (atomically) and named by ``names``.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from elmd.heads.sticker.head_model import StickerModules
from elmd.heads.sticker.index import StickerHit, StickerLibrary
from elmd.heads.sticker.library import open_image
from elmd.io import atomic_write_bytes


@dataclass
class StickerResult:
    """The sticker of one reply (what goes to ``reply.extras["sticker"]``)."""

    path: str
    """Image to show: the library sticker (retrieve) or the generated PNG (generate / rag)."""
    backend: str
    id: str | None = None
    """Library id of the (retrieved / init) sticker; None for generate."""
    emotion: str | None = None
    """Emotion of the library sticker; for generate the reply's emotion it was asked for."""
    score: float | None = None
    candidates: list[dict] = field(default_factory=list)
    """All top-k hits (retrieve / rag)."""

    def to_dict(self) -> dict:
        return asdict(self)


def _save_png(image, media_dir: Path, name: str) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return str(atomic_write_bytes(Path(media_dir) / f"{name}.png", buf.getvalue()))


class RetrieveBackend:
    """Top-k library stickers for each reply's retrieval embedding."""

    name = "retrieve"

    def __init__(self, library: StickerLibrary, modules: StickerModules):
        from elmd.errors import ConfigError

        if library.vectors.shape[1] != modules.image_dim:
            raise ConfigError(f"{library.folder}: library vectors are {library.vectors.shape[1]}-d but the sticker modules "
                              f"were trained on {modules.image_dim}-d image vectors — use the library built with the "
                              "training run's image encoder")
        self.library, self.modules, self.cfg = library, modules, modules.cfg
        with torch.no_grad():
            self.keys = modules.library_keys(library.vectors, library.emotions.tolist()).float().cpu().numpy()  # [N, ret_dim]

    @torch.no_grad()
    def hits(self, img_hidden: torch.Tensor, emotions: Sequence[str | None],
             shown: Sequence[Sequence[str]] | None = None) -> list[list[StickerHit]]:
        q = self.modules.retrieval_embedding(img_hidden).float().cpu().numpy()
        if not self.cfg.exclude_shown:
            shown = None
        return self.library.search(q, list(emotions), self.cfg.top_k, shown, self.cfg.emotion_mode, keys=self.keys)

    def __call__(self, img_hidden, emotions, shown=None, media_dir=None, names=None, seeds=None) -> list[StickerResult | None]:
        out = []
        for hits in self.hits(img_hidden, emotions, shown):
            out.append(StickerResult(hits[0].image, self.name, hits[0].id, hits[0].emotion, hits[0].score,
                                     [h.to_dict() for h in hits]) if hits else None)
        return out


class GenerateBackend:
    """SD text-to-image from the mapper's prompt embeddings (PEGS-G)."""

    name = "generate"

    def __init__(self, modules: StickerModules, diffusion):
        self.modules, self.diffusion = modules, diffusion

    @torch.no_grad()
    def __call__(self, img_hidden, emotions, shown=None, media_dir=".", names=None, seeds=None) -> list[StickerResult]:
        names = list(names or [f"sticker-{i}" for i in range(len(img_hidden))])
        seeds = list(seeds) if seeds is not None else list(range(len(img_hidden)))
        images = self.diffusion.generate(self.modules.prompt_embeds(img_hidden), seeds)
        return [StickerResult(_save_png(im, media_dir, n), self.name, emotion=e) for im, n, e in zip(images, names, emotions)]


class RagBackend:
    """Retrieve a sticker, then img2img from it towards the mapper's prompt embeddings (PEGS-RAG)."""

    name = "rag"

    def __init__(self, retrieve: RetrieveBackend, diffusion):
        self.retrieve, self.diffusion = retrieve, diffusion

    @torch.no_grad()
    def __call__(self, img_hidden, emotions, shown=None, media_dir=".", names=None, seeds=None) -> list[StickerResult | None]:
        names = list(names or [f"sticker-{i}" for i in range(len(img_hidden))])
        seeds = list(seeds) if seeds is not None else list(range(len(img_hidden)))
        hits = self.retrieve.hits(img_hidden, emotions, shown)
        rows = [i for i, h in enumerate(hits) if h]
        out: list[StickerResult | None] = [None] * len(hits)
        if not rows:
            return out
        inits = [open_image(hits[i][0].image) for i in rows]
        pe = self.retrieve.modules.prompt_embeds(img_hidden[rows])
        images = self.diffusion.rag(pe, inits, [seeds[i] for i in rows])
        for i, im in zip(rows, images):
            h = hits[i][0]
            out[i] = StickerResult(_save_png(im, media_dir, names[i]), self.name, h.id, h.emotion, h.score,
                                   [x.to_dict() for x in hits[i]])
        return out


def build_backend(modules: StickerModules, library: StickerLibrary | None = None, diffusion=None):
    """The backend ``modules.cfg.backend`` names (retrieve needs ``library``; generate ``diffusion``; rag both)."""
    from elmd.errors import ConfigError

    backend = modules.cfg.backend
    if backend in ("retrieve", "rag") and library is None:
        raise ConfigError(f"sticker.backend={backend} needs a library — set sticker.library (built by `elmd sticker build-library`)")
    if backend in ("generate", "rag") and diffusion is None:
        raise ConfigError(f"sticker.backend={backend} needs Stable Diffusion — set sticker.sd_path")
    if backend == "retrieve":
        return RetrieveBackend(library, modules)
    if backend == "generate":
        return GenerateBackend(modules, diffusion)
    return RagBackend(RetrieveBackend(library, modules), diffusion)


