"""`elmd report`: Table 2 / Table 3 Markdown layout, bar charts and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from elmd.cli.main import main
from elmd.errors import DataError
from elmd.evaluation.evaluate import METRICS, evaluate_file
from elmd.evaluation.report import bar_figure, load_run, load_runs, make_report, markdown_table

HEADER = "| Model | BLEU-2 | BLEU-4 | METEOR | ROUGE-1 | ROUGE-L | Dist-1 | Dist-2 | Emo-Acc | Emo-F1 |"


def make_run(folder, values, name=None, samples=10):
    metrics = dict(zip(METRICS, values))
    rep = {"metrics": metrics, "counts": {"samples": samples, "empty_hypotheses": 1, "unparsable_emotions": 2},
           "predictions": {"path": "p.jsonl", "sha256": "ab" * 32}}
    if name:
        rep["name"] = name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(rep), encoding="utf-8")
    return folder


@pytest.fixture
def runs(tmp_path):
    a = make_run(tmp_path / "chatglm2", [10, 5, 20, 30, 25, 40, 70, None, None])
    b = make_run(tmp_path / "elmd_full", [12.345, 4, 21, 30, 26, 41, 69, 55.5, 40.25], name="ELMD")
    c = make_run(tmp_path / "no_ssc", [11, 4.5, 19, 29, 24, 42, 71, 50, 38])
    return a, b, c


def rows_of(md):
    return [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Model")]


def test_row_names_from_report_or_folder(runs):
    assert load_run(runs[0]).name == "chatglm2"
    assert load_run(runs[1]).name == "ELMD"
    assert load_run(runs[1] / "report.json").name == "ELMD"


def test_table2_layout_values_and_bold_best(runs):
    md = markdown_table(load_runs(runs[:2]))
    lines = md.splitlines()
    assert lines[0] == HEADER and lines[1] == "|---|" + "---:|" * 9
    assert lines[2] == "| chatglm2 | 10.00 | **5.00** | 20.00 | **30.00** | 25.00 | 40.00 | **70.00** | – | – |"
    assert lines[3] == "| ELMD | **12.35** | 4.00 | **21.00** | **30.00** | **26.00** | **41.00** | 69.00 | 55.50 | 40.25 |"


def test_same_names_are_told_apart_and_repeats_rejected(tmp_path):
    a = make_run(tmp_path / "x" / "eval", [1] * 9)
    b = make_run(tmp_path / "y" / "eval", [2] * 9)
    names = [r.name for r in load_runs([a, b])]
    assert names[0] != names[1] and all(n.startswith("eval (") for n in names)
    with pytest.raises(DataError, match="given twice"):
        load_runs([a, a / "report.json"])


def test_bad_run_folders(tmp_path):
    with pytest.raises(DataError, match="report not found"):
        load_run(tmp_path)
    (tmp_path / "report.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "report.json").write_text('{"counts": {}}', encoding="utf-8")
    with pytest.raises(DataError, match="no 'metrics'"):
        load_run(tmp_path)


def test_bar_figure_draws_one_bar_per_run_and_metric(runs):
    fig = bar_figure(load_runs(runs[:2]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(METRICS)
    assert len(ax.containers) == 2
    assert [b.get_height() for b in ax.containers[1].patches] == [12.345, 4, 21, 30, 26, 41, 69, 55.5, 40.25]
    assert [b.get_height() for b in ax.containers[0].patches][-2:] == [0.0, 0.0]  # missing -> no bar height
    # metrics that no run has are left out of the chart
    fig = bar_figure(load_runs(runs[:1]))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(METRICS[:7])


def test_make_report_writes_both_tables_and_charts(runs, tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "out"
    text = make_report([runs[0], runs[1]], [runs[1], runs[2]], out)
    assert (out / "table.md").read_text(encoding="utf-8") == text
    t2, t3 = text.split("## Table 3")
    assert "## Table 2" in t2
    assert [r.split(" |")[0] for r in rows_of(t2)][:2] == ["| chatglm2", "| ELMD"]
    assert [r.split(" |")[0] for r in rows_of(t3)][:2] == ["| ELMD", "| no_ssc"]
    assert "| no_ssc | 1 | 10 | 1 | 2 | abababababab |" in t3
    for png in ("table2.png", "table3.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        h, w = imread(out / png).shape[:2]
        assert w > h > 100
    make_report([runs[0]], [], tmp_path / "only2")
    assert not (tmp_path / "only2" / "table3.png").exists()
    assert "Table 3" not in (tmp_path / "only2" / "table.md").read_text(encoding="utf-8")


def test_seeds_of_one_name_are_one_row_with_mean_sd_and_noise(tmp_path):
    values = {"ELMD": [[10, 0, 0, 0, 20, 0, 0, 50, 40], [12, 0, 0, 0, 22, 0, 0, 54, 44], [14, 0, 0, 0, 24, 0, 0, 52, 42]],
              "text-only": [[11, 0, 0, 0, 21, 0, 0, 20, 10], [13, 0, 0, 0, 23, 0, 0, 24, 14], [12, 0, 0, 0, 22, 0, 0, 22, 12]]}
    dirs = [make_run(tmp_path / f"s{k}" / name, vals, name=name)
            for name, seeds in values.items() for k, vals in enumerate(seeds)]
    text = make_report(dirs, [], tmp_path / "o")
    metric_rows = rows_of(text)[:2]
    # ELMD BLEU-2: 10, 12, 14 -> mean 12, sd 2; Emo-Acc 50, 54, 52 -> 52 ± 2
    assert metric_rows[0].startswith("| ELMD | **12.00 ± 2.00** | **0.00 ± 0.00** |")  # equal means: both bold
    assert "| **52.00 ± 2.00** |" in metric_rows[0] and "| 22.00 ± 2.00 |" in metric_rows[1]
    assert metric_rows[1].startswith("| text-only | **12.00 ± 1.00** |")
    assert "| ELMD | 3 | 10 | 3 | 6 |" in text  # n = 3 seeds, counts summed over them
    # Emo-Acc: -30 vs s.e. sqrt(4/3 + 4/3) = 1.63 -> beyond noise; BLEU-2: 0 vs s.e. 1.0 -> within
    noise = text.split("beyond noise")[1]
    assert "- text-only: Emo-Acc -30.00, Emo-F1 -30.00 (within noise: BLEU-2" in noise


def test_different_sample_counts_are_flagged(tmp_path):
    a = make_run(tmp_path / "a", [1] * 9, samples=10)
    b = make_run(tmp_path / "b", [1] * 9, samples=12)
    assert "different numbers of samples" in make_report([a, b], [], tmp_path / "o")


def test_cli_report_space_separated_runs(runs, tmp_path):
    out = tmp_path / "out"
    args = ["report", "--runs", str(runs[0]), str(runs[1]), "--ablations", str(runs[1]), str(runs[2]), "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert res.stdout == (out / "table.md").read_text(encoding="utf-8")
    assert len(rows_of(res.stdout.split("## Table 3")[0])) == 4  # 2 metric rows + 2 count rows
    assert (out / "table2.png").exists() and (out / "table3.png").exists()
    # repeated options work too
    res2 = CliRunner().invoke(main, ["report", "--out", str(tmp_path / "o2"), "--runs", str(runs[0]), "--runs", str(runs[1])])
    assert res2.exit_code == 0 and res2.stdout.strip() == res.stdout.split("## Table 3")[0].strip()


def test_cli_report_missing_run_is_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["report", "--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "report.json: report not found" in res.stderr


def test_evaluate_then_report_round_trip(tmp_path):
    rows = [{"sample_id": "1", "emotion_pred": "happy", "response": "我很高兴。", "reference": "我也很高兴。",
             "reference_emotion": "happy", "demonstration": ""},
            {"sample_id": "2", "emotion_pred": None, "response": "", "reference": "走开！",
             "reference_emotion": "anger", "demonstration": ""}]
    p = tmp_path / "preds.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rep = evaluate_file(p, tmp_path / "runs" / "baseline", progress=False)
    text = make_report([tmp_path / "runs" / "baseline"], [], tmp_path / "o")
    row = rows_of(text)[0]
    assert row.startswith("| baseline | ") and f"{rep['metrics']['BLEU-2']:.2f}" in row
    assert "| 50.00 |" in row  # Emo-Acc: one right, one unparsable
