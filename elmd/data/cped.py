"""Importer for CPED (Chen et al., 2022; arXiv:2205.14727), the Chinese Personalized and
Emotional Dialogue corpus: CSV rows are sentences; ELMD merges consecutive rows of one speaker
(:mod:`elmd.data.merge`) and maps CPED's 13 emotions onto M3ED's 7 (:data:`CPED_TO_M3ED`).
Series = TV_ID; background = the scene(s) of the dialogue ("场景：家里"). Each turn also keeps
CPED's real per-sentence labels (optional canonical fields, :mod:`elmd.data.schema`): the
speaker's ``profile`` (Gender, Age), the dialogue ``act`` (DA) and the ``scene``; files without
those columns simply leave them unset. The file is UTF-8 (BOM optional) unless ``encoding`` is
given (:mod:`elmd.data.encoding`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from elmd.data.encoding import read_text
from elmd.data.merge import Sentence, merge_sentences
from elmd.data.schema import AGES, GENDERS, Dialogue
from elmd.errors import DataError

REQUIRED_COLUMNS = ("TV_ID", "Dialogue_ID", "Utterance_ID", "Speaker", "Scene", "Emotion", "Utterance")

CPED_TO_M3ED: dict[str, str | None] = {
    "happy": "happy", "grateful": "happy", "relaxed": "happy", "positive-other": "happy",
    "sadness": "sad", "depress": "sad",
    "fear": "fear", "worried": "fear",
    "astonished": "surprise",
    "anger": "anger", "disgust": "disgust", "neutral": "neutral",
    "negative-other": None,  # dropped by default; --keep-negative-other keeps it as its own label
}

SCENES_ZH = {
    "home": "家里", "office": "办公室", "restaurant": "餐厅", "car": "车里", "school": "学校",
    "hospital": "医院", "mall": "商场", "outdoor": "户外", "other-venue": "其他场所",
    "entertainment-venue": "娱乐场所", "sports-venue": "运动场所",
}


def _profile(row: dict) -> dict | None:
    """``{"gender", "age"}`` of a row with CPED's Gender / Age columns (unknown values -> "unknown")."""
    if row.get("Gender") is None and row.get("Age") is None:
        return None
    gender, age = (row.get("Gender") or "").strip(), (row.get("Age") or "").strip()
    return {"gender": gender if gender in GENDERS else "unknown", "age": age if age in AGES else "unknown"}


def _sentence(row: dict, mapping: dict, path: Path, lineno: int, video_template: str | None) -> Sentence:
    emotion = (row["Emotion"] or "").strip()
    if emotion not in mapping:
        raise DataError(path, f"unknown CPED emotion '{emotion}'", f"CPED's labels are {sorted(mapping)}", lineno)
    text = (row["Utterance"] or "").strip()
    if not text:
        raise DataError(path, "empty Utterance", "remove the row or fill in its text", lineno)
    video = video_template.format(series=row["TV_ID"], dialogue_id=row["Dialogue_ID"], utterance_id=row["Utterance_ID"]) if video_template else None
    return Sentence(row["Speaker"], text, mapping[emotion], video, profile=_profile(row),
                    act=(row.get("DA") or "").strip() or None, scene=(row.get("Scene") or "").strip() or None)


def read_cped(path: str | Path, keep_negative_other: bool = False, video_template: str | None = None,
              encoding: str | None = None) -> list[Dialogue]:
    """Read a CPED split CSV into merged dialogues (file order is dialogue order)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "is a folder, not a CSV file",
                        "point --input at CPED's *_split.csv (e.g. ../shared/data/cped/valid_split.csv)")
    mapping = dict(CPED_TO_M3ED)
    if keep_negative_other:
        mapping["negative-other"] = "negative-other"
    reader = csv.DictReader(io.StringIO(read_text(path, encoding), newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"missing CSV columns {missing}", f"CPED files need the header {', '.join(REQUIRED_COLUMNS)}", 1)
    rows: dict[str, list[tuple[dict, Sentence]]] = {}
    for row in reader:
        lineno = reader.line_num
        n = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
        if n != len(header):
            raise DataError(path, f"row has {n} of {len(header)} columns",
                            "check its commas and quotes (a text with a comma must be in double quotes)", lineno)
        rows.setdefault(row["Dialogue_ID"], []).append((row, _sentence(row, mapping, path, lineno, video_template)))
    dialogues = []
    for dialogue_id, items in rows.items():
        scenes = list(dict.fromkeys(SCENES_ZH.get(r["Scene"], r["Scene"]) for r, _ in items if r["Scene"]))
        dialogues.append(
            Dialogue(
                dialogue_id=dialogue_id,
                series=items[0][0]["TV_ID"],
                background=f"场景：{'、'.join(scenes)}" if scenes else "",
                turns=merge_sentences([s for _, s in items]),
            )
        )
    return dialogues
