"""Results of ``benchmarks/closed_loop.py``: training curves from the trainer's CSV log, the pass/fail
verdict, the printed table and the PNG figure.
"""

from __future__ import annotations

import math
from pathlib import Path

from closed_loop_steps import SANITY_METRIC  # noqa: E402  (benchmarks/closed_loop_steps.py)


CURVE_KEYS = ("loss", "accuracy", "reward_margin")


def training_curves(metrics_csv: Path) -> dict[str, list[float]]:
    """Per-step DPO loss, implicit reward accuracy and margin from the trainer's CSV log (step order)."""
    from utils.report import read_lightning_csv

    series = read_lightning_csv(metrics_csv)
    return {key: [v for _, v in sorted(series.get(f"train/{key}", []))] for key in CURVE_KEYS}


def end_of_training(metrics_csv: Path, fraction: float) -> dict:
    """Mean DPO loss, implicit reward accuracy and margin over the last ``fraction`` of logged steps."""
    curves = training_curves(metrics_csv)
    out = {}
    for key in CURVE_KEYS:
        pts = curves[key]
        tail = pts[-max(1, int(round(len(pts) * fraction))):] if pts else []
        out[key] = sum(tail) / len(tail) if tail else math.nan
    out["steps"] = len(curves["loss"])
    return out


def verdict(arms: dict, alpha: float) -> dict:
    """The criterion: every ``sanity`` run significantly lower, every ``sanity-reversed`` run
    significantly higher (p < ``alpha`` and the CI excluding 0) -> ``passed``.

    Per run label (``sanity``, or ``sanity/seed<k>`` with several ``--dpo_seeds``): True/False.
    ``opposite_directions``: every sanity run moved significantly the opposite way of every
    sanity-reversed run, whatever the sign. With one DPO seed that is weak evidence: the two arms see
    the same pairs with swapped labels and the same noise, so their first updates are exact negatives.
    """
    out, signs = {}, {"sanity": set(), "sanity-reversed": set()}
    for label, r in arms.items():
        arm = r.get("arm", label.split("/")[0])
        if arm not in signs:
            continue
        p = r["paired"]
        significant = p["wilcoxon_p"] < alpha and p["ci_excludes_zero"]
        sign = math.copysign(1, p["mean_diff"]) if significant else 0
        signs[arm].add(sign)
        out[label] = bool(significant and sign == (-1 if arm == "sanity" else +1))
    out["passed"] = bool(out) and all(out.values())
    a, b = signs["sanity"], signs["sanity-reversed"]
    out["opposite_directions"] = len(a) == 1 and len(b) == 1 and 0 not in a | b and a != b
    return out


def format_table(results: dict) -> str:
    """Markdown table: per arm the paired comparison on its own metric and the end-of-training stats."""
    head = ("| arm | metric (winners) | n | base | adapter | diff (95% CI) | win rate | Wilcoxon p "
            "| DPO loss | implicit acc. |")
    lines = [head, "|" + "---|" * 10]
    for arm, r in results["arms"].items():
        p, t = r["paired"], r["training_end"]
        lines.append(
            f"| {arm} | {r['metric']} ({'lower' if r['metric_mode'] == 'min' else 'higher'}) | {p['n']} "
            f"| {p['mean_base']:.4f} | {p['mean_treated']:.4f} "
            f"| {p['mean_diff']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] | {p['win_rate']:.2f} "
            f"| {p['wilcoxon_p']:.2g} | {t.get('loss', math.nan):.3f} | {t.get('accuracy', math.nan):.2f} |"
        )
    rt = results["runtime"]
    lines.append("")
    lines.append(f"runtime: {rt['wall_s']:.0f} s wall, {rt['cpu_s']:.0f} s CPU "
                 f"({results['machine']['cpus']} cores, {results['machine']['torch_threads']} torch threads)")
    r = results["vae_round_trip"]
    lines.append(f"VAE round trip ({r['videos']} training videos): brightness of video vs "
                 f"decode(encoded latents) "
                 f"r = {r['brightness_pearson_r']:+.2f}; posterior std {r['posterior_std']:.2f} vs spread of "
                 f"its mean {r['posterior_mean_spread']:.2f}")
    v = results["verdict"]
    lines.append("verdict: " + ", ".join(f"{k}={v[k]}" for k in v))
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Top: per run, mean paired difference (adapter - base, held-out) with its 95% CI, one panel per
    metric, and the histograms of the brightness differences. Bottom: DPO loss, implicit reward
    accuracy and margin per optimiser step (moving mean)."""
    from utils.report import plot_png

    arms = results["arms"]
    metrics = sorted({r["metric"] for r in arms.values()}, key=lambda m: m != SANITY_METRIC)

    def draw(plt):
        fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), squeeze=False)
        for ax, metric in zip(axes[0][:2], metrics):
            rows = [(label, r["paired"]) for label, r in arms.items() if r["metric"] == metric]
            for y, (label, p) in enumerate(rows):
                err = [[p["mean_diff"] - p["ci_low"]], [p["ci_high"] - p["mean_diff"]]]
                ax.errorbar(p["mean_diff"], y, xerr=err,
                            fmt="o", color="tab:blue" if p["mean_diff"] < 0 else "tab:red", capsize=3)
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels([f"{lb} (p={p['wilcoxon_p']:.1g})" for lb, p in rows], fontsize=8)
            ax.axvline(0, color="k", lw=1)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
            ax.set_xlabel(f"{metric}: adapter - base, held-out (mean, 95% CI)")
        for ax in axes[0][len(metrics):2]:
            ax.axis("off")
        ax = axes[0][2]
        for label, r in arms.items():
            if r["metric"] == SANITY_METRIC:
                ax.hist(r["diffs"], bins=25, histtype="step", lw=1.5, label=label)
        ax.axvline(0, color="k", lw=1)
        ax.set_xlabel(f"{SANITY_METRIC}: adapter - base per held-out video")
        ax.legend(fontsize=7)
        window = 10
        titles = ("DPO loss", "implicit reward accuracy", "implicit reward margin")
        for ax, key, title in zip(axes[1], CURVE_KEYS, titles):
            for label, r in arms.items():
                vals = r["curves"].get(key, [])
                smooth = [sum(vals[max(0, i - window + 1): i + 1]) / len(vals[max(0, i - window + 1): i + 1])
                          for i in range(len(vals))]
                ax.plot(range(len(vals)), smooth, label=label, lw=1)
            ax.set_title(f"{title} (moving mean of {window})", fontsize=10)
            ax.set_xlabel("optimiser step")
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    plot_png(path, draw)
