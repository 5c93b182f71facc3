"""`elmd evaluate`'s sticker scores on a hand-made predictions file (Freq, emotion accuracy, prior,
recall@k, MMr / f-MMr) and the text measure they use."""

from __future__ import annotations

import json
import math

import pytest

from elmd.heads.sticker.evaluate import sticker_metrics, text_cosine


def test_text_cosine_by_hand():
    assert text_cosine("ab", "ab") == pytest.approx(1.0)
    assert text_cosine("ab", "b") == pytest.approx(1 / math.sqrt(3))  # {a, b, ab} vs {b}
    assert text_cosine("", "ab") == 0.0 and text_cosine("a b", "ab") == pytest.approx(1.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    from elmd.heads.sticker.draw import draw_library
    from elmd.heads.sticker.index import build_library
    from elmd.heads.sticker.encoders import VisualImageEncoder
    from elmd.models.visual_encoder import VisualEncoder

    root = tmp_path_factory.mktemp("sticker_eval")
    draw_library(root / "set", size=32, poses=1)  # 56 stickers, 8 per emotion
    build_library(root / "set", root / "set" / "stickers.jsonl", root / "lib",
                  VisualImageEncoder(VisualEncoder.tiny(image_size=32, num_query_tokens=4)))
    return root / "lib"


def _sticker(lib_rows, sid, candidates=()):
    row = lib_rows[sid]
    return {"path": "x.png", "backend": "retrieve", "id": sid, "emotion": row["emotion"], "score": 0.5,
            "candidates": [{"id": c, "emotion": lib_rows[c]["emotion"], "description": lib_rows[c]["description"]}
                           for c in (sid, *candidates)]}


def test_sticker_scores_of_a_hand_made_file(library, tmp_path):
    from elmd.evaluation.evaluate import evaluate_file, format_summary
    from elmd.heads.sticker.index import StickerLibrary

    lib = StickerLibrary.load(library)
    rows = {r["id"]: r for r in lib.table}
    happy = [i for i in rows if rows[i]["emotion"] == "happy"]
    sad = [i for i in rows if rows[i]["emotion"] == "sad"]
    data = tmp_path / "test.jsonl"  # gold stickers: d1's reply has happy[0], d3's none
    dialogues = [
        {"dialogue_id": "d1", "series": "s", "background": "", "turns": [
            {"speaker": "A", "text": "嗨", "emotion": "neutral"},
            {"speaker": "B", "text": "好", "emotion": "happy", "sticker": rows[happy[0]]}]},
        {"dialogue_id": "d2", "series": "s", "background": "", "turns": [
            {"speaker": "A", "text": "嗨", "emotion": "neutral"},
            {"speaker": "B", "text": "唉", "emotion": "happy", "sticker": rows[sad[1]]}]},
        {"dialogue_id": "d3", "series": "s", "background": "", "turns": [
            {"speaker": "A", "text": "嗨", "emotion": "neutral"}, {"speaker": "B", "text": "你好", "emotion": "sad"}]},
    ]
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dialogues), encoding="utf-8")
    preds = [  # d1: right emotion, gold first; d2: wrong emotion, gold 2nd of 5; d3: no sticker
        {"sample_id": "d1#0", "emotion_pred": "happy", "response": "好", "reference": "好", "reference_emotion": "happy",
         "sticker": _sticker(rows, happy[0], happy[1:5])},
        {"sample_id": "d2#0", "emotion_pred": "sad", "response": "唉", "reference": "唉", "reference_emotion": "happy",
         "sticker": _sticker(rows, sad[0], [sad[1]])},
        {"sample_id": "d3#0", "emotion_pred": "sad", "response": "你好", "reference": "你好", "reference_emotion": "sad"},
    ]
    pred = tmp_path / "preds.jsonl"
    pred.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds), encoding="utf-8")
    (tmp_path / "preds.meta.json").write_text(json.dumps({"data": str(data), "config": {"sticker": {"library": str(library)}}}))
    m = sticker_metrics(pred)
    assert m["Freq"] == pytest.approx(100 * 2 / 3)
    assert m["Sticker-Emo-Acc"] == pytest.approx(50.0)  # d1 happy = happy, d2 sad != happy
    assert m["Library-prior"] == pytest.approx(100 / 7)  # a uniform library: 1/7 whatever the references
    assert m["R@1"] == pytest.approx(50.0) and m["R@5"] == pytest.approx(100.0) and m["gold_stickers"] == 2
    # d3: no sticker on either side -> MMr = f = tt = 100 (same text); d1: same text, same sticker:
    # precision = recall = (100 + 100) / 2 -> f = 100, MMr = (200 + tv + vt) / 4 with the description measure
    d = rows[happy[0]]["description"]
    mmr1 = (200 + 100 * text_cosine("好", d) + 100 * text_cosine(d, "好")) / 4
    import numpy as np
    va, vb = lib.vectors[lib.positions([sad[0]])[0]], lib.vectors[lib.positions([sad[1]])[0]]
    vv = 100 * float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
    d_mine, d_gold = rows[sad[0]]["description"], rows[sad[1]]["description"]
    mmr2 = (100 + vv + 100 * text_cosine("唉", d_gold) + 100 * text_cosine(d_mine, "唉")) / 4
    f2 = (100 + vv) / 2
    assert m["MMr"] == pytest.approx((mmr1 + mmr2 + 100) / 3, rel=1e-4)
    assert m["f-MMr"] == pytest.approx((100 + f2 + 100) / 3, rel=1e-4)
    report = evaluate_file(pred, tmp_path / "eval", progress=False)
    assert report["heads"]["sticker"]["Freq"] == pytest.approx(m["Freq"])
    assert "sticker: Freq 66.67  Sticker-Emo-Acc 50.00" in format_summary(report)


def test_rows_without_stickers_add_no_sticker_scores(tmp_path):
    from elmd.evaluation.evaluate import evaluate_file

    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"sample_id": "a", "emotion_pred": "happy", "response": "好", "reference": "好",
                                "reference_emotion": "happy"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert sticker_metrics(pred) is None
    assert "heads" not in evaluate_file(pred, tmp_path / "e", progress=False)
