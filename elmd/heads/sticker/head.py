"""The sticker head on answered turns (:class:`elmd.inference.heads.Head`): ``reply.extras["sticker"]``.

Contract with the pipeline that builds it: when a reply's model emitted the ``[IMG1..r]`` run, the
pipeline hands the last-layer hidden states at those r positions through ``img_hidden_of(reply)``
(default :func:`img_hidden_from_reply`: ``reply.hidden`` from ``reply.extras["img_start"]`` on);
a reply without them gets no sticker. The head batches the replies that
have them, asks the configured backend (:mod:`elmd.heads.sticker.backends`) and writes
``{"path", "backend", "id", "emotion", "score", "candidates"}``; ``path`` is always a file under
``media_dir`` (a retrieved sticker is copied there, its library path stays in ``candidates``). Stickers it has shown in a
dialogue (``request.dialogue_id``) are not shown again in that dialogue (``sticker.exclude_shown``).
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from elmd.heads.sticker.backends import build_backend


def img_hidden_from_reply(reply, r: int, img_ids: Sequence[int] | None = None) -> torch.Tensor | None:
    """The ``[r, hidden]`` hidden states of the reply's ``[IMG1..r]`` run, or None (no sticker).

    ``reply.hidden`` holds the generated tokens' last-layer states ``[n, hidden]``; the run starts at
    ``reply.extras["img_start"]`` when set, else where ``img_ids`` occur whole in ``reply.token_ids``
    (the forced run of the decoder); with neither, ``reply.hidden`` counts only when it has exactly r rows."""
    h = getattr(reply, "hidden", None)
    if not isinstance(h, torch.Tensor) or h.dim() != 2:
        return None
    start = reply.extras.get("img_start")
    if start is None and img_ids is not None:
        from elmd.heads.sticker.tokens import img_run_start

        ids = torch.tensor([list(reply.token_ids)[:h.shape[0]]], dtype=torch.long)
        start = int(img_run_start(ids, img_ids)[0]) if ids.shape[1] else -1
        if start < 0:
            return None
    if start is None:
        return h if h.shape[0] == r else None
    return h[start:start + r] if 0 <= start and start + r <= h.shape[0] else None


def _name(request, k: int) -> str:
    base = request.sample_id or request.dialogue_id or "chat"
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", base) + f"-{k}"


def _copy_beside(src: str, media_dir: Path, name: str) -> str:
    """Copy a library sticker into ``media_dir`` as ``<name><ext>`` (atomically); the copy's path."""
    from elmd.io import atomic_write_bytes

    return str(atomic_write_bytes(media_dir / f"{name}{Path(src).suffix.lower() or '.png'}", Path(src).read_bytes()))


class StickerHead:
    """Adds a sticker to each reply that carries ``[IMG]`` hidden states."""

    name = "sticker"
    needs_hidden = True
    """The pipeline keeps the replies' hidden states for this head."""

    def __init__(self, backend, num_img_tokens: int, img_hidden_of: Callable | None = None, seed: int = 0,
                 copy_retrieved: bool = True, img_ids: Sequence[int] | None = None):
        self.backend, self.r, self.seed, self.copy_retrieved = backend, num_img_tokens, seed, copy_retrieved
        self.img_hidden_of = img_hidden_of or (lambda reply: img_hidden_from_reply(reply, num_img_tokens, img_ids))
        self.shown: dict[str, list[str]] = defaultdict(list)
        self._count = 0

    def apply(self, replies: Sequence, requests: Sequence, media_dir: Path) -> None:
        rows = [(i, h) for i, h in ((i, self.img_hidden_of(rep)) for i, rep in enumerate(replies)) if h is not None]
        if not rows:
            return
        idx = [i for i, _ in rows]
        hidden = torch.stack([h for _, h in rows]).float()
        emotions = [replies[i].emotion for i in idx]
        shown = [list(self.shown[requests[i].dialogue_id]) if requests[i].dialogue_id else [] for i in idx]
        names = [_name(requests[i], self._count + n) for n, i in enumerate(idx)]
        seeds = [requests[i].seed if requests[i].seed is not None else zlib.crc32(names[n].encode()) for n, i in enumerate(idx)]
        self._count += len(idx)
        Path(media_dir).mkdir(parents=True, exist_ok=True)
        for i, res in zip(idx, self.backend(hidden, emotions, shown=shown, media_dir=media_dir, names=names, seeds=seeds)):
            if res is None:
                continue
            if self.copy_retrieved and res.backend == "retrieve":
                res.path = _copy_beside(res.path, Path(media_dir), names[idx.index(i)])
            replies[i].extras[self.name] = res.to_dict()
            if res.id and requests[i].dialogue_id:
                self.shown[requests[i].dialogue_id].append(res.id)


def build_head(pipeline, cfg) -> StickerHead:
    """The head ``cfg.sticker`` describes: trained modules from ``sticker.modules`` (or ``<run folder>/sticker``),
    the library ``sticker.library`` (its encoder fingerprint checked against the run's), SD from ``sticker.sd_path``."""
    from elmd.heads.sticker.diffusion import StickerDiffusion
    from elmd.heads.sticker.head_model import StickerModules
    from elmd.heads.sticker.index import StickerLibrary

    sc = cfg.sticker.validate()
    device = str(getattr(pipeline, "device", "cpu"))
    run = Path(getattr(pipeline, "folder", None) or cfg.train.out)
    modules = StickerModules.load(sc.modules or run / "sticker", device=device).eval()
    modules.cfg = modules.cfg.replace(backend=sc.backend, top_k=sc.top_k, emotion_mode=sc.emotion_mode,
                                      exclude_shown=sc.exclude_shown)
    library = None
    if sc.backend in ("retrieve", "rag"):
        from elmd.errors import ConfigError

        if not sc.library:
            raise ConfigError(f"sticker.backend={sc.backend} needs sticker.library — build one with `elmd sticker build-library`")
        library = StickerLibrary.load(sc.library, _FingerprintOnly(sc, cfg.vision))
    diffusion = StickerDiffusion(sc.sd_path, sc, device) if sc.backend in ("generate", "rag") else None
    # architecture (r, k, widths) comes from the trained modules; selection and SD settings from the run
    img_ids = _run_ids(pipeline, modules.cfg.num_img_tokens)
    return StickerHead(build_backend(modules, library, diffusion), modules.cfg.num_img_tokens, seed=sc.seed, img_ids=img_ids)


def _run_ids(pipeline, r: int):
    """The ``[IMG1..r]`` ids of a run trained with stage `sticker` (its tokenizer holds them), else None."""
    from elmd.heads.sticker.tokens import img_token_names

    tok = getattr(pipeline, "tokenizer", None)
    names = img_token_names(r)
    if tok is None or not all(n in getattr(tok, "added_ids", {}) for n in names):
        return None
    return tok.token_ids(names)


class _FingerprintOnly:
    """The run's image-encoder identity without loading its weights (checkpoint fingerprints need none)."""

    def __init__(self, sc, vision_cfg):
        if sc.image_encoder == "open_clip":
            from elmd.heads.sticker.encoders import OpenClipImageEncoder

            enc = OpenClipImageEncoder(sc.clip_arch, sc.encoder_path)
            self.label, self.fingerprint = enc.label, enc.fingerprint
        else:
            from dataclasses import replace

            from elmd.models.visual_encoder import LazyVisualEncoder

            lazy = LazyVisualEncoder(replace(vision_cfg, path=sc.encoder_path or vision_cfg.path))
            self.label, self.fingerprint = f"visual:{vision_cfg.path or 'tiny'}", "visual-" + lazy.fingerprint()
