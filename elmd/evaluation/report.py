"""`elmd report`: the paper's Table 2 (models) and Table 3 (ablations) from `elmd evaluate` runs.

Each run is a folder holding ``report.json`` (or the path of a report .json itself). Its row name is
the report's ``"name"`` field (``elmd evaluate --name``) when set, else the folder's name. Output:

* ``table.md``: "Table 2" (the ``--runs``) and, when given, "Table 3" (the ``--ablations``), rows =
  runs, columns = BLEU-2, BLEU-4, METEOR, ROUGE-1, ROUGE-L, Dist-1, Dist-2, Emo-Acc, Emo-F1 (× 100,
  best of each column in bold), each followed by the runs' sample / empty-response / unparsable counts;
* ``table2.png`` (and ``table3.png``): grouped bar charts of the same numbers.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from elmd.errors import DataError
from elmd.evaluation.evaluate import METRICS
from elmd.io import atomic_write_bytes, atomic_write_text

_FIX_RUN = "give a folder holding report.json written by `elmd evaluate --pred PREDS --out FOLDER`"


@dataclass
class Run:
    """One evaluated run: its row name, report file and parsed report."""

    name: str
    path: Path
    report: dict

    def value(self, metric: str) -> float | None:
        return self.report["metrics"].get(metric)


def load_run(arg: str | Path) -> Run:
    """Read ``arg``/report.json (or ``arg`` itself when it is a .json file)."""
    arg = Path(arg)
    path = arg if arg.suffix == ".json" and not arg.is_dir() else arg / "report.json"
    if not path.exists():
        raise DataError(path, "report not found", _FIX_RUN)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})", "re-run `elmd evaluate` to rewrite it") from None
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise DataError(path, "has no 'metrics' mapping: not an `elmd evaluate` report", _FIX_RUN)
    name = report.get("name") or path.resolve().parent.name
    return Run(name=str(name), path=path, report=report)


def load_runs(args) -> list[Run]:
    """Load runs; rows with the same name are told apart by the path given on the command line."""
    runs, seen = [], set()
    for arg in args:
        run = load_run(arg)
        key = run.path.resolve()
        if key in seen:
            raise DataError(run.path, "given twice in the same table", "list each run once")
        seen.add(key)
        runs.append(run)
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({run.path.parent})"
    return runs


def _fmt(v: float | None, best: float | None) -> str:
    if v is None:
        return "–"
    s = f"{v:.2f}"
    return f"**{s}**" if best is not None and round(v, 2) == round(best, 2) else s


def markdown_table(runs: list[Run], metrics=METRICS) -> str:
    """Rows = runs, columns = metrics; the best value of a column (with ≥ 2 runs) in bold."""
    best = {}
    for m in metrics:
        vals = [r.value(m) for r in runs if r.value(m) is not None]
        best[m] = max(vals) if len(vals) > 1 else None
    lines = ["| Model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for r in runs:
        lines.append(f"| {r.name} | " + " | ".join(_fmt(r.value(m), best[m]) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def counts_table(runs: list[Run]) -> str:
    """Per run: samples, empty responses, unparsable emotions and the predictions' sha256 prefix."""
    lines = ["| Model | samples | empty responses | unparsable emotions | predictions sha256 |", "|---|---:|---:|---:|---|"]
    for r in runs:
        c = r.report.get("counts", {})
        sha = (r.report.get("predictions") or {}).get("sha256", "")[:12]
        lines.append(f"| {r.name} | {c.get('samples', '?')} | {c.get('empty_hypotheses', '?')} | "
                     f"{c.get('unparsable_emotions', '?')} | {sha} |")
    note = ""
    if len({r.report.get("counts", {}).get("samples") for r in runs}) > 1:
        note = "\nWarning: the runs were scored on different numbers of samples.\n"
    return "\n".join(lines) + "\n" + note


def section(title: str, runs: list[Run]) -> str:
    return f"## {title}\n\n{markdown_table(runs)}\n{counts_table(runs)}"


def bar_figure(runs: list[Run], title: str = ""):
    """Grouped bars: one group per metric that any run has, one bar per run (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [m for m in METRICS if any(r.value(m) is not None for r in runs)]
    fig = Figure(figsize=(min(16.0, max(6.0, 0.8 * len(metrics) + 0.15 * len(metrics) * len(runs))), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(runs))
    for i, r in enumerate(runs):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(metrics))]
        heights = [r.value(m) or 0.0 for m in metrics]
        bars = ax.bar(xs, heights, width, label=r.name)
        if len(runs) * len(metrics) <= 40:
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel("score (× 100)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def save_png(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    return atomic_write_bytes(path, buf.getvalue())


def make_report(runs, ablations, out: str | Path) -> str:
    """Write table.md and the bar charts into ``out``; returns the Markdown text."""
    if not runs and not ablations:
        raise DataError(out, "no runs given", "pass --runs RUN_DIR ... (and/or --ablations RUN_DIR ...)")
    out = Path(out)
    groups = [("Table 2: models", "table2.png", load_runs(runs)), ("Table 3: ablations", "table3.png", load_runs(ablations))]
    parts = []
    for title, png, rows in groups:
        if rows:
            parts.append(section(title, rows))
            save_png(bar_figure(rows, title), out / png)
    text = "Scores × 100 (definitions and tokenisation: each run's report.json).\n\n" + "\n".join(parts)
    atomic_write_text(out / "table.md", text)
    return text
