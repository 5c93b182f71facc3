"""Metrics log: resumed runs drop the rows that will be redone; curves are drawn."""

from elmd.training.metrics_log import MetricsLog, plot_curves, read_metrics


def test_resume_truncates_and_appends(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for s in range(1, 6):
        log.log(s, loss=1.0 / s)
    log.close()
    log = MetricsLog(tmp_path, resume_step=3, tensorboard=False)  # steps 4, 5 will be redone
    log.log(4, loss=0.2, valid_accuracy=0.5)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    assert read_metrics(tmp_path / "metrics.jsonl")[-1] == {"step": 4, "loss": 0.2, "valid_accuracy": 0.5}
    MetricsLog(tmp_path, tensorboard=False)  # a fresh (non-resumed) run starts a new log
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_plot(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for s in range(1, 4):
        log.log(s, loss=3.0 - s)
    png = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_curves(tmp_path / "nothing.jsonl", tmp_path / "x.png") is None
