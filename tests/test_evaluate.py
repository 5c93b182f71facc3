"""`elmd evaluate`: prediction-file parsing, the report's numbers against the reference libraries,
empty / unparsable handling, and the CLI."""

from __future__ import annotations

import json

import jieba
import pytest
from click.testing import CliRunner
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from elmd.cli.main import main
from elmd.errors import DataError
from elmd.evaluation.evaluate import METRICS, Prediction, evaluate_file, read_predictions, resolve_out, score_predictions
from elmd.evaluation.metrics import NoSynonyms
from elmd.io import file_sha256

ROWS = [
    {"sample_id": "d1#1", "emotion_pred": "happy", "response": "我今天很高兴，谢谢你来看我。",
     "reference": "我很高兴见到你，谢谢你。", "reference_emotion": "happy", "demonstration": "见到你真好。"},
    {"sample_id": "d1#2", "emotion_pred": "anger", "response": "你别管我！我要一个人待着。",
     "reference": "别管我，走开！", "reference_emotion": "anger", "demonstration": ""},
    {"sample_id": "d2#1", "emotion_pred": "neutral", "response": "这件事情我们明天再说吧。",
     "reference": "明天再说吧，我今天太累了。", "reference_emotion": "sad", "demonstration": ""},
    {"sample_id": "d2#2", "emotion_pred": None, "response": "好的好的，我知道了。",
     "reference": "知道了，你放心吧。", "reference_emotion": "neutral", "demonstration": ""},
]
EMPTY = {"sample_id": "d3#1", "emotion_pred": None, "response": "", "reference": "你怎么又迟到了？",
         "reference_emotion": "anger", "demonstration": ""}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def preds_of(rows):
    return [Prediction(r.get("sample_id"), r.get("response") or "", r["reference"], r.get("emotion_pred"),
                       r.get("reference_emotion")) for r in rows]


def chatglm2_scores(rows):
    """What ChatGLM2's ptuning/main.py compute_metrics averages (x100, without its per-sample rounding)."""
    bleu, r1, rl = [], [], []
    for r in rows:
        pred, label = r["response"], r["reference"]
        s = Rouge().get_scores(" ".join(jieba.cut(pred)), " ".join(jieba.cut(label)))[0]
        r1.append(100 * s["rouge-1"]["f"])
        rl.append(100 * s["rouge-l"]["f"])
        bleu.append(100 * sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {"BLEU-4": mean(bleu), "ROUGE-1": mean(r1), "ROUGE-L": mean(rl)}


def test_scores_equal_chatglm2_recipe_and_nltk():
    from nltk.translate.meteor_score import meteor_score

    got = score_predictions(preds_of(ROWS))["metrics"]
    for k, v in chatglm2_scores(ROWS).items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
    bleu2 = [sentence_bleu([list(r["reference"])], list(r["response"]), weights=(0.5, 0.5),
                           smoothing_function=SmoothingFunction().method3) for r in ROWS]
    assert got["BLEU-2"] == pytest.approx(100 * sum(bleu2) / len(ROWS), abs=1e-9)
    met = [meteor_score([jieba.lcut(r["reference"])], jieba.lcut(r["response"]), wordnet=NoSynonyms()) for r in ROWS]
    assert got["METEOR"] == pytest.approx(100 * sum(met) / len(ROWS), abs=1e-9)


def test_emotion_and_dist_in_report():
    rep = score_predictions(preds_of(ROWS))
    m, c = rep["metrics"], rep["counts"]
    assert m["Emo-Acc"] == pytest.approx(100 * 2 / 4)  # happy, anger right; neutral wrong; null wrong
    # labels {happy, anger, sad, neutral}: happy 1, anger 1, sad 0 (missed), neutral 0 (one fp, one miss)
    assert m["Emo-F1"] == pytest.approx(100 * 2 / 4)
    assert c["unparsable_emotions"] == 1 and c["emotion_samples"] == 4
    words = [[w for w in jieba.lcut(r["response"]) if w.strip()] for r in ROWS]
    flat = [w for ws in words for w in ws]
    assert m["Dist-1"] == pytest.approx(100 * len(set(flat)) / len(flat))
    bigrams = [tuple(ws[i:i + 2]) for ws in words for i in range(len(ws) - 1)]
    assert m["Dist-2"] == pytest.approx(100 * len(set(bigrams)) / len(bigrams))


def test_empty_hypothesis_counts_and_scores_zero():
    base = score_predictions(preds_of(ROWS))["metrics"]
    rep = score_predictions(preds_of(ROWS + [EMPTY, dict(EMPTY, sample_id="d3#2", response=None)]))
    assert rep["counts"]["empty_hypotheses"] == 2 and rep["counts"]["samples"] == 6
    for k in ("BLEU-2", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-L"):  # two zeros join the mean
        assert rep["metrics"][k] == pytest.approx(base[k] * 4 / 6), k
    assert rep["metrics"]["Dist-1"] == pytest.approx(base["Dist-1"])  # no tokens added
    assert rep["counts"]["unparsable_emotions"] == 3


def test_all_empty_and_empty_reference_do_not_crash():
    rows = [dict(EMPTY, sample_id=str(i)) for i in range(3)] + [dict(ROWS[0], sample_id="r", reference=" ")]
    rep = score_predictions(preds_of(rows))
    assert rep["counts"]["empty_hypotheses"] == 3 and rep["counts"]["empty_references"] == 1
    assert all(rep["metrics"][k] == 0.0 for k in ("BLEU-2", "BLEU-4", "METEOR", "ROUGE-1", "ROUGE-L"))
    assert rep["extra"]["BLEU-4 (corpus)"] == 0.0


def test_no_reference_emotions_gives_no_emotion_scores():
    rows = [dict(r, reference_emotion=None, emotion_pred=None) for r in ROWS]
    rep = score_predictions(preds_of(rows))
    assert rep["metrics"]["Emo-Acc"] is None and rep["metrics"]["Emo-F1"] is None
    assert rep["counts"]["emotion_samples"] == 0


def test_read_predictions_parses_null_response(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", ROWS + [dict(EMPTY, response=None)])
    got = read_predictions(p)
    assert len(got) == 5 and got[-1].response == "" and got[3].emotion_pred is None


@pytest.mark.parametrize("bad, message", [
    ('{"sample_id": "x", "response": "a"', "malformed JSON"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"sample_id": "x", "response": "a"}', "missing field 'reference'"),
    ('{"sample_id": "x", "response": 3, "reference": "b"}', "'response' must be a string"),
    ('{"sample_id": "x", "response": "a", "reference": "b", "emotion_pred": 1}', "'emotion_pred'"),
    ('{"sample_id": "d1#1", "response": "a", "reference": "b"}', "repeats line 1"),
])
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps(ROWS[0], ensure_ascii=False) + "\n\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as e:
        read_predictions(p)
    assert str(e.value).startswith(f"{p}:3: ")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_predictions(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no predictions"):
        read_predictions(tmp_path / "e.jsonl")


def test_report_json_content(tmp_path):
    p = write_jsonl(tmp_path / "preds.jsonl", ROWS + [EMPTY])
    rep = evaluate_file(p, tmp_path / "run", name="ELMD", progress=False)
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(rep))
    assert on_disk["name"] == "ELMD"
    assert on_disk["predictions"] == {"path": str(p.resolve()), "sha256": file_sha256(p)}
    assert set(on_disk["metrics"]) == set(METRICS) == set(on_disk["tokenisation"]) == set(on_disk["definitions"])
    assert "jieba" in on_disk["tokenisation"]["ROUGE-L"] and "character" in on_disk["tokenisation"]["BLEU-4"]
    assert "method3" in on_disk["definitions"]["BLEU-2"] and "WordNet" in on_disk["definitions"]["METEOR"]
    assert on_disk["counts"]["empty_hypotheses"] == 1
    assert [f.name for f in (tmp_path / "run").iterdir()] == ["report.json"]  # no temp file left


def test_resolve_out(tmp_path):
    assert resolve_out(tmp_path / "r.json") == tmp_path / "r.json"
    assert resolve_out(tmp_path / "run") == tmp_path / "run" / "report.json"


def test_cli_evaluate_writes_report(tmp_path):
    p = write_jsonl(tmp_path / "preds.jsonl", ROWS + [EMPTY])
    res = CliRunner().invoke(main, ["evaluate", "--pred", str(p), "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert f"BLEU-4 {rep['metrics']['BLEU-4']:.2f}" in res.stdout
    assert "empty responses 1" in res.stdout and "unparsable emotions 2" in res.stdout


def test_cli_evaluate_errors_are_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["evaluate", "--pred", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "nope.jsonl: prediction file not found" in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0], ensure_ascii=False) + "\n{oops\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["evaluate", "--pred", str(bad), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and f"{bad}:2: malformed JSON" in res.stderr
    assert not (tmp_path / "r.json").exists()


# --- issue 11 case 10: rows that used to be scored silently ----------------------------------------

def write_meta(pred, labels):
    pred.with_name(pred.stem + ".meta.json").write_text(json.dumps({"config": {"data": {"labels": labels}}}), encoding="utf-8")


def test_row_without_response_is_an_error_naming_file_and_line(tmp_path):
    """Before: scored silently as an empty response. null (other tools) stays allowed."""
    row = {k: v for k, v in ROWS[1].items() if k != "response"}
    p = write_jsonl(tmp_path / "p.jsonl", [ROWS[0], row])
    write_meta(p, ["happy", "surprise", "sad", "disgust", "anger", "fear", "neutral"])
    with pytest.raises(DataError) as e:
        evaluate_file(p, tmp_path / "out", progress=False)
    assert str(e.value).startswith(f"{p}:2: missing field 'response' — write \"\" for a sample with no reply")
    write_jsonl(p, [ROWS[0], dict(ROWS[1], response=None), dict(ROWS[2], response="")])
    rep = evaluate_file(p, tmp_path / "out", progress=False)
    assert rep["counts"]["empty_hypotheses"] == 2 and rep["warnings"] == []


def test_out_of_set_emotion_is_an_error_naming_the_label_set(tmp_path):
    """Before: "joyful" silently counted as a wrong label and changed Emo-F1."""
    p = write_jsonl(tmp_path / "p.jsonl", [ROWS[0], dict(ROWS[1], emotion_pred="joyful")])
    with pytest.raises(DataError) as e:
        evaluate_file(p, tmp_path / "out", progress=False)
    assert str(e.value).startswith(f"{p}:2: emotion_pred 'joyful' is not in the label set "
                                   "[happy, surprise, sad, disgust, anger, fear, neutral] (from M3ED's seven (default))")
    write_jsonl(p, [ROWS[0], dict(ROWS[1], reference_emotion="joyful")])
    with pytest.raises(DataError, match=r"p.jsonl:2: reference_emotion 'joyful' is not in the label set"):
        evaluate_file(p, tmp_path / "out", progress=False)


def test_label_set_from_meta_then_labels_option(tmp_path):
    rows = [dict(ROWS[0], emotion_pred="joyful", reference_emotion="joyful"), dict(ROWS[1], reference_emotion="happy")]
    p = write_jsonl(tmp_path / "p.jsonl", rows)
    write_meta(p, ["joyful", "happy", "anger"])
    rep = evaluate_file(p, tmp_path / "out", progress=False)
    assert rep["labels"] == {"ids": ["joyful", "happy", "anger"], "from": str(p.with_name("p.meta.json"))}
    assert rep["metrics"]["Emo-Acc"] == 50.0
    with pytest.raises(DataError, match=r"'joyful' is not in the label set \[happy, anger\] \(from --labels\)"):
        evaluate_file(p, tmp_path / "out", progress=False, labels=["happy", "anger"])
    res = CliRunner().invoke(main, ["evaluate", "--pred", str(p), "--out", str(tmp_path / "cli"), "--no-progress",
                                    "--labels", "joyful,happy,anger"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "cli" / "report.json").read_text(encoding="utf-8"))["labels"]["from"] == "--labels"


def test_predictions_without_meta_are_scored_with_a_warning(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", ROWS)
    res = CliRunner().invoke(main, ["evaluate", "--pred", str(p), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output
    warning = f"warning: {tmp_path / 'p.meta.json'}: not found — scoring p.jsonl without checking what produced it"
    assert warning in res.stderr and warning not in res.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert len(report["warnings"]) == 1 and report["metrics"]["Emo-Acc"] == 50.0
    write_meta(p, ["happy", "surprise", "sad", "disgust", "anger", "fear", "neutral"])
    res = CliRunner().invoke(main, ["evaluate", "--pred", str(p), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_unfinished_generation_is_scored_with_a_warning(tmp_path):
    p = write_jsonl(tmp_path / "p.jsonl", ROWS[:2])
    p.with_name("p.meta.json").write_text(json.dumps({"checkpoint": "x", "complete": False}), encoding="utf-8")
    rep = evaluate_file(p, tmp_path / "r", progress=False)
    assert rep["counts"]["samples"] == 2 and rep["labels"]["from"] == "M3ED's seven (default)"
    assert rep["warnings"] == [f"{tmp_path / 'p.meta.json'}: generation did not finish — scoring the rows written so far "
                               "(run the same `elmd generate` again to complete it)"]
