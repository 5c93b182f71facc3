"""`elmd data prepare`: import a corpus (M3ED annotation.json, CPED CSV or canonical JSONL), split
it and write ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``, ``stats.json`` and ``config.yaml``.

All files are first written to a staging folder inside ``out`` and then renamed into place, with
``stats.json`` last: a failed run leaves the previous outputs untouched and no half-written split.

``config.yaml`` is the command's resolved config with ``data.train/valid/test`` = the splits just
written, its paths portable (:func:`elmd.runs.portable_config`: ``./train.jsonl``), so
``--config OUT/config.yaml`` uses them from any working directory.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from elmd.data.config import DataConfig
from elmd.data.cped import read_cped
from elmd.data.jsonl import read_dialogues
from elmd.data.labels import LabelSet, label_set_from_config
from elmd.data.leaks import count_leaks, unlabel_copies
from elmd.data.m3ed import read_m3ed
from elmd.data.schema import Dialogue, build_samples
from elmd.data.split import SPLITS, split_dialogues
from elmd.errors import DataError, ElmdError
from elmd.io import atomic_write_json, atomic_write_jsonl, atomic_write_text

FORMATS = ("m3ed", "cped", "jsonl")


def load_corpus(fmt: str, path: str | Path, labels: LabelSet, keep_negative_other: bool = False,
                video_template: str | None = None, encoding: str | None = None) -> list[Dialogue]:
    """Read any supported input format into canonical dialogues, checking labels. ``encoding``:
    the input's text encoding (None = UTF-8, BOM optional; :mod:`elmd.data.encoding`)."""
    if fmt == "cped":
        dialogues = read_cped(path, keep_negative_other, video_template, encoding)
    elif fmt == "m3ed":
        dialogues = read_m3ed(path, video_template, encoding)
    elif fmt == "jsonl":
        dialogues = read_dialogues(path, labels, resolve_videos=False, encoding=encoding)
    else:
        raise ElmdError(f"unknown format '{fmt}' — use one of {', '.join(FORMATS)}")
    for d in dialogues:
        for t in d.turns:
            if t.emotion is not None and t.emotion not in labels:
                raise DataError(path, f"label '{t.emotion}' (dialogue {d.dialogue_id}) is not in the label set {list(labels.ids)}",
                                f"add it with --set 'data.labels=[...,{t.emotion}]'")
    return dialogues


def split_stats(dialogues: list[Dialogue]) -> dict:
    samples = build_samples(dialogues)
    return {
        "dialogues": len(dialogues),
        "utterances": sum(len(d.turns) for d in dialogues),
        "samples": len(samples),
        "utterance_emotions": dict(sorted(Counter(t.emotion or "unlabelled" for d in dialogues for t in d.turns).items())),
        "target_emotions": dict(sorted(Counter(s.target_emotion for s in samples).items())),
        "with_video": sum(1 for s in samples if s.video),
    }


def _portable(dialogues: list[Dialogue], src_dir: Path, out: Path) -> list[dict]:
    """Canonical rows with relative video paths (relative to the input file's folder) rewritten
    relative to the output folder; absolute paths stay as they are."""
    rows = []
    for d in dialogues:
        row = d.to_dict()
        for t in row["turns"]:
            if t.get("video") and not os.path.isabs(t["video"]):
                t["video"] = os.path.relpath((src_dir / t["video"]).resolve(), out.resolve())
        rows.append(row)
    return rows


def config_text(cfg: DataConfig, out: Path, config=None) -> str:
    """``out/config.yaml``: ``config`` (the command's whole config, else only ``data``) with the
    data paths = the splits in ``out``, every path portable (relative to ``out`` as ./ or ../)."""
    data = replace(cfg, **{name: str(out / f"{name}.jsonl") for name in SPLITS})
    if config is None:
        data = replace(data, **{name: f"./{name}.jsonl" for name in SPLITS})
        return yaml.safe_dump({"data": asdict(data)}, sort_keys=False, allow_unicode=True)
    from elmd.configio import format_config
    from elmd.runs import portable_config

    full = copy.deepcopy(config)
    full.data = data
    return format_config(portable_config(full, out))


def prepare(fmt: str, input_path: str | Path, out: str | Path, cfg: DataConfig, *,
            keep_negative_other: bool = False, video_template: str | None = None,
            encoding: str | None = None, config=None, overwrite: bool = False) -> dict:
    """Import, split 8:1:1 (cfg.split_ratios) by cfg.split_by with cfg.seed, write the folder.
    ``config``: the whole ELMDConfig the command ran with, saved (portable) as config.yaml.
    Splits already in ``out`` that differ from the new ones are replaced only with ``overwrite``
    (the same splits again are rewritten quietly, with a fresh config.yaml and stats.json)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is a file, not a folder", "give --out a folder (new or a previous `data prepare` output)")
    labels = label_set_from_config(cfg.labels, cfg.label_names)
    if keep_negative_other and "negative-other" not in labels:
        labels = LabelSet(labels.ids + ("negative-other",), labels.names)
    dialogues = load_corpus(fmt, input_path, labels, keep_negative_other, video_template, encoding)
    splits = split_dialogues(dialogues, cfg.split_ratios, cfg.split_by, cfg.seed)
    unlabelled = {}
    if cfg.unlabel_copies:
        for name in SPLITS[1:]:
            splits[name], unlabelled[name] = unlabel_copies(splits["train"], splits[name])
    stats = {
        "format": fmt,
        "input": str(input_path),
        "split_by": cfg.split_by,
        "split_ratios": cfg.split_ratios,
        "seed": cfg.seed,
        "encoding": encoding or "utf-8",
        "labels": list(labels.ids),
        "keep_negative_other": keep_negative_other,
        "splits": {name: split_stats(part) for name, part in splits.items()},
        "leaks": {name: count_leaks(splits["train"], splits[name]).to_dict() for name in SPLITS[1:]},
    }
    if cfg.unlabel_copies:
        stats["unlabelled_copies"] = unlabelled
    rows = {name: _portable(splits[name], Path(input_path).parent, out) for name in SPLITS}
    if not overwrite:
        _refuse_other_splits(out, rows)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        for name in SPLITS:
            atomic_write_jsonl(staging / f"{name}.jsonl", rows[name])
        atomic_write_text(staging / "config.yaml", config_text(replace(cfg, labels=list(labels.ids)), out, config))
        atomic_write_json(staging / "stats.json", stats)
        for name in [f"{s}.jsonl" for s in SPLITS] + ["config.yaml", "stats.json"]:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return stats


def _refuse_other_splits(out: Path, rows: dict[str, list[dict]]) -> None:
    """A one-line ElmdError when ``out`` holds splits other than ``rows`` (nothing is lost silently)."""
    differ = []
    for name, part in rows.items():
        old = out / f"{name}.jsonl"
        if old.is_file() and old.read_bytes() != "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part).encode("utf-8"):
            differ.append(old.name)
    if differ:
        raise ElmdError(f"{out}: already holds other splits ({', '.join(differ)} differ from this input and settings) — "
                        "pass --overwrite to replace them, or choose another --out")


def leak_warnings(stats: dict) -> list[str]:
    """One line per held-out split whose replies have copies in train (empty when leak-free)."""
    lines = []
    for name, leak in stats.get("leaks", {}).items():
        if leak["near"]:
            lines.append(f"warning: {leak['near']} of {leak['replies']} {name} replies have a copy in train "
                         f"({leak['exact']} verbatim, {leak['near'] - leak['exact']} more at char-F1 >= {leak['threshold']}; e.g. "
                         f"'{leak['examples'][0]}') — retrieval and memorising models will look better than they are; "
                         "drop their labels with --set data.unlabel_copies=true, or split by situation with --split-by series")
    return lines


def format_stats(stats: dict) -> str:
    """A small text table of a stats.json."""
    labels = sorted({lab for s in stats["splits"].values() for lab in s["target_emotions"]})
    head = f"{'split':<6} {'dialogues':>9} {'utterances':>10} {'samples':>8}  " + " ".join(f"{lab:>8}" for lab in labels)
    lines = [head, "-" * len(head)]
    for name, s in stats["splits"].items():
        counts = " ".join(f"{s['target_emotions'].get(lab, 0):>8}" for lab in labels)
        lines.append(f"{name:<6} {s['dialogues']:>9} {s['utterances']:>10} {s['samples']:>8}  {counts}")
    lines.append("(label columns: samples per target emotion, i.e. the emotion of the response)")
    return "\n".join(lines)
