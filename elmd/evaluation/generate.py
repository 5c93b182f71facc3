"""`elmd generate`: responses of a trained ELMD model for a test split (paper Sec. 4.3 decoding).

Every sample is answered by the run's :class:`~elmd.inference.pipeline.Pipeline` (the same code as
`elmd chat` and `elmd serve`): the six-part prompt of training with its demonstration retrieved from
the run's index (hits of the sample's own dialogue excluded; one batched search for the whole
split) and its video features from ``vision.feature_cache`` (misses are encoded), batched with left
padding (``generate.batch_size``), decoded with nucleus sampling (``generate.top_p`` 0.7,
``generate.temperature`` 0.95, no top-k) or greedily (``generate.greedy``) up to eos or
``generate.max_new_tokens``. Each sample draws from its own generator seeded with
``generate.seed + crc32(sample_id)``, so a row does not depend on the batch it lands in. The
emotion is parsed from the generated text (:func:`elmd.models.prompt.parse_output`); a row whose
label cannot be parsed keeps ``emotion_pred: null`` and is counted in the meta, never dropped.

Output: one JSON row per sample, appended (and fsynced) batch by batch, so an interrupted run is
resumed by running the same command again: rows already in the file are skipped and an incomplete
last line (a crash mid-write) is cut off. ``<out stem>.meta.json`` beside it records the
checkpoint, the config, the baseline and the counts. Rows: :mod:`elmd.inference.predictions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
import os
import sys
import time
from pathlib import Path

from elmd.errors import DataError, ElmdError

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

SETTINGS = ("checkpoint", "data", "baseline", "generate", "heads")
"""Meta fields that must match for a resume to append to an existing file."""

FSYNC_EVERY_S = 1.0
"""Rows are flushed after every batch and fsynced at most this often (and at the end): a crash
loses nothing the OS has, and a cut last line is repaired on resume (:func:`read_existing`)."""


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


def append_rows(out: Path, rows: list[dict], sync: bool = True) -> None:
    with out.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _check_resume(out: Path, settings: dict, have: set[str]) -> None:
    """Appending to rows already in ``out`` needs their ``.meta.json`` with the same settings."""
    mp = meta_path(out)
    if not have:
        return
    if not mp.exists():
        raise ElmdError(f"{out}: holds {len(have)} rows but no {mp.name}, so nothing tells which model wrote them — "
                        "pass --overwrite to generate afresh, or choose another --out")
    old = json.loads(mp.read_text(encoding="utf-8"))
    diff = [k for k in SETTINGS if old.get(k) != settings[k]]
    if diff:
        raise ElmdError(f"{out}: holds rows generated with other {', '.join(diff)} (see {mp}) — "
                        "pass --overwrite to generate afresh, or choose another --out")


def _staging(out: Path) -> Path:
    return out.with_name(f".{out.name}.staging")


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out``, its meta and media by the complete staged ones (old ones removed only after)."""
    import shutil

    for a, b in ((staging, out), (meta_path(staging), meta_path(out))):
        if a.exists():
            os.replace(a, b)
    if media_dir(staging).exists():
        old = media_dir(out).with_name(media_dir(out).name + ".old")
        if media_dir(out).exists():
            media_dir(out).rename(old)
        media_dir(staging).rename(media_dir(out))
        shutil.rmtree(old, ignore_errors=True)


def file_counts(out: Path) -> dict:
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()] if out.exists() else []
    from collections import Counter

    return {"rows": len(rows), "unparsable_emotions": sum(1 for r in rows if r.get("emotion_pred") is None),
            "empty_responses": sum(1 for r in rows if not r.get("response")),
            "emotion_distribution": dict(Counter(r.get("emotion_pred") or "none" for r in rows).most_common()),
            **meta_counts(rows)}


def meta_counts(rows: list[dict]) -> dict:
    """``{"meta_parse": {"parsed", "failed", "errors"}}`` of rows of a ``train.target=meta`` run
    (their ``meta`` field; failures are counted, never skipped); {} when no row has one."""
    metas = [r["meta"] for r in rows if isinstance(r.get("meta"), dict)]
    if not metas:
        return {}
    failed = [m.get("error", "") for m in metas if not m.get("ok")]
    return {"meta_parse": {"parsed": len(metas) - len(failed), "failed": len(failed),
                           "parse_rate": (len(metas) - len(failed)) / len(metas), "errors": failed[:20]}}


def meta_scores(pred_path: str | Path) -> dict | None:
    """`elmd evaluate`'s view of :func:`meta_counts` (None when the rows carry no ``meta``)."""
    rows = [json.loads(line) for line in Path(pred_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return meta_counts(rows).get("meta_parse")


def format_meta_summary(scores: dict) -> str:
    return (f"meta-response: {scores['parsed']} parsed, {scores['failed']} failed "
            f"(parse rate {100 * scores['parse_rate']:.1f}%)")


def media_dir(out: str | Path) -> Path:
    """Where the heads put their files for prediction file ``out``: ``<stem>.media/`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".media")


def generate_file(checkpoint: str | Path, data: str | Path | None, out: str | Path, baseline: str = "none",
                  overrides=(), progress: bool = True, pipeline=None, log=None, heads=(), overwrite: bool = False) -> dict:
    """Write predictions of ``checkpoint`` (or a baseline) for every sample of ``data`` to ``out``.

    ``overrides``: ``key=value`` on the run's config; ``data`` None = the run's ``data.test``;
    ``pipeline``: an already loaded :class:`~elmd.inference.pipeline.Pipeline` of ``checkpoint``
    (the overrides and the baseline's switches are applied to a copy); ``heads``: downstream heads
    whose fields join each row (their media under :func:`media_dir`); ``overwrite``: replace an
    existing file (the new one is written beside it and swapped in when complete). Returns the meta."""
    from elmd.data.jsonl import read_samples
    from elmd.evaluation.baselines import baseline_pipeline, mismatch_warnings

    log = log or (lambda msg: print(msg, file=sys.stderr))
    from dataclasses import replace

    pipe = baseline_pipeline(checkpoint, baseline, overrides, pipeline)
    cfg, final = pipe.cfg, Path(out)
    if final.exists() and not final.is_file():
        raise ElmdError(f"{final}: is a folder — --out names the predictions file (e.g. {final / 'preds.jsonl'})")
    out = _staging(final) if overwrite and final.exists() else final
    for stale in (out, meta_path(out)) if out != final else ():
        stale.unlink(missing_ok=True)
    if heads:
        pipe = replace(pipe, media_dir=media_dir(out)).with_heads(list(heads))
    data = data or cfg.data.test
    samples = read_samples(data, pipe.labels, cfg.data.max_samples)
    if not samples:
        raise DataError(data, "has no samples to generate for", "check --data (a split written by `elmd data prepare`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    have, repaired = read_existing(out)
    settings = {"checkpoint": str(Path(checkpoint).resolve()), "data": str(Path(data).resolve()), "baseline": baseline,
                "generate": {k: v for k, v in vars(cfg.generate).items() if k not in ("batch_size", "device")},
                "heads": list(heads)}
    _check_resume(out, settings, have)
    from elmd.io import atomic_write_json

    atomic_write_json(meta_path(out), {**settings, "complete": False})  # what the rows come from, before any row
    todo = [s for s in samples if s.sample_id not in have]
    warnings = mismatch_warnings(pipe.meta_config(), cfg, baseline) if baseline in ("text-only", "single-frame") else []
    for w in warnings:
        log(f"warning: {w}")
    start = time.perf_counter()
    tokens = _generate_rows(pipe, todo, out, baseline, progress) if todo else 0
    elapsed = time.perf_counter() - start
    meta = {**settings, "stage": pipe.spec.name, "samples": len(samples), "skipped_existing": len(samples) - len(todo),
            "generated": len(todo), "repaired_last_line": repaired, "new_tokens": tokens, "seconds": elapsed,
            "tokens_per_s": tokens / elapsed if tokens and elapsed > 0 else None, "warnings": warnings,
            "emotion_mode": cfg.generate.emotion, **file_counts(out), "config": _cfg_dict(cfg), "complete": True}
    atomic_write_json(meta_path(out), meta)
    if out != final:
        _swap_in(out, final)
    return meta


def _generate_rows(pipe, todo, out: Path, baseline: str, progress: bool) -> int:
    from tqdm import tqdm

    from elmd.evaluation.baselines import retrieval_only_replies
    from elmd.inference.pipeline import request_of, request_seed
    from elmd.inference.predictions import prediction_of

    seed = pipe.cfg.generate.seed
    requests = [request_of(s, request_seed(seed, s.sample_id)) for s in todo]
    if baseline == "retrieval-only":
        replies = retrieval_only_replies(pipe, requests)
        append_rows(out, [prediction_of(s, r).to_row() for s, r in zip(todo, replies)])
        return 0
    demos = pipe.demonstrations(requests)  # one batched search for the whole split
    tokens, bs, synced = 0, max(1, pipe.cfg.generate.batch_size), time.monotonic()
    with tqdm(total=len(todo), desc="generate", unit="sample", disable=None if progress else True) as bar:
        for i in range(0, len(todo), bs):
            replies = pipe.respond_batch(requests[i:i + bs], demos[i:i + bs])
            last = i + bs >= len(todo)
            sync = last or time.monotonic() - synced >= FSYNC_EVERY_S
            append_rows(out, [prediction_of(s, r).to_row() for s, r in zip(todo[i:i + bs], replies)], sync)
            synced = time.monotonic() if sync else synced
            tokens += sum(r.new_tokens for r in replies)
            bar.update(len(replies))
    return tokens


def _cfg_dict(cfg: ELMDConfig) -> dict:
    from elmd.config import config_to_dict

    return config_to_dict(cfg)
