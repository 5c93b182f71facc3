"""Issue "real data, real users", case 4: `elmd index build` never silently replaces an index of
other data (the default --out is index.path, shared by every run of the preset), builds into a
staging folder, and a run whose index changed since training says so when it is loaded."""

from __future__ import annotations

import json

from click.testing import CliRunner

from elmd.cli.main import main

SMALL = ["--set", "retrieval.builtin_dim=32", "--set", "retrieval.builtin_vocab=200", "--set", "retrieval.device=cpu",
         "--set", "index.use_gpu=false"]


def build(*args):
    return CliRunner().invoke(main, ["index", "build", "--encoder", "builtin:char", *map(str, args), *SMALL])


def test_an_index_of_other_data_is_refused_without_overwrite(retrieval_data, tmp_path):
    out = tmp_path / "index"
    assert build("--data", retrieval_data["train"], "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    res = build("--data", retrieval_data["valid"], "--out", out)
    assert res.exit_code == 2 and "already holds an index of other data" in res.output and "--overwrite" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched
    again = build("--data", retrieval_data["train"], "--out", out)  # the same inputs: rebuilding is harmless
    assert again.exit_code == 0, again.output
    res = build("--data", retrieval_data["valid"], "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["data"]["path"] == str(retrieval_data["valid"]) and not list(tmp_path.glob(".index.*"))


def test_loading_a_run_whose_index_changed_warns(gen_run, tmp_path, capsys):
    import shutil

    from elmd.inference import load

    moved = tmp_path / "copy"
    shutil.copytree(gen_run.folder, moved)
    load(moved / "runs" / "eerg")
    assert "changed since" not in capsys.readouterr().err
    meta = moved / "index" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text(encoding="utf-8")), "rebuilt": True}), encoding="utf-8")
    load(moved / "runs" / "eerg")  # e.g. `elmd index build` of other data into index.path after training
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "index" in err and "changed since the run was trained" in err
