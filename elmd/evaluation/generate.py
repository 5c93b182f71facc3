"""`elmd generate`: responses of a trained ELMD model for a test split (paper Sec. 4.3 decoding).

Each sample's prompt is the six-part prompt of training (:func:`elmd.models.prompt.encode_prompt`,
stage = the checkpoint's stage) with its demonstration retrieved from the run's index (hits of the
sample's own dialogue excluded) and its video features from ``vision.feature_cache`` (misses are
encoded). Prompts are batched with left padding (``generate.batch_size``) and decoded with nucleus
sampling (``generate.top_p`` 0.7, ``generate.temperature`` 0.95, no top-k) or greedily
(``generate.greedy``) up to eos or ``generate.max_new_tokens``. The emotion is parsed from the
generated text (:func:`elmd.models.prompt.parse_output`); a row whose label cannot be parsed keeps
``emotion_pred: null`` and is counted in the meta, never dropped.

Output: one JSON row per sample, appended (and fsynced) batch by batch, so an interrupted run is
resumed by running the same command again: rows already in the file are skipped and an incomplete
last line (a crash mid-write) is cut off. ``<out stem>.meta.json`` beside it records the
checkpoint, the config, the baseline and the counts. Rows::

    {"sample_id", "emotion_pred", "response", "reference", "reference_emotion", "demonstration", "generated"}
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from elmd.errors import DataError, ElmdError

SETTINGS = ("checkpoint", "data", "baseline", "generate")
"""Meta fields that must match for a resume to append to an existing file."""


@dataclass
class Generated:
    """One decoded answer: the raw text, its parsed emotion id (or None) and response, token count."""

    text: str
    emotion: str | None
    response: str
    new_tokens: int


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ElmdError(f"generate.device '{name}' — use auto, cpu or cuda")
    return torch.device(name)


def run_config(checkpoint: str | Path, overrides=()):
    """The checkpoint's saved config with ``key=value`` overrides on top (tokenizer = its copy)."""
    from elmd.config import load_config
    from elmd.training.session import read_meta

    folder = Path(checkpoint)
    read_meta(folder)  # a one-line error when the folder is not a finished training output
    cfg = load_config(str(folder / "config.yaml"), list(overrides))
    cfg.llm.tokenizer = str(folder / "tokenizer.model")
    return cfg


def batch_seed(seed: int, sample_ids: list[str]) -> int:
    """The seed of one batch: ``seed`` + crc32 of its sample ids (stable across runs and resumes)."""
    return (seed + zlib.crc32("\n".join(sample_ids).encode("utf-8"))) % (2 ** 31)


class Generator:
    """Prompts -> decoded answers with one loaded model; shared by `elmd generate` and `elmd chat`.

    ``video_transform(feats [B, m, Q, q], sample_ids) -> feats`` changes the video features of a
    batch (the single-frame baseline)."""

    def __init__(self, model, tokenizer, cfg, device=None, video_transform=None, encoder=None):
        from elmd.training.data import FeatureStore, labels_of, video_tokens

        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.device = device or next(model.parameters()).device
        self.labels, self.stage = labels_of(cfg), cfg.train.stage
        self.n_video = video_tokens(cfg)
        self.store = FeatureStore(cfg.vision, encoder, in_memory=False) if self.n_video else None
        self.video_transform = video_transform

    def encode(self, sample, demonstration: str) -> dict:
        """The prompt (no target) of ``sample``: input_ids and video_mask lists."""
        from elmd.models.prompt import encode_prompt

        return encode_prompt(sample, demonstration, self.tokenizer, self.labels, self.stage, self.n_video, self.cfg.prompt)

    def batch(self, encoded: list[dict], videos: list[str | None], sample_ids: list[str]) -> dict:
        """Left-padded tensors (with video features where a prompt has video positions) on the device."""
        from elmd.models.prompt import collate

        batch = collate(encoded, self.tokenizer.pad_id)
        if self.store is not None and batch["video_mask"].any():
            paths = [v if any(e["video_mask"]) else None for v, e in zip(videos, encoded)]
            feats = self.store(paths)
            if self.video_transform is not None:
                feats = self.video_transform(feats, sample_ids)
            batch["video_feats"] = feats
        return {k: v.to(self.device) for k, v in batch.items()}

    def decoding_kwargs(self) -> dict:
        g = self.cfg.generate
        kw = {"max_new_tokens": g.max_new_tokens, "eos_token_id": self.tokenizer.eos_id,
              "pad_token_id": self.tokenizer.pad_id}
        if g.greedy:
            return {**kw, "do_sample": False}
        return {**kw, "do_sample": True, "top_p": g.top_p, "temperature": g.temperature, "top_k": 0}

    def generate(self, encoded: list[dict], videos: list[str | None], sample_ids: list[str]) -> list[Generated]:
        """Decode one batch (seeded with :func:`batch_seed`); stops at eos."""
        from elmd.models.prompt import parse_output

        batch = self.batch(encoded, videos, sample_ids)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(batch_seed(self.cfg.generate.seed, sample_ids))
            new = self.model.generate(**batch, **self.decoding_kwargs())
        out = []
        for row in new.tolist():
            ids = row[:row.index(self.tokenizer.eos_id)] if self.tokenizer.eos_id in row else row
            text = self.tokenizer.decode(ids)
            emotion, response = parse_output(text, self.labels)
            out.append(Generated(text, emotion, response, len(ids) + (self.tokenizer.eos_id in row)))
        return out


def read_existing(out: Path) -> tuple[set[str], bool]:
    """Sample ids already in ``out``; an incomplete or corrupt last line is truncated away.
    Returns (ids, whether the file was repaired). A corrupt line elsewhere is an error."""
    if not out.exists():
        return set(), False
    data = out.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline ('' when none)
    repaired = bool(tail.strip())
    if not repaired and complete:
        try:
            json.loads(complete[-1])
        except ValueError:  # a crash after writing a newline-terminated garbage line
            complete, repaired = complete[:-1], True
    ids = set()
    for n, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["sample_id"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(out, "is not a prediction file written by `elmd generate` (bad row)",
                            "delete it or choose another --out", n) from None
    if repaired:
        keep = b"".join(line + b"\n" for line in complete)
        with out.open("r+b") as f:
            f.truncate(len(keep))
            f.seek(0)
            f.write(keep)
            f.flush()
            os.fsync(f.fileno())
    return ids, repaired


def meta_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".meta.json")


def append_rows(out: Path, rows: list[dict]) -> None:
    with out.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def _check_resume(out: Path, settings: dict, have: set[str]) -> None:
    mp = meta_path(out)
    if not have or not mp.exists():
        return
    old = json.loads(mp.read_text(encoding="utf-8"))
    diff = [k for k in SETTINGS if k in old and old[k] != settings[k]]
    if diff:
        raise ElmdError(f"{out}: holds rows generated with other {', '.join(diff)} (see {mp}) — "
                        "delete it or choose another --out to generate afresh")


def file_counts(out: Path) -> dict:
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()] if out.exists() else []
    return {"rows": len(rows), "unparsable_emotions": sum(1 for r in rows if r.get("emotion_pred") is None),
            "empty_responses": sum(1 for r in rows if not r.get("response"))}


def generate_file(cfg, checkpoint: str | Path, data: str | Path, out: str | Path, baseline: str = "none",
                  progress: bool = True, loaded=None, encoder=None, index=None, log=None) -> dict:
    """Write predictions of ``checkpoint`` (or a baseline) for every sample of ``data`` to ``out``.

    ``cfg``: the run's config (:func:`run_config`) with overrides; ``loaded``: an already loaded
    ``(model, tokenizer)`` (else :func:`~elmd.training.session.load_trained`). Returns the meta."""
    from elmd.data.jsonl import read_samples
    from elmd.evaluation.baselines import baseline_config, mismatch_warnings, retrieval_only_rows
    from elmd.training.data import labels_of

    log = log or (lambda msg: print(msg, file=sys.stderr))
    stage, cfg = cfg.train.stage, baseline_config(cfg, baseline)
    labels, out = labels_of(cfg), Path(out)
    samples = read_samples(data, labels, cfg.data.max_samples)
    if not samples:
        raise DataError(data, "has no samples to generate for", "check --data (a split written by `elmd data prepare`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    have, repaired = read_existing(out)
    settings = {"checkpoint": str(Path(checkpoint).resolve()), "data": str(Path(data).resolve()), "baseline": baseline,
                "generate": {k: v for k, v in vars(cfg.generate).items() if k not in ("batch_size", "device")}}
    _check_resume(out, settings, have)
    todo = [s for s in samples if s.sample_id not in have]
    warnings = mismatch_warnings(_saved_config(checkpoint), cfg, baseline) if baseline in ("text-only", "single-frame") else []
    for w in warnings:
        log(f"warning: {w}")
    start, tokens = time.perf_counter(), 0
    if baseline == "retrieval-only":
        if todo:
            append_rows(out, retrieval_only_rows(cfg, todo, labels, index))
    elif todo:
        tokens = _generate_rows(cfg, checkpoint, todo, out, baseline, progress, loaded, encoder, index)
    elapsed = time.perf_counter() - start
    meta = {**settings, "stage": stage, "samples": len(samples), "skipped_existing": len(samples) - len(todo),
            "generated": len(todo), "repaired_last_line": repaired, "new_tokens": tokens, "seconds": elapsed,
            "tokens_per_s": tokens / elapsed if tokens and elapsed > 0 else None, "warnings": warnings,
            **file_counts(out), "config": _cfg_dict(cfg)}
    from elmd.io import atomic_write_json

    atomic_write_json(meta_path(out), meta)
    return meta


def _generate_rows(cfg, checkpoint, todo, out, baseline, progress, loaded, encoder, index) -> int:
    from tqdm import tqdm

    from elmd.evaluation.baselines import single_frame
    from elmd.training.data import retrieve_demonstrations

    demos = retrieve_demonstrations(cfg, todo, _labels(cfg), index)
    if loaded is None:
        from elmd.training.session import load_trained

        model, tokenizer, _ = load_trained(checkpoint, resolve_device(cfg.generate.device))
    else:
        model, tokenizer = loaded
    transform = (lambda f, ids: single_frame(f, ids, cfg.generate.seed)) if baseline == "single-frame" else None
    gen = Generator(model, tokenizer, cfg, video_transform=transform, encoder=encoder)
    tokens, bs = 0, max(1, cfg.generate.batch_size)
    with tqdm(total=len(todo), desc="generate", unit="sample", disable=None if progress else True) as bar:
        for i in range(0, len(todo), bs):
            part, part_demos = todo[i:i + bs], demos[i:i + bs]
            enc = [gen.encode(s, d) for s, d in zip(part, part_demos)]
            outs = gen.generate(enc, [s.video for s in part], [s.sample_id for s in part])
            append_rows(out, [row(s, d, g) for s, d, g in zip(part, part_demos, outs)])
            tokens += sum(g.new_tokens for g in outs)
            bar.update(len(part))
    return tokens


def row(sample, demonstration: str, g: Generated) -> dict:
    return {"sample_id": sample.sample_id, "emotion_pred": g.emotion, "response": g.response,
            "reference": sample.response.text, "reference_emotion": sample.target_emotion,
            "demonstration": demonstration, "generated": g.text}


def _labels(cfg):
    from elmd.training.data import labels_of

    return labels_of(cfg)


def _saved_config(checkpoint):
    from elmd.config import load_config

    return load_config(str(Path(checkpoint) / "config.yaml"))


def _cfg_dict(cfg) -> dict:
    from elmd.config import config_to_dict

    return config_to_dict(cfg)
