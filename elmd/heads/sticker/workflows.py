"""What the `elmd sticker ...` commands run: one function per command, config in, typed result out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elmd.errors import ElmdError
from elmd.io import atomic_write_jsonl


def build_library_from_config(images: str | Path, meta: str | Path, out: str | Path, cfg, *, overwrite: bool = False,
                              batch_size: int = 32):
    """`elmd sticker build-library`: the image encoder ``cfg.sticker`` names (with ``cfg.vision``), then
    :func:`elmd.heads.sticker.index.build_library`."""
    from elmd.data.labels import label_set_from_config
    from elmd.heads.sticker.encoders import build_image_encoder
    from elmd.heads.sticker.index import build_library
    from elmd.heads.sticker.library import read_stickers, resolve_images

    if Path(out).exists() and not overwrite:  # refuse before loading any encoder
        raise ElmdError(f"{out} already exists — pass --overwrite to replace it, or choose another --out")
    cfg.sticker.validate()
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    resolve_images(read_stickers(meta, labels), images, meta)  # bad rows fail before any encoder loads
    encoder = build_image_encoder(cfg.sticker, cfg.vision)
    return build_library(images, meta, out, encoder, overwrite=overwrite, labels=labels, batch_size=batch_size)


@dataclass
class ImportReport:
    """What :func:`import_stickerconv` wrote."""

    dialogues: int
    turns: int
    turns_with_sticker: int
    replies_with_sticker: int
    replies: int
    stickers: int
    """Unique stickers with a known emotion written to ``stickers_out`` (0 when not asked)."""


def import_stickerconv(input_path: str | Path, out: str | Path, stickers_out: str | Path | None = None, *,
                       default_emotion: str | None = None, overwrite: bool = False) -> ImportReport:
    """StickerConv conversations -> canonical dialogue JSONL ``out`` (and ``stickers.jsonl`` rows of its stickers)."""
    from elmd.data.labels import M3ED_LABELS
    from elmd.data.stickerconv import SYSTEM, read_stickerconv, stickers_of

    if default_emotion is not None and default_emotion not in M3ED_LABELS:
        raise ElmdError(f"--default-emotion '{default_emotion}' is not a label — use one of {', '.join(M3ED_LABELS)}")
    for p in (out, stickers_out):
        if p is not None and Path(p).exists() and not overwrite:
            raise ElmdError(f"{p} already exists — pass --overwrite to replace it")
    rows = read_stickerconv(input_path, default_emotion=default_emotion)
    stickers = stickers_of(rows) if stickers_out is not None else []
    atomic_write_jsonl(out, rows)
    if stickers_out is not None:
        atomic_write_jsonl(stickers_out, stickers)
    turns = [t for r in rows for t in r["turns"]]
    replies = [t for t in turns if t["speaker"] == SYSTEM]
    return ImportReport(len(rows), len(turns), sum("sticker" in t for t in turns), sum("sticker" in t for t in replies),
                        len(replies), len(stickers))


def search_library(library: str | Path, image: str | Path, cfg, *, emotion: str | None = None, k: int = 5,
                   mode: str = "prefer"):
    """`elmd sticker search`: the library stickers nearest to ``image`` in the image encoder's space
    (the encoder must be the one that built the library)."""
    from elmd.heads.sticker.encoders import build_image_encoder
    from elmd.heads.sticker.index import StickerLibrary
    from elmd.heads.sticker.library import open_image

    lib = StickerLibrary.load(library)  # fails fast on a bad folder, before the encoder loads
    encoder = build_image_encoder(cfg.sticker, cfg.vision)
    lib.check_encoder(encoder)
    q = encoder.encode([open_image(image, encoder.image_size)])
    return lib.search(q, [emotion], k=k, mode=mode)[0]
