"""scripts/avatar.sh, the quickstart's avatar fragment: it uses the shared step runner, hides no
error, and a run folder without the quickstart's outputs stops it with one line, nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "avatar.sh"


def test_it_uses_the_step_runner_and_hides_no_error():
    text = SCRIPT.read_text(encoding="utf-8")
    assert "source scripts/steps.sh" in text and "2>/dev/null" not in text
    assert "elmd avatar evaluate" in text and "--heads avatar" in text and "train.target=meta" in text


def test_a_run_without_the_quickstarts_outputs_is_one_line(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)  # data but no rep / eerg
    res = subprocess.run(["bash", str(SCRIPT)], env={"RUN": str(run), "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"scripts/avatar.sh: {run}/rep not found — run scripts/quickstart.sh "
                                               "first (or set RUN=<its run folder>)"]
    assert sorted(p.name for p in run.iterdir()) == ["data"]  # no avatar/, no logs
