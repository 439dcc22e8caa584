"""Summary of a ``scores.csv``: per-arm means with CIs, paired comparisons with ``original``, plots.

Conditions are ``original`` and each ``(arm, lora_weight)`` (label ``dpo`` when the arm has one
weight, else ``dpo@w0.5``...). For every metric present:

The unit of analysis is the prompt: videos of one prompt with several seeds share the prompt's
scene and are not independent samples, so each prompt's values are averaged over its seeds first
(``n`` = prompts; one seed per prompt, as released, changes nothing).

* per condition: n (prompts), mean, std and the 95 % BCa bootstrap CI of the mean of the per-prompt
  means (:func:`evaluation.stats.mean_ci`);
* per non-original condition vs ``original`` (:func:`evaluation.stats.paired_comparison`): videos are
  paired on ``(prompt_id, seed)``; per prompt, the arm's and original's values are averaged over
  its complete pairs; then the mean of ``arm - original`` over prompts with its bootstrap CI, win
  rate (share of prompts where the arm is better in the metric's direction, ties 1/2), two-sided
  Wilcoxon signed-rank p, and the Holm-adjusted p
  over all (condition, quality metric) tests of the summary (:func:`evaluation.stats.holm_adjust`).
  A comparison is *significant* when the Holm-adjusted p < 0.05 and the CI excludes 0. Camera
  motion and coverage are descriptive: compared and reported, outside the Holm family, never significant.

Any scores CSV works: this project's, or the released ``replicate_scorer.py`` output (columns
``prompt_id, video_name, ...``; seed, arm and weight come from the video name, ``motion_score`` is
the camera motion). In a released CSV these values are read as missing (NaN), not as scores:

* every metric of a row with an ``error`` (the released scorer leaves them empty);
* an exact ``0.0`` in ``mvcs``, ``psnr`` or ``ssim``: the released scorer writes 0.0 when its
  processor returned no value for a metric (``res.get(name, 0.0)``), and a real video cannot
  score exactly 0 there (mvcs = exp(-MSE) > 0, PSNR of [0, 1] images with MSE < 1 > 0 dB, SSIM of
  two natural images exactly 0 does not happen). The other defaulted columns (consistency_score,
  lpips, motion_score, epipolar) can be near 0 legitimately and are kept;
* a negative ``epipolar``: the released "no pair evaluated" sentinel.

The summary JSON is strict JSON: missing values (NaN) are written as ``null``.
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

__all__ = ["load_rows_any", "summarize_rows", "write_summary", "summarize_csv", "ALPHA", "RELEASED_ZERO_IS_MISSING"]

ALPHA = 0.05
# released replicate_scorer.py columns whose 0.0 is its "no value" default, impossible as a real score
RELEASED_ZERO_IS_MISSING = ("mvcs", "psnr", "ssim")
UNIT = "prompt (seeds averaged per prompt)"


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
        released = not r.get("arm")
        if released:
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
        if released:
            for col in list(r):
                is_metric = col in METRICS or col in RELEASED_ALIASES
                if is_metric and (r.get("error") or (col in RELEASED_ZERO_IS_MISSING and r[col] == 0.0)):
                    r[col] = math.nan
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


def _prompt_means(rows: list[dict], metric: str) -> list[float]:
    """Per prompt, the mean of ``metric`` over its seeds (finite values; NaN when it has none)."""
    by_prompt: dict[str, list[float]] = {}
    for r in rows:
        v = r.get(metric, math.nan)
        by_prompt.setdefault(str(r["prompt_id"]), []).extend([v] if math.isfinite(v) else [])
    return [float(np.mean(v)) if v else math.nan for _, v in sorted(by_prompt.items())]


def _paired_prompt_means(base: dict, treated: dict, metric: str) -> tuple[list[float], list[float]]:
    """(original, arm) per prompt: each side's mean over the prompt's seeds where both are finite.

    ``base``/``treated``: ``{(prompt_id, seed): row}``. A prompt without a complete pair gives NaN
    (dropped and counted by :func:`evaluation.stats.paired_comparison`).
    """
    pairs: dict[str, list[tuple[float, float]]] = {}
    for k in sorted(set(base) & set(treated)):
        b, t = base[k].get(metric, math.nan), treated[k].get(metric, math.nan)
        pairs.setdefault(str(k[0]), []).extend([(b, t)] if math.isfinite(b) and math.isfinite(t) else [])
    out_b, out_t = [], []
    for _, ps in sorted(pairs.items()):
        out_b.append(float(np.mean([b for b, _ in ps])) if ps else math.nan)
        out_t.append(float(np.mean([t for _, t in ps])) if ps else math.nan)
    return out_b, out_t


def _by_condition(rows: list[dict]) -> dict[str, list[dict]]:
    labels = _labels(rows)
    conds: dict[str, list[dict]] = {}
    for r in rows:
        conds.setdefault(labels[(r["arm"], float(r["lora_weight"]))], []).append(r)
    return conds


def summarize_rows(rows: list[dict], n_resamples: int = DEFAULT_RESAMPLES, notes: list[str] | None = None,
                   settings: dict | None = None) -> dict:
    """The summary dictionary (written as ``summary.json``) of scores rows (:func:`load_rows_any`).

    Statistics are over prompts (seeds averaged per prompt, see the module docstring); ``settings``
    (the run's settings record, ``evaluation.run_settings``) is stored as given.
    """
    metrics = _metric_columns(rows)
    conds = _by_condition(rows)
    order = sorted(conds, key=lambda c: (c != ORIGINAL, c))
    per_arm = {}
    for c in order:
        rs = conds[c]
        per_arm[c] = {
            "videos": len(rs),
            "prompts": len({str(r["prompt_id"]) for r in rs}),
            "errors": sum(1 for r in rs if r.get("error")),
            "epipolar_pairs_skipped": sum(int(r.get("epipolar_pairs_skipped") or 0) for r in rs),
            "metrics": {m: mean_ci(_prompt_means(rs, m), n_resamples=n_resamples).as_dict() for m in metrics},
        }
    comparisons: dict[str, dict] = {}
    if ORIGINAL in conds:
        base = {(r["prompt_id"], r["seed"]): r for r in conds[ORIGINAL]}
        for c in order:
            if c == ORIGINAL:
                continue
            treated = {(r["prompt_id"], r["seed"]): r for r in conds[c]}
            keys = set(base) & set(treated)
            comparisons[c] = {"pairs": len(keys), "prompts": len({k[0] for k in keys}),
                              "unpaired": len(set(treated) - set(base)), "metrics": {}}
            for m in metrics:
                b, t = _paired_prompt_means(base, treated, m)
                pc = paired_comparison(b, t, lower_is_better=_lower_is_better(m), n_resamples=n_resamples)
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
        "unit_of_analysis": UNIT,
        "conditions": order,
        "metrics": {m: {"lower_is_better": _lower_is_better(m), "descriptive": _descriptive(m)} for m in metrics},
        "per_arm": per_arm,
        "vs_original": comparisons,
        "alpha": ALPHA,
        "confidence": 0.95,
        "notes": list(notes or []),
        "settings": dict(settings) if settings is not None else None,
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
             "CIs (BCa); comparisons are paired on (prompt, seed) against `original`. "
             "n = prompts (seeds averaged per prompt).", ""]
    lines += [f"* {n}" for n in s["notes"]] + ([""] if s["notes"] else [])
    if s.get("settings"):
        lines += ["Settings: " + ", ".join(f"`{k}={v}`" for k, v in s["settings"].items()), ""]
    lines += ["## Per arm: mean [95 % CI] (n = prompts)", "",
              "epipolar: frame pairs with fewer than 20 SIFT matches are skipped (column `skipped pairs`).", "",
              "| arm | videos | prompts | errors | skipped pairs | " + " | ".join(f"{m} {_direction(s['metrics'][m])}" for m in metrics) + " |",
              "|---|---|---|---|---|" + "---|" * len(metrics)]
    for c in s["conditions"]:
        a = s["per_arm"][c]
        cells = [f"{_f(a['metrics'][m]['mean'])} [{_f(a['metrics'][m]['ci_low'])}, {_f(a['metrics'][m]['ci_high'])}]" for m in metrics]
        lines.append(f"| {c} | {a['videos']} | {a['prompts']} | {a['errors']} | {a['epipolar_pairs_skipped']} | " + " | ".join(cells) + " |")
    if s["vs_original"]:
        lines += ["", "## Versus `original` (same prompt and seed)", "",
                  "n = prompts (seeds averaged per prompt): per prompt, the arm's and original's values are "
                  "averaged over its (prompt, seed) pairs. diff = arm - original. win = share of prompts where "
                  "the arm is better (ties 1/2). "
                  "p = two-sided Wilcoxon signed-rank; p_holm = Holm-adjusted over every quality-metric test in this "
                  "table (camera motion and coverage are descriptive, outside the family). "
                  f"**bold** = significant (p_holm < {s['alpha']} and CI excludes 0).", ""]
        lines += ["| arm | metric | n | diff [95 % CI] | win rate | p | p_holm |", "|---|---|---|---|---|---|---|"]
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

    by_cond = _by_condition(rows)
    conds = [c for c in summary["conditions"] if c != ORIGINAL]
    if ORIGINAL not in by_cond or not conds:
        return {}
    base = {(r["prompt_id"], r["seed"]): r for r in by_cond[ORIGINAL]}
    plots = {}
    for m in summary["metrics"]:
        data = []
        for c in conds:
            b, t = _paired_prompt_means(base, {(r["prompt_id"], r["seed"]): r for r in by_cond[c]}, m)
            data.append([y - x for x, y in zip(b, t) if math.isfinite(y - x)])
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
            ax.set_ylabel(f"{m}: arm - original (per prompt)")
            ax.set_title(f"{m} {_direction(summary['metrics'][m])}", fontsize=9)
            return fig

        name = f"paired_diff_{m}.png"
        plot_png(out_dir / name, draw)
        plots[m] = name
    return plots


def write_summary(out_dir: str | os.PathLike, rows: list[dict], n_resamples: int = DEFAULT_RESAMPLES,
                  notes: list[str] | None = None, plots: bool = True, settings: dict | None = None) -> dict:
    """Write ``summary.json`` (strict JSON, NaN -> null), ``summary.md`` and ``paired_diff_<metric>.png``
    into ``out_dir``; returns the summary (with NaN)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = summarize_rows(rows, n_resamples=n_resamples, notes=notes, settings=settings)
    pngs = _plot_differences(out, rows, s) if plots else {}
    s["plots"] = pngs
    atomic_write_json(out / "summary.json", s, nan_as_null=True)
    atomic_write_bytes(out / "summary.md", _markdown(s, pngs).encode("utf-8"))
    return s


def summarize_csv(csv_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, **kwargs) -> dict:
    """:func:`write_summary` of any scores CSV (default output folder: the CSV's folder), with the
    CSV's settings record (``<stem>.settings.json``) when there is one."""
    from evaluation.run_settings import read_settings

    rows = load_rows_any(csv_path)
    kwargs.setdefault("settings", read_settings(csv_path))
    return write_summary(out_dir if out_dir is not None else Path(csv_path).parent, rows, **kwargs)
