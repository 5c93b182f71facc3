"""Importer for CPED (Chen et al., 2022; arXiv:2205.14727), the Chinese Personalized and
Emotional Dialogue corpus: CSV rows are sentences; ELMD merges consecutive rows of one speaker
(:mod:`elmd.data.merge`) and maps CPED's 13 emotions onto M3ED's 7 (:data:`CPED_TO_M3ED`).
Series = TV_ID; background = the scene(s) of the dialogue ("场景：家里")."""

from __future__ import annotations

import csv
from pathlib import Path

from elmd.data.merge import Sentence, merge_sentences
from elmd.data.schema import Dialogue
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


def read_cped(path: str | Path, keep_negative_other: bool = False, video_template: str | None = None) -> list[Dialogue]:
    """Read a CPED split CSV into merged dialogues (file order is dialogue order)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found", "point --input at CPED's *_split.csv (e.g. ../shared/data/cped/valid_split.csv)")
    mapping = dict(CPED_TO_M3ED)
    if keep_negative_other:
        mapping["negative-other"] = "negative-other"
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing CSV columns {missing}", f"CPED files need the header {', '.join(REQUIRED_COLUMNS)}", 1)
        rows: dict[str, list[tuple[dict, Sentence]]] = {}
        for lineno, row in enumerate(reader, start=2):
            emotion = (row["Emotion"] or "").strip()
            if emotion not in mapping:
                raise DataError(path, f"unknown CPED emotion '{emotion}'", f"CPED's labels are {sorted(mapping)}", lineno)
            text = (row["Utterance"] or "").strip()
            if not text:
                raise DataError(path, "empty Utterance", "remove the row or fill in its text", lineno)
            video = video_template.format(series=row["TV_ID"], dialogue_id=row["Dialogue_ID"], utterance_id=row["Utterance_ID"]) if video_template else None
            rows.setdefault(row["Dialogue_ID"], []).append((row, Sentence(row["Speaker"], text, mapping[emotion], video)))
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
