"""Importer for M3ED (Zhao et al., ACL 2022), the Multi-modal Multi-scene Multi-label Emotional
Dialogue dataset, from its published ``annotation.json``::

    annotation[movie][clip_id] = {"SpeakerInfo": {"A": {"Name": ...}, ...},
                                  "Dialog": {utt_id: {"StartTime", "EndTime", "Text", "Speaker",
                                                      "EmoAnnotation": {..., "final_main_emo": "Happy"}}}}

Sentences are merged per speaker run with the majority rule of :mod:`elmd.data.merge` (paper
Sec. 4.1). Tolerant of missing optional fields: no SpeakerInfo -> the speaker letter; no
``final_main_emo`` -> majority of the annotators' labels, else unlabelled; times are not needed.
Series = movie; dialogue id = clip id; background = "" (M3ED has none). The file is UTF-8 (BOM
optional) unless ``encoding`` is given (:mod:`elmd.data.encoding`).
"""

from __future__ import annotations

import json
from pathlib import Path

from elmd.data.encoding import read_text
from elmd.data.labels import M3ED_ALIASES, M3ED_LABELS
from elmd.data.merge import Sentence, majority_emotion, merge_sentences
from elmd.data.schema import Dialogue
from elmd.errors import DataError


def _label(raw, where: str, path: Path) -> str | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, list):  # some releases store multi-labels as lists: take the first
        raw = raw[0] if raw else None
        if raw is None:
            return None
    lab = M3ED_ALIASES.get(str(raw).strip(), str(raw).strip().lower())
    if lab not in M3ED_LABELS:
        raise DataError(path, f"{where}: unknown M3ED emotion '{raw}'", f"M3ED labels are {', '.join(M3ED_ALIASES)}")
    return lab


def _emotion(utt: dict, where: str, path: Path) -> str | None:
    emo = utt.get("EmoAnnotation") or {}
    if emo.get("final_main_emo"):
        return _label(emo["final_main_emo"], where, path)
    votes = [_label(v, where, path) for k, v in sorted(emo.items()) if k.startswith("EmoAnnotator")]
    return majority_emotion(votes)


def read_m3ed(path: str | Path, video_template: str | None = None, encoding: str | None = None) -> list[Dialogue]:
    """Read M3ED's annotation.json into merged dialogues (clips in file order)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "is a folder, not a JSON file",
                        "point --input at M3ED's annotation.json")
    try:
        data = json.loads(read_text(path, encoding))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg})", "re-download or repair the file", e.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, "expected {movie: {clip_id: {...}}}", "see ../shared/data/m3ed/FORMAT.md")
    dialogues = []
    for movie, clips in data.items():
        if not isinstance(clips, dict):
            raise DataError(path, f"{movie}: expected a mapping of clips", "see ../shared/data/m3ed/FORMAT.md")
        for clip_id, clip in clips.items():
            where = f"{movie}/{clip_id}"
            dialog = clip.get("Dialog") if isinstance(clip, dict) else None
            if not isinstance(dialog, dict) or not dialog:
                raise DataError(path, f"{where}: no 'Dialog' utterances", "every clip needs a non-empty Dialog mapping")
            names = {k: (v or {}).get("Name") or k for k, v in (clip.get("SpeakerInfo") or {}).items()}
            sentences = []
            for utt_id, utt in dialog.items():
                text = str(utt.get("Text") or "").strip()
                if not text:
                    raise DataError(path, f"{where}/{utt_id}: empty Text", "fill in or remove the utterance")
                speaker = str(utt.get("Speaker") or "")
                video = video_template.format(series=movie, dialogue_id=clip_id, utterance_id=utt_id) if video_template else None
                sentences.append(Sentence(names.get(speaker, speaker), text, _emotion(utt, f"{where}/{utt_id}", path), video))
            dialogues.append(Dialogue(dialogue_id=str(clip_id), series=str(movie), background="", turns=merge_sentences(sentences)))
    return dialogues
