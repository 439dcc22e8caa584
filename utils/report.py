"""Run report for the end-to-end VideoGPA loop: ``report.md``, ``report.json`` and PNG figures.

The report gathers what a researcher checks after a run: the score table per prompt group (winner
and loser marked), a histogram of the consistency scores, the DPO training curves (loss, implicit
reward accuracy, implicit reward margin), the wall time of every stage and the paths of every
video, adapter and JSON written. Figures are drawn with matplotlib's headless ``Agg`` backend.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
from pathlib import Path
from typing import Any

from utils.io_utils import atomic_write_bytes, atomic_write_json

__all__ = ["read_lightning_csv", "write_report", "plot_png"]

# Curves drawn from the trainer's CSV log (``train_dpo/lightning_module.py`` logs these keys):
# (title, columns, y-axis label).
CURVES = (
    ("DPO loss", ("train/loss",), "loss (ln 2 at step 0)"),
    ("implicit reward accuracy", ("train/accuracy",), "fraction of pairs"),
    ("implicit reward margin", ("train/reward_margin",), "reward(winner) - reward(loser)"),
)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def read_lightning_csv(path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Read a Lightning ``CSVLogger`` ``metrics.csv`` into ``{column: [(step, value), ...]}``.

    Empty cells (metrics logged at other steps) are skipped. A missing file gives ``{}``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, val in row.items():
                if key in ("step", "epoch") or val in (None, ""):
                    continue
                try:
                    series.setdefault(key, []).append((step, float(val)))
                except ValueError:
                    pass
    return series


def _pick(series: dict, names) -> tuple[str, list] | None:
    for n in names:
        if series.get(n):
            return n, series[n]
    return None


def plot_png(path: Path, draw) -> None:
    """Draw a figure with ``draw(plt) -> Figure`` (headless Agg backend) and write it as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig = draw(plt)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _histogram(path: Path, panels: dict[str, tuple[list[float], list[float], list[float]]]) -> None:
    """One panel per label (t2v, i2v): all scores as bars, winners and losers outlined on the same
    bin edges (shared by every panel), integer count ticks."""
    import numpy as np

    every = [x for scores, _, _ in panels.values() for x in scores]
    edges = np.histogram_bin_edges(every if every else [0.0, 1.0], bins=max(5, min(30, len(every))))

    def draw(plt):
        from matplotlib.ticker import MaxNLocator

        fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 3.5),
                                 squeeze=False, sharex=True)
        for ax, (label, (scores, winners, losers)) in zip(axes[0], panels.items()):
            ax.hist(scores, bins=edges, color="0.75", label=f"all videos (n={len(scores)})")
            if winners:
                ax.hist(winners, bins=edges, histtype="step", lw=2, color="tab:green", label="winners")
            if losers:
                ax.hist(losers, bins=edges, histtype="step", lw=2, color="tab:red", label="losers")
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("consistency score (MSE + LPIPS, lower = more 3-D consistent)", fontsize=8)
            ax.set_ylabel("videos")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=8)
        return fig

    plot_png(path, draw)


def _curves(path: Path, runs: dict[str, dict]) -> dict[str, list[str]]:
    """Plot loss / accuracy / margin, one panel each, one line per run label; returns columns used."""
    panels = []
    for title, names, ylabel in CURVES:
        lines = [(label, *p) for label, series in runs.items() if (p := _pick(series, names))]
        if lines:
            panels.append((title, ylabel, lines))
    if not panels:
        return {}

    def draw(plt):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
        for ax, (title, ylabel, lines) in zip(axes[0], panels):
            for label, col, pts in lines:
                ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", ms=3, label=label)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("optimiser step")
            ax.set_ylabel(ylabel, fontsize=9)
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    plot_png(path, draw)
    used: dict[str, list[str]] = {}
    for _, _, lines in panels:
        for label, col, _ in lines:
            used.setdefault(label, []).append(col)
    return used


def write_report(
    run_dir: str | os.PathLike,
    groups: list[dict],
    pairs: list[dict],
    stage_times: dict[str, float],
    paths: dict[str, Any],
    metrics_csvs: dict[str, str | os.PathLike] | None = None,
    metric_name: str = "consistency_score",
    extra: dict | None = None,
    pair_selection: dict[str, dict[str, Any]] | None = None,
    commands: dict[str, list[str]] | None = None,
    skipped: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, ``scores_hist.png`` and ``training_curves.png``.

    Args:
        run_dir: the run folder; the report files are written there (atomically).
        groups: scored groups as the scorer writes them (``group_id``, ``prompt``, ``videos`` with
            ``video_path``, ``seed``, ``consistency_score``, ``motion_norm``, ``coverage`` or ``error``).
        pairs: preference pairs, each with ``group_id``, ``winner`` and ``loser`` video paths.
        stage_times: ``{stage name: wall seconds}`` in run order.
        paths: anything worth listing (videos, adapters, JSON files); written as given.
        metrics_csvs: ``{run label: the trainer's Lightning metrics.csv}`` for the training curves
            (optional; one line per label in each panel).
        metric_name: the score that chose winners and losers.
        extra: more top-level keys of ``report.json``.
        pair_selection: ``{label: counts}`` of ``train_dpo.pairs.select_preference_pairs``.
        commands: ``{stage: [script, args...]}``, the command line of every stage.
        skipped: ``{stage: why}`` for stages a re-run skipped (their work was on disk).
        notes: sentences shown at the top of ``report.md`` (e.g. that the models are random).

    Groups are drawn in one histogram panel per ``group["mode"]`` (``"all"`` when absent).

    Returns:
        ``{"md", "json", "hist", "curves"}`` -> paths (``curves`` absent without training metrics).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    role = {}
    for p in pairs:
        role[(p["group_id"], p["winner"])] = "winner"
        role[(p["group_id"], p["loser"])] = "loser"

    rows, scores = [], []
    panels: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for g in groups:
        panel = panels.setdefault(str(g.get("mode", "all")), ([], [], []))
        for v in g.get("videos", []):
            r = role.get((g.get("group_id"), v.get("video_path")), "")
            s = v.get(metric_name)
            rows.append({
                "group_id": g.get("group_id"),
                "prompt": g.get("prompt", ""),
                "video_path": v.get("video_path"),
                "seed": v.get("seed"),
                "role": r,
                metric_name: s,
                "motion_norm": v.get("motion_norm"),
                "coverage": v.get("coverage"),
                "error": v.get("error"),
            })
            if _finite(s):
                scores.append(s)
                panel[0].append(s)
                (panel[1] if r == "winner" else panel[2] if r == "loser" else []).append(s)

    out = {"md": run_dir / "report.md", "json": run_dir / "report.json", "hist": run_dir / "scores_hist.png"}
    _histogram(out["hist"], panels)
    runs = {label: read_lightning_csv(p) for label, p in (metrics_csvs or {}).items() if p}
    runs = {label: series for label, series in runs.items() if series}
    curve_cols = _curves(run_dir / "training_curves.png", runs) if runs else {}
    if curve_cols:
        out["curves"] = run_dir / "training_curves.png"

    report = {
        "metric": metric_name,
        "num_groups": len(groups),
        "num_videos": len(rows),
        "num_scored": len(scores),
        "num_pairs": len(pairs),
        "stage_seconds": stage_times,
        "total_seconds": sum(stage_times.values()),
        "scores": rows,
        "pairs": pairs,
        "training_curves": {label: {c: runs[label][c] for c in cols} for label, cols in curve_cols.items()},
        "paths": {k: str(v) if isinstance(v, Path) else v for k, v in paths.items()},
        "figures": {k: v.name for k, v in out.items() if k in ("hist", "curves")},
        "pair_selection": pair_selection or {},
        "commands": commands or {},
        "skipped_stages": skipped or {},
        "notes": notes or [],
    }
    if extra:
        report.update(extra)
    atomic_write_json(out["json"], report)

    def fmt(x, nd=4):
        return f"{x:.{nd}f}" if _finite(x) else ("—" if x is None else str(x))

    md = ["# VideoGPA run report", ""]
    md += [f"> {n}" for n in notes or []] + ([""] if notes else [])
    md += [f"- groups: {len(groups)}, videos: {len(rows)}, scored: {len(scores)}, preference pairs: {len(pairs)}",
           f"- score: `{metric_name}` (lower = more 3-D consistent)", ""]
    md += ["## Stage wall time", "", "| stage | seconds |", "|---|---:|"]
    md += [f"| {k} | {'skipped: ' + skipped[k] if k in (skipped or {}) else f'{v:.1f}'} |"
           for k, v in stage_times.items()]
    md += [f"| **total** | **{sum(stage_times.values()):.1f}** |", ""]
    if pair_selection:
        keys = list(dict.fromkeys(k for counts in pair_selection.values() for k in counts))
        md += ["## Pair selection", "", "| count | " + " | ".join(pair_selection) + " |",
               "|---|" + "---:|" * len(pair_selection)]
        md += [f"| {k} | " + " | ".join(str(c.get(k, "")) for c in pair_selection.values()) + " |" for k in keys]
        md += [""]
    md += ["## Scores per group", "", f"| group | seed | role | {metric_name} | motion_norm | coverage | video |",
           "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        mark = {"winner": "**winner**", "loser": "*loser*"}.get(r["role"], "")
        score = fmt(r[metric_name]) if r["error"] is None else f"error: {r['error']}"
        md.append(f"| {r['group_id']} | {r['seed']} | {mark} | {score} | {fmt(r['motion_norm'])} | "
                  f"{fmt(r['coverage'], 3)} | `{r['video_path']}` |")
    md += ["", "## Figures", "", f"![score histogram]({out['hist'].name})", ""]
    if "curves" in out:
        md += [f"![training curves]({out['curves'].name})", ""]
    else:
        md += ["(no training metrics were logged, so no training curves)", ""]
    if commands:
        md += ["## Commands", "", "Every stage ran this script (from the repository root):", "", "```bash"]
        md += [f"python {' '.join(shlex.quote(str(a)) for a in cmd)}" for cmd in commands.values()]
        md += ["```", ""]
    md += ["## Files", ""]
    for k, v in report["paths"].items():
        if isinstance(v, (list, tuple)):
            md.append(f"- {k}:")
            md += [f"  - `{x}`" for x in v]
        else:
            md.append(f"- {k}: `{v}`")
    atomic_write_bytes(out["md"], ("\n".join(md) + "\n").encode("utf-8"))
    return out
