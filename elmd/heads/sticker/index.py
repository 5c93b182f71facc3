"""The embedded sticker library (`elmd sticker build-library`), searched by the ``retrieve`` backend.

A library folder, written atomically (:func:`elmd.io.atomic_dir`), holds::

    index.faiss   FAISS Flat inner-product index of the stickers' unit image vectors (exact search)
    table.jsonl   one row per sticker: id, image (absolute path), emotion, description, recommendation
    meta.json     size, dim, the image encoder's label and fingerprint, the images folder, the sha256
                  of stickers.jsonl, stickers per emotion

The conventions are those of the demonstration index (:mod:`retrieval.index`): opening a library
with an image encoder whose fingerprint differs from the one that built it is refused, and an
existing folder is replaced only with ``overwrite``. Search scores a query against every sticker
(the library's own vectors, or ``keys`` such as the PEGS visual projection of them) and picks with
:func:`elmd.heads.sticker.select.select_stickers`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from elmd.data.labels import LabelSet
from elmd.errors import ElmdError
from elmd.heads.sticker.library import open_image, read_stickers, resolve_images
from elmd.heads.sticker.select import select_stickers
from elmd.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_jsonl, file_sha256

FORMAT = "elmd-sticker-library/1"


@dataclass
class StickerHit:
    """One chosen sticker."""

    id: str
    image: str
    """Absolute path of the image."""
    emotion: str
    score: float
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BuildReport:
    """What :func:`build_library` did."""

    out: Path
    size: int
    dim: int
    seconds: float
    encode_seconds: float
    per_emotion: dict


def encode_images(paths: Sequence[Path], encoder, batch_size: int = 32) -> np.ndarray:
    """Unit vectors [N, dim] of the images at ``paths``, encoded ``batch_size`` at a time while a
    background thread decodes and resizes the next batch (PIL releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    def load(batch):
        return [open_image(p, encoder.image_size) for p in batch]

    batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    out = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, batches[0]) if batches else None
        for j in range(len(batches)):
            ims = pending.result()
            if j + 1 < len(batches):
                pending = pool.submit(load, batches[j + 1])
            out.append(encoder.encode(ims, batch_size))
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def build_library(images: str | Path, meta: str | Path, out: str | Path, encoder, *, overwrite: bool = False,
                  labels: LabelSet | None = None, batch_size: int = 32) -> BuildReport:
    """Embed every sticker of ``meta`` (images under ``images``) with ``encoder`` into the folder ``out``."""
    import faiss

    out, t0 = Path(out), time.perf_counter()
    if out.exists() and not overwrite:
        raise ElmdError(f"{out} already exists — pass --overwrite to replace it, or choose another --out")
    stickers = read_stickers(meta, labels)
    paths = resolve_images(stickers, images, meta)
    t1 = time.perf_counter()
    vectors = encode_images(paths, encoder, batch_size)
    encode_s = time.perf_counter() - t1
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    table = [{**s.to_dict(), "image": str(p)} for s, p in zip(stickers, paths)]
    per_emotion = dict(sorted(Counter(s.emotion for s in stickers).items()))
    info = {"format": FORMAT, "size": len(table), "dim": int(vectors.shape[1]),
            "encoder": {"label": encoder.label, "fingerprint": encoder.fingerprint},
            "images": str(Path(images).resolve()), "stickers_sha256": file_sha256(meta), "per_emotion": per_emotion}
    with atomic_dir(out) as tmp:
        atomic_write_bytes(tmp / "index.faiss", faiss.serialize_index(index).tobytes())
        atomic_write_jsonl(tmp / "table.jsonl", table)
        atomic_write_json(tmp / "meta.json", info)
    return BuildReport(out, len(table), info["dim"], time.perf_counter() - t0, encode_s, per_emotion)


class StickerLibrary:
    """An opened library folder: table, meta and the [N, dim] matrix of unit image vectors."""

    def __init__(self, table: list[dict], vectors: np.ndarray, meta: dict, folder: Path | None = None):
        if len(table) != len(vectors):
            raise ElmdError(f"{folder}: {len(vectors)} vectors but {len(table)} table rows — rebuild the library")
        self.table, self.vectors, self.meta, self.folder = table, np.ascontiguousarray(vectors, np.float32), meta, folder
        self.ids = [r["id"] for r in table]
        self.emotions = np.array([r["emotion"] for r in table])
        self._codes = {e: c for c, e in enumerate(sorted(set(self.emotions.tolist())))}
        self._emotion_codes = np.array([self._codes[e] for e in self.emotions.tolist()], dtype=np.int32)  # fast masks
        self._pos = {sid: i for i, sid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def load(cls, folder: str | Path, encoder=None) -> "StickerLibrary":
        """Open ``folder``; with ``encoder`` given, one whose fingerprint differs from the builder's is refused."""
        import faiss

        folder = Path(folder)
        for name in ("index.faiss", "table.jsonl", "meta.json"):
            if not (folder / name).is_file():
                raise ElmdError(f"{folder}: no {name} — not a sticker library; build one with `elmd sticker build-library`")
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ElmdError(f"{folder}/meta.json: format {meta.get('format')!r} is not {FORMAT} — rebuild with `elmd sticker build-library`")
        with (folder / "table.jsonl").open(encoding="utf-8") as f:
            table = [json.loads(line) for line in f if line.strip()]
        index = faiss.deserialize_index(np.frombuffer((folder / "index.faiss").read_bytes(), dtype=np.uint8))
        lib = cls(table, index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32), meta, folder)
        if encoder is not None:
            lib.check_encoder(encoder)
        return lib

    def check_encoder(self, encoder) -> None:
        want = self.meta.get("encoder", {})
        if want.get("fingerprint") and encoder.fingerprint != want["fingerprint"]:
            raise ElmdError(
                f"{self.folder}: library was built by image encoder '{want.get('label')}' (fingerprint "
                f"{want['fingerprint'][:20]}) but this run's encoder '{encoder.label}' has {encoder.fingerprint[:20]} — "
                "use the encoder that built it, or rebuild with `elmd sticker build-library --overwrite`")

    def positions(self, sticker_ids: Iterable[str]) -> list[int]:
        """Library rows of the ids that are in the library (others are ignored)."""
        return [self._pos[s] for s in sticker_ids if s in self._pos]

    def hit(self, i: int, score: float) -> StickerHit:
        r = self.table[i]
        return StickerHit(r["id"], r["image"], r["emotion"], float(score), r.get("description", ""))

    def search(self, queries: np.ndarray, emotions: Sequence[str | None], k: int = 5,
               shown: Sequence[Iterable[str]] | None = None, mode: str = "prefer",
               keys: np.ndarray | None = None) -> list[list[StickerHit]]:
        """Stickers for each query row: ``queries`` [B, D] against ``keys`` [N, D] (default: the library's
        vectors), reply emotion ``emotions[b]``, never one of ``shown[b]`` (ids already in the conversation)."""
        keys = self.vectors if keys is None else keys
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != keys.shape[1]:
            raise ElmdError(f"query vectors have {queries.shape[1]} dims but the library keys {keys.shape[1]} — "
                            "project queries and stickers into the same space")
        scores = queries @ keys.T  # [B, N]
        out = []
        for b in range(len(queries)):
            excluded = None
            if shown is not None and shown[b]:
                excluded = np.zeros(len(self), bool)
                excluded[self.positions(shown[b])] = True
            code = None if emotions[b] is None else self._codes.get(emotions[b], -1)
            picked = select_stickers(scores[b], self._emotion_codes, code, k, excluded, mode)
            out.append([self.hit(i, scores[b, i]) for i in picked])
        return out
