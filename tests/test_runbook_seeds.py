"""The runbooks' seed runner (scripts/steps.sh run_seeds / each): every seed once, JOBS at a time,
one thread each when they share the cores, the folders of the seeds, and a failing seed stops the book."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_book(tmp_path, body: str, seeds="0 1 2", jobs=2):
    script = f"""
set -euo pipefail
cd {REPO}
RUN={tmp_path}/run
source scripts/steps.sh
read -r -a SEEDS <<<"{seeds}"; FIRST=${{SEEDS[0]}}; JOBS={jobs}
unset OMP_NUM_THREADS
{body}
"""
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


def test_every_seed_runs_once_with_its_threads_and_folders(tmp_path):
    body = f"""
work() {{ echo "$1 $OMP_NUM_THREADS $(date +%s%N)" >>{tmp_path}/calls; sleep 0.3; }}
run_seeds work
each elmd text_only
"""
    res = run_book(tmp_path, body)
    assert res.returncode == 0, res.stderr
    calls = sorted(line.split() for line in (tmp_path / "calls").read_text().splitlines())
    assert [c[0] for c in calls] == ["0", "1", "2"]
    threads = {c[0]: c[1] for c in calls}
    assert threads["0"] == threads["1"] == "1"  # two at a time: one thread each
    import os
    assert threads["2"] == str(os.cpu_count())  # the last one runs alone: all threads
    start = {c[0]: int(c[2]) for c in calls}
    assert abs(start["0"] - start["1"]) < 0.25e9 and start["2"] - start["0"] > 0.25e9  # 0 and 1 together, 2 after
    run = f"{tmp_path}/run"
    assert res.stdout.split("\n")[-len(calls) * 2 - 1:-1] == [
        f"{run}/eval/elmd", f"{run}/eval/text_only", f"{run}/seeds/1/eval/elmd", f"{run}/seeds/1/eval/text_only",
        f"{run}/seeds/2/eval/elmd", f"{run}/seeds/2/eval/text_only"]


def test_a_failing_step_ends_its_seed_and_stops_the_book(tmp_path):
    body = f'work() {{ [ "$1" != 1 ]; echo "$1" >>{tmp_path}/after; }}\nrun_seeds work\necho "went on"'
    res = run_book(tmp_path, body)
    assert res.returncode != 0 and "went on" not in res.stdout and "seed(s) 1 failed" in res.stderr
    assert sorted((tmp_path / "after").read_text().split()) == ["0", "2"]  # seed 1 stopped at its failing step
