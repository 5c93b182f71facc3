"""`elmd report`: the paper's Table 2 (models) and Table 3 (ablations) from `elmd evaluate` runs.

Each run is a folder holding ``report.json`` (or the path of a report .json itself). Its row name is
the report's ``"name"`` field (``elmd evaluate --name``) when set, else the folder's name.

**Seeds**: runs whose reports carry the *same* ``--name`` are one row, each cell the mean ± sample
standard deviation over them (``n`` in the counts table). The "Noise" section then compares every
row with the first one per metric: a difference counts as beyond noise when it exceeds twice its
standard error, ``2 * sqrt(sd_a^2/n_a + sd_b^2/n_b)`` (both rows need n >= 2). Output:

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


@dataclass
class Row:
    """One table row: the runs of one model (several seeds share the row's name)."""

    name: str
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        return [v for v in (r.value(metric) for r in self.runs) if v is not None]

    def value(self, metric: str) -> float | None:
        vals = self.values(metric)
        return sum(vals) / len(vals) if vals else None

    def sd(self, metric: str) -> float | None:
        """Sample standard deviation over the runs (None for a single run)."""
        vals = self.values(metric)
        if len(vals) < 2:
            return None
        mean = sum(vals) / len(vals)
        return (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5

    @property
    def report(self) -> dict:
        return self.runs[0].report


def rows_of(runs: list[Run]) -> list[Row]:
    """Runs grouped into rows: the same ``--name`` (set in the report) = seeds of one row, in first-seen order."""
    rows: dict[str, Row] = {}
    for r in runs:
        key = r.report.get("name") or f"\0{r.path}"
        rows.setdefault(key, Row(r.name, [])).runs.append(r)
    return list(rows.values())


def load_runs(args) -> list[Run]:
    """Load runs; folder-named runs with the same name are told apart by the path given on the command line."""
    runs, seen = [], set()
    for arg in args:
        run = load_run(arg)
        key = run.path.resolve()
        if key in seen:
            raise DataError(run.path, "given twice in the same table", "list each run once")
        seen.add(key)
        runs.append(run)
    names = [r.name for r in runs if not r.report.get("name")]
    for run in runs:
        if not run.report.get("name") and names.count(run.name) > 1:
            run.name = f"{run.name} ({run.path.parent})"
    return runs


def _fmt(v: float | None, best: float | None, sd: float | None = None) -> str:
    if v is None:
        return "–"
    s = f"{v:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
    return f"**{s}**" if best is not None and round(v, 2) == round(best, 2) else s


def _rows(items) -> list[Row]:
    return [x if isinstance(x, Row) else Row(x.name, [x]) for x in items]


def markdown_table(runs, metrics=METRICS) -> str:
    """Rows (or single runs), columns = metrics (mean ± sd over a row's seeds); the best mean of a
    column (with ≥ 2 rows) in bold."""
    rows = _rows(runs)
    best = {}
    for m in metrics:
        vals = [r.value(m) for r in rows if r.value(m) is not None]
        best[m] = max(vals) if len(vals) > 1 else None
    lines = ["| Model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for r in rows:
        lines.append(f"| {r.name} | " + " | ".join(_fmt(r.value(m), best[m], r.sd(m)) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def counts_table(runs) -> str:
    """Per row: seeds, samples, empty responses, unparsable emotions (summed over seeds) and the
    first run's predictions' sha256 prefix."""
    rows = _rows(runs)
    lines = ["| Model | n | samples | empty responses | unparsable emotions | predictions sha256 |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        counts = [run.report.get("counts", {}) for run in r.runs]

        def total(key):
            vals = [c.get(key) for c in counts]
            return sum(vals) if all(isinstance(v, int) for v in vals) else "?"
        sha = (r.report.get("predictions") or {}).get("sha256", "")[:12]
        lines.append(f"| {r.name} | {len(r.runs)} | {counts[0].get('samples', '?')} | {total('empty_hypotheses')} | "
                     f"{total('unparsable_emotions')} | {sha} |")
    note = ""
    if len({run.report.get("counts", {}).get("samples") for r in rows for run in r.runs}) > 1:
        note = "\nWarning: the runs were scored on different numbers of samples.\n"
    return "\n".join(lines) + "\n" + note


@dataclass
class Difference:
    """A row's mean minus the reference row's, with its standard error."""

    row: str
    metric: str
    diff: float
    se: float

    @property
    def beyond_noise(self) -> bool:
        return abs(self.diff) > 2 * self.se


def differences(rows: list[Row], metrics=METRICS) -> list[Difference]:
    """Every row after the first vs the first, for metrics where both have ≥ 2 runs."""
    ref, out = rows[0], []
    for r in rows[1:]:
        for m in metrics:
            a, b = ref.values(m), r.values(m)
            if len(a) < 2 or len(b) < 2:
                continue
            se = (ref.sd(m) ** 2 / len(a) + r.sd(m) ** 2 / len(b)) ** 0.5
            out.append(Difference(r.name, m, r.value(m) - ref.value(m), se))
    return out


def noise_text(rows: list[Row]) -> str:
    """The "Noise" lines: per row, the metrics that differ from the first row beyond 2 s.e."""
    diffs = differences(rows)
    if not diffs:
        return ""
    lines = [f"Differences from **{rows[0].name}** beyond noise (|Δ| > 2 s.e. over the seeds):", ""]
    for r in rows[1:]:
        mine = [d for d in diffs if d.row == r.name]
        if mine:
            beyond = [f"{d.metric} {d.diff:+.2f}" for d in mine if d.beyond_noise]
            lines.append(f"- {r.name}: " + (", ".join(beyond) if beyond else "none") +
                         (f" (within noise: {', '.join(d.metric for d in mine if not d.beyond_noise)})"
                          if beyond and len(beyond) < len(mine) else ""))
    return "\n".join(lines) + "\n"


def section(title: str, runs) -> str:
    rows = _rows(runs)
    noise = noise_text(rows)
    return f"## {title}\n\n{markdown_table(rows)}\n{counts_table(rows)}" + (f"\n{noise}" if noise else "")


def bar_figure(runs, title: str = ""):
    """Grouped bars: one group per metric that any row has, one bar per row, the seeds' sd as
    error bars (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = _rows(runs)
    metrics = [m for m in METRICS if any(r.value(m) is not None for r in runs)]
    fig = Figure(figsize=(min(16.0, max(6.0, 0.8 * len(metrics) + 0.15 * len(metrics) * len(runs))), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(runs))
    for i, r in enumerate(runs):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(metrics))]
        heights = [r.value(m) or 0.0 for m in metrics]
        errs = [r.sd(m) or 0.0 for m in metrics]
        bars = ax.bar(xs, heights, width, label=r.name, yerr=errs if any(errs) else None, capsize=2)
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
    groups = [("Table 2: models", "table2.png", rows_of(load_runs(runs))),
              ("Table 3: ablations", "table3.png", rows_of(load_runs(ablations)))]
    parts = []
    for title, png, rows in groups:
        if rows:
            parts.append(section(title, rows))
            save_png(bar_figure(rows, title), out / png)
    text = "Scores × 100 (definitions and tokenisation: each run's report.json).\n\n" + "\n".join(parts)
    atomic_write_text(out / "table.md", text)
    return text
