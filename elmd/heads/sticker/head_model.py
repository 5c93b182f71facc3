"""The trainable part of the sticker head as one module: what stage `sticker` trains and saves.

:class:`StickerModules` holds the retrieval projection and the feature mapper
(:mod:`elmd.heads.sticker.modules`) for an LLM of width ``hidden`` and an image encoder of width
``image_dim``. Given the last-layer hidden states at the ``[IMG1..r]`` positions ([B, r, hidden]) it
splits them into the first k (retrieval) and the other r - k (generation), as PEGS does, and
returns the two losses of PEGS's objective, L = λ1·L_lm + λ2·L_ret + λ3·L_gen (:meth:`objective`),
computed only on replies that carry a sticker. Saved as a folder: ``sticker_modules.safetensors`` +
``sticker_modules.json`` (the StickerConfig and the two widths).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from elmd.errors import ElmdError
from elmd.heads.sticker.config import StickerConfig
from elmd.heads.sticker.modules import FeatureMapper, InfoNCELoss, LibraryInfoNCELoss, MapperLoss, RetrievalProjection

WEIGHTS, META = "sticker_modules.safetensors", "sticker_modules.json"


@dataclass
class StickerLosses:
    """The sticker terms of one batch (0-dim tensors)."""

    ret: torch.Tensor
    """InfoNCE between the retrieval embeddings and the gold stickers' image vectors (L_ret)."""
    gen: torch.Tensor
    """MSE between the mapper's output and the SD text embedding of the gold sticker's caption (L_gen)."""
    n: int
    """Replies with a sticker in the batch."""


class StickerModules(nn.Module):
    """Retrieval projection + feature mapper on ``[IMG]`` hidden states (see the module docstring)."""

    def __init__(self, cfg: StickerConfig, hidden: int, image_dim: int, with_mapper: bool = True,
                 labels: tuple[str, ...] = ()):
        super().__init__()
        self.cfg, self.hidden, self.image_dim = cfg.validate(), hidden, image_dim
        self.labels = tuple(labels) if cfg.key_emotion else ()
        """Emotion labels whose learned vectors join the library keys (``sticker.key_emotion``; () = image-only keys)."""
        self.projection = RetrievalProjection(hidden, image_dim, cfg.ret_dim, cfg.ret_pool, len(self.labels))
        self.mapper = FeatureMapper.from_config(cfg, hidden) if with_mapper else None
        self.infonce, self.mse = InfoNCELoss(cfg.temperature), MapperLoss()
        self.library_infonce = LibraryInfoNCELoss(cfg.temperature)

    def split(self, img_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, r, hidden] -> ([B, k, hidden] for retrieval, [B, r - k, hidden] for the mapper)."""
        r, k = self.cfg.num_img_tokens, self.cfg.num_ret_tokens
        if img_hidden.dim() != 3 or img_hidden.shape[1] != r or img_hidden.shape[2] != self.hidden:
            raise ValueError(f"expected [IMG] hidden states [B, {r}, {self.hidden}], got {tuple(img_hidden.shape)}")
        return img_hidden[:, :k], img_hidden[:, k:]

    def retrieval_embedding(self, img_hidden: torch.Tensor) -> torch.Tensor:
        """[B, r, hidden] -> unit [B, ret_dim] queries for the library's projected keys."""
        return self.projection.text(self.split(img_hidden)[0])

    def emotion_codes(self, emotions) -> torch.Tensor | None:
        """Label codes [N] of sticker emotions (None without emotion keys; an unknown label is a ValueError)."""
        if not self.labels or emotions is None:
            return None
        index = {e: i for i, e in enumerate(self.labels)}
        bad = [e for e in emotions if e not in index]
        if bad:
            raise ValueError(f"sticker emotion '{bad[0]}' is not one of the trained labels {self.labels}")
        return torch.tensor([index[e] for e in emotions], device=self.projection.visual_fc.weight.device)

    def library_keys(self, vectors, emotions=None) -> torch.Tensor:
        """The library's image vectors [N, image_dim] (and their emotions) -> unit keys [N, ret_dim] (PEGS's ``visual_fc``)."""
        return self.projection.image(torch.as_tensor(vectors, device=self.projection.visual_fc.weight.device),
                                     self.emotion_codes(emotions))

    def prompt_embeds(self, img_hidden: torch.Tensor) -> torch.Tensor:
        """[B, r, hidden] -> SD prompt embeddings [B, num_clip_tokens, prompt_dim]."""
        if self.mapper is None:
            raise ElmdError("these sticker modules have no feature mapper — train with one for backend generate / rag")
        return self.mapper(self.split(img_hidden)[1])

    def losses(self, img_hidden: torch.Tensor, image_vectors: torch.Tensor, has_sticker: torch.Tensor,
               sd_targets: torch.Tensor | None = None, library_vectors: torch.Tensor | None = None,
               gold: torch.Tensor | None = None, image_emotions=None, library_emotions=None) -> StickerLosses:
        """L_ret and L_gen over the replies where ``has_sticker`` [B] is true; ``image_vectors`` [B, image_dim]
        are the gold stickers' frozen image vectors and ``sd_targets`` [B, 77, prompt_dim] the SD text
        embeddings of their captions (None or no mapper: L_gen = 0). Rows without a sticker may hold anything.
        With ``sticker.ret_negatives=library``, ``library_vectors`` [N, image_dim] and ``gold`` [B] (library
        rows of the gold stickers) are needed instead of in-batch negatives. ``image_emotions`` / ``library_emotions``
        (label ids) feed the emotion keys when the modules have them."""
        mask = has_sticker.to(torch.bool)
        ret_h, gen_h = self.split(img_hidden)
        zero = img_hidden.sum() * 0.0
        n = int(mask.sum())
        if not n:
            ret = zero
        elif self.cfg.ret_negatives == "library":
            if library_vectors is None or gold is None:
                raise ValueError("sticker.ret_negatives=library needs library_vectors and gold")
            t = self.projection.text(ret_h[mask])
            ret = self.library_infonce(t, self.library_keys(library_vectors, library_emotions), gold.to(t.device)[mask])
        else:
            codes = self.emotion_codes(image_emotions)
            ret = self.infonce(self.projection.text(ret_h[mask]),
                               self.projection.image(image_vectors[mask], None if codes is None else codes[mask.to(codes.device)]))
        gen = zero
        if self.mapper is not None and sd_targets is not None and n:
            gen = self.mse(self.mapper(gen_h[mask]), sd_targets[mask].to(gen_h.device))
        return StickerLosses(ret, gen, n)

    def objective(self, lm_loss: torch.Tensor, losses: StickerLosses) -> torch.Tensor:
        """λ1·L_lm + λ2·L_ret + λ3·L_gen with the config's lambdas (PEGS: 1, 1, 1)."""
        c = self.cfg
        return c.lambda_lm * lm_loss + c.lambda_ret * losses.ret + c.lambda_gen * losses.gen

    # -- folder I/O -----------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        from safetensors.torch import save_file

        from elmd.io import atomic_write_json

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS))
        atomic_write_json(out / META, {"config": asdict(self.cfg), "hidden": self.hidden, "image_dim": self.image_dim,
                                       "with_mapper": self.mapper is not None, "labels": list(self.labels)})
        return out

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "StickerModules":
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
            raise ElmdError(f"{folder}: no {META} / {WEIGHTS} — not trained sticker modules (train stage `sticker`)")
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        mods = cls(StickerConfig(**meta["config"]), meta["hidden"], meta["image_dim"], meta["with_mapper"],
                   tuple(meta.get("labels", ())))
        mods.load_state_dict(load_file(str(folder / WEIGHTS), device=device))
        return mods.to(device)
