"""Summary of a ``scores.csv``: per-arm means with CIs, paired comparisons with ``original``, plots.

Conditions are ``original`` and each ``(arm, lora_weight)`` (label ``dpo`` when the arm has one
weight, else ``dpo@w0.5``...). For every metric present:

* per condition: n, mean, std and the 95 % BCa bootstrap CI of the mean (:func:`evaluation.stats.mean_ci`);
* per non-original condition vs ``original`` on the same ``(prompt_id, seed)`` (:func:`evaluation.stats.paired_comparison`):
  mean of ``arm - original`` with its bootstrap CI, win rate (share of pairs where the arm is better
  in the metric's direction, ties 1/2), two-sided Wilcoxon signed-rank p, and the Holm-adjusted p
  over all (condition, quality metric) tests of the summary (:func:`evaluation.stats.holm_adjust`).
  A comparison is *significant* when the Holm-adjusted p < 0.05 and the CI excludes 0. Camera
  motion and coverage are descriptive: compared and reported, outside the Holm family, never significant.

Any scores CSV works: this project's, or the released ``replicate_scorer.py`` output (columns
``prompt_id, video_name, ...``; seed, arm and weight come from the video name, ``motion_score`` is
the camera motion; a negative ``epipolar`` is the released "no pair evaluated" sentinel and is
read as missing).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from evaluation.layout import ORIGINAL, parse_video_name
from evaluation.scores_csv import DESCRIPTIVE, METRICS, RELEASED_ALIASES, read_scores, row_key
from evaluation.stats import DEFAULT_RESAMPLES, holm_adjust, mean_ci, paired_comparison
from utils.io_utils import atomic_write_bytes, atomic_write_json

__all__ = ["load_rows_any", "summarize_rows", "write_summary", "summarize_csv", "ALPHA"]

ALPHA = 0.05


def load_rows_any(path: str | os.PathLike) -> list[dict]:
    """Rows of a scores CSV in this project's format or the released one (see module docstring).

    Raises:
        evaluation.scores_csv.ScoresFormatError: unreadable file, or rows without identity columns.
    """
    from evaluation.scores_csv import ScoresFormatError

    rows = read_scores(path, required=("prompt_id",))
    out = []
    for n, r in enumerate(rows, start=2):
        r = dict(r)
        if not r.get("arm"):
            name = r.get("video_name") or os.path.basename(str(r.get("video_path") or ""))
            parsed = parse_video_name(name)
            if parsed is None:
                raise ScoresFormatError(f"{path} line {n}: no arm/seed columns and video name {name!r} "
                                        "is not seed_<seed>_<arm>[_w<weight>].mp4")
            r["seed"], r["arm"], r["lora_weight"] = parsed
        for col in list(r):
            if col in METRICS or col in RELEASED_ALIASES:
                v = r[col]
                r[col] = float(v) if v not in ("", None) else math.nan
        if isinstance(r.get("epipolar"), float) and r["epipolar"] < 0:
            r["epipolar"] = math.nan
        r["seed"], r["lora_weight"] = int(r["seed"]), float(r["lora_weight"] or 0.0)
        out.append(r)
    return out


def _labels(rows: list[dict]) -> dict[tuple[str, float], str]:
    weights: dict[str, set] = {}
    for r in rows:
        weights.setdefault(r["arm"], set()).add(float(r["lora_weight"]))
    return {(a, w): a if (a == ORIGINAL or len(ws) == 1) else f"{a}@w{w}" for a, ws in weights.items() for w in ws}


def _metric_columns(rows: list[dict]) -> list[str]:
    cols = set().union(*(r.keys() for r in rows)) if rows else set()
    return [m for m in list(METRICS) + list(RELEASED_ALIASES) if m in cols]


def _lower_is_better(metric: str) -> bool:
    return METRICS[RELEASED_ALIASES.get(metric, metric)]


def _descriptive(metric: str) -> bool:
    return RELEASED_ALIASES.get(metric, metric) in DESCRIPTIVE


def summarize_rows(rows: list[dict], n_resamples: int = DEFAULT_RESAMPLES, notes: list[str] | None = None) -> dict:
    """The summary dictionary (written as ``summary.json``) of scores rows (:func:`load_rows_any`)."""
    labels = _labels(rows)
    metrics = _metric_columns(rows)
    conds: dict[str, list[dict]] = {}
    for r in rows:
        conds.setdefault(labels[(r["arm"], float(r["lora_weight"]))], []).append(r)
    order = sorted(conds, key=lambda c: (c != ORIGINAL, c))
    per_arm = {}
    for c in order:
        rs = conds[c]
        per_arm[c] = {
            "videos": len(rs),
            "errors": sum(1 for r in rs if r.get("error")),
            "epipolar_pairs_skipped": sum(int(r.get("epipolar_pairs_skipped") or 0) for r in rs),
            "metrics": {m: mean_ci([r.get(m, math.nan) for r in rs], n_resamples=n_resamples).as_dict() for m in metrics},
        }
    comparisons: dict[str, dict] = {}
    if ORIGINAL in conds:
        base = {(r["prompt_id"], r["seed"]): r for r in conds[ORIGINAL]}
        for c in order:
            if c == ORIGINAL:
                continue
            treated = {(r["prompt_id"], r["seed"]): r for r in conds[c]}
            keys = sorted(set(base) & set(treated))
            comparisons[c] = {"pairs": len(keys), "unpaired": len(set(treated) - set(base)), "metrics": {}}
            for m in metrics:
                pc = paired_comparison([base[k].get(m, math.nan) for k in keys], [treated[k].get(m, math.nan) for k in keys],
                                       lower_is_better=_lower_is_better(m), n_resamples=n_resamples)
                comparisons[c]["metrics"][m] = pc.as_dict()
        tests = [(c, m) for c in comparisons for m in metrics if not _descriptive(m)]
        adj = dict(zip(tests, holm_adjust([comparisons[c]["metrics"][m]["wilcoxon_p"] for c, m in tests])))
        for c in comparisons:
            for m in metrics:
                d, p = comparisons[c]["metrics"][m], adj.get((c, m), math.nan)
                d["wilcoxon_p_holm"] = p
                d["significant"] = bool(math.isfinite(p) and p < ALPHA and d["ci_excludes_zero"])
    return {
        "videos": len(rows),
        "errors": sum(1 for r in rows if r.get("error")),
        "conditions": order,
        "metrics": {m: {"lower_is_better": _lower_is_better(m), "descriptive": _descriptive(m)} for m in metrics},
        "per_arm": per_arm,
        "vs_original": comparisons,
        "alpha": ALPHA,
        "confidence": 0.95,
        "notes": list(notes or []),
        "error_examples": [{"key": list(row_key(r)), "error": r["error"]} for r in rows if r.get("error")][:20],
    }


def _f(x, nd=4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{nd}g}"


def _p(x) -> str:
    return "-" if x is None or not math.isfinite(x) else (f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}")


def _direction(info: dict) -> str:
    if info["descriptive"]:
        return "(descriptive)"
    return "(lower better)" if info["lower_is_better"] else "(higher better)"


def _markdown(s: dict, plots: dict[str, str]) -> str:
    metrics = list(s["metrics"])
    lines = ["# Evaluation summary", "",
             f"{s['videos']} videos, {s['errors']} with an error (not scored). Means with 95 % bootstrap "
             "CIs (BCa); comparisons are paired on (prompt, seed) against `original`.", ""]
    lines += [f"* {n}" for n in s["notes"]] + ([""] if s["notes"] else [])
    lines += ["## Per arm: mean [95 % CI]", "",
              "epipolar: frame pairs with fewer than 20 SIFT matches are skipped (column `skipped pairs`).", "",
              "| arm | videos | errors | skipped pairs | " + " | ".join(f"{m} {_direction(s['metrics'][m])}" for m in metrics) + " |",
              "|---|---|---|---|" + "---|" * len(metrics)]
    for c in s["conditions"]:
        a = s["per_arm"][c]
        cells = [f"{_f(a['metrics'][m]['mean'])} [{_f(a['metrics'][m]['ci_low'])}, {_f(a['metrics'][m]['ci_high'])}]" for m in metrics]
        lines.append(f"| {c} | {a['videos']} | {a['errors']} | {a['epipolar_pairs_skipped']} | " + " | ".join(cells) + " |")
    if s["vs_original"]:
        lines += ["", "## Versus `original` (same prompt and seed)", "",
                  "diff = arm - original. win = share of pairs where the arm is better (ties 1/2). "
                  "p = two-sided Wilcoxon signed-rank; p_holm = Holm-adjusted over every quality-metric test in this "
                  "table (camera motion and coverage are descriptive, outside the family). "
                  f"**bold** = significant (p_holm < {s['alpha']} and CI excludes 0).", ""]
        lines += ["| arm | metric | pairs | diff [95 % CI] | win rate | p | p_holm |", "|---|---|---|---|---|---|---|"]
        for c, comp in s["vs_original"].items():
            for m in metrics:
                d = comp["metrics"][m]
                diff = f"{_f(d['mean_diff'])} [{_f(d['ci_low'])}, {_f(d['ci_high'])}]"
                if d["significant"]:
                    diff = f"**{diff}**"
                lines.append(f"| {c} | {m} | {d['n']} | {diff} | {_f(d['win_rate'], 3)} | {_p(d['wilcoxon_p'])} | {_p(d['wilcoxon_p_holm'])} |")
    elif len(s["conditions"]) > 0:
        lines += ["", "No `original` arm in these scores: no paired comparison."]
    if plots:
        lines += ["", "## Plots (paired differences arm - original per metric)", ""]
        lines += [f"![{m}]({p})" for m, p in plots.items()]
    if s["error_examples"]:
        lines += ["", "## Errors (first 20)", ""]
        lines += [f"* `{e['key']}`: {e['error']}" for e in s["error_examples"]]
    return "\n".join(lines) + "\n"


def _plot_differences(out_dir: Path, rows: list[dict], summary: dict) -> dict[str, str]:
    from utils.report import plot_png

    labels = _labels(rows)
    base = {(r["prompt_id"], r["seed"]): r for r in rows if r["arm"] == ORIGINAL}
    conds = [c for c in summary["conditions"] if c != ORIGINAL]
    if not base or not conds:
        return {}
    plots = {}
    for m in summary["metrics"]:
        data = []
        for c in conds:
            diffs = [r.get(m, math.nan) - base[(r["prompt_id"], r["seed"])].get(m, math.nan) for r in rows
                     if labels[(r["arm"], float(r["lora_weight"]))] == c and (r["prompt_id"], r["seed"]) in base]
            data.append([d for d in diffs if math.isfinite(d)])
        if not any(data):
            continue

        def draw(plt, data=data, m=m):
            fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(conds), 3.2))
            rng = np.random.default_rng(0)
            for i, d in enumerate(data):
                if d:
                    ax.boxplot([d], positions=[i], widths=0.5, showfliers=False)
                    ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=10, alpha=0.6)
            ax.axhline(0.0, color="0.4", lw=1, ls="--")
            ax.set_xticks(range(len(conds)), conds)
            ax.set_ylabel(f"{m}: arm - original")
            ax.set_title(f"{m} {_direction(summary['metrics'][m])}", fontsize=9)
            return fig

        name = f"paired_diff_{m}.png"
        plot_png(out_dir / name, draw)
        plots[m] = name
    return plots


def write_summary(out_dir: str | os.PathLike, rows: list[dict], n_resamples: int = DEFAULT_RESAMPLES,
                  notes: list[str] | None = None, plots: bool = True) -> dict:
    """Write ``summary.json``, ``summary.md`` and ``paired_diff_<metric>.png`` into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = summarize_rows(rows, n_resamples=n_resamples, notes=notes)
    pngs = _plot_differences(out, rows, s) if plots else {}
    s["plots"] = pngs
    atomic_write_json(out / "summary.json", s)
    atomic_write_bytes(out / "summary.md", _markdown(s, pngs).encode("utf-8"))
    return s


def summarize_csv(csv_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, **kwargs) -> dict:
    """:func:`write_summary` of any scores CSV (default output folder: the CSV's folder)."""
    rows = load_rows_any(csv_path)
    return write_summary(out_dir if out_dir is not None else Path(csv_path).parent, rows, **kwargs)
