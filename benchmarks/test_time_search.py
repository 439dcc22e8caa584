"""Test-time geometry search: verifier score of the chosen video vs compute (NFE), and early-pruning signal.

For each prompt, ``--max_n`` seeds are denoised once, in segments that stop at every prune step
``k = prune_step(T, p)`` for ``p`` in ``--prune_at``; at each stop the scheduler's x0 prediction is
decoded and verified (the *early* score), at the end the video (the *final* score). Resuming is
exact (tests/test_search.py), so these trajectories are the ones best-of-N and beam search
(without branching) would produce, and both searches are evaluated on them:

* best-of-N (N in ``--ns``): the lowest final score among N seeds; NFE = N T.
* beam (N, keep = max(1, N // 4), branch 1, each prune_at): keep the ``keep`` best early scores,
  take the lowest final score among them; NFE = N k + keep (T - k).

Scores are averaged over ``--subsets`` random N-subsets of the seeds per prompt (all of them when
N = max_n), then over prompts (Video-T1's scaling curve, Liu et al. 2025, with a geometry
verifier). The Spearman rank correlation between early and final scores over all seeds of a
prompt (mean over prompts, per prune_at) says whether pruning at that step can work. As a check
and to include branching, ``beam_search`` itself runs once per prompt with
``--direct N,KEEP,BRANCH`` (default 4,1,4: the NFE of best-of-4 spent on one survivor's branches).

Default (CPU): the tiny random CogVideoX (at 32x48 px, 9 frames) and VGGT of ``utils.tiny_models``, consistency without
LPIPS (MSE of the VGGT reprojection) and ``frame_diff``. With the tiny VGGT the consistency verifier uses
``points_source="depth"``: the random point head puts points on ~0.1 % of the pixels, so the released
``"point_head"`` score would be ~ mean(frame^2) of an all-black reprojection (a brightness measure, not
geometry); the depth head covers every pixel. With a real ``--vggt_model`` the default is the released
``"point_head"``. Random tiny models produce noise videos, so correlations and gains measure the code path,
not a real model. With a GPU and local weights:
``--base_model THUDM/CogVideoX-5b --vggt_model facebook/VGGT-1B --steps 50 --size 350 --frames 8``.

    python benchmarks/test_time_search.py [--write | --out PATH]   # --write: benchmarks/results/<name>.{json,png}

CPU time: about 17 s per prompt single-threaded (``OMP_NUM_THREADS=1``), dominated by VAE decodes;
on a shared, oversubscribed CPU set ``OMP_NUM_THREADS=1`` (2 threads at load 10 took 25 min).

Without ``--write`` or ``--out`` only the table is printed (``benchmarks/results_io.py``); the plot is
written beside the JSON (same name, ``.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generate.model_defaults import read_model_defaults, resolve_video_size  # noqa: E402
from generate.pipeline import load_pipeline  # noqa: E402
from generate.partial_denoise import PartialDenoiser, prune_step  # noqa: E402
from generate.search import beam_search  # noqa: E402
from generate.verifiers import Verifier, VerifierSettings  # noqa: E402
from results_io import RESULTS, add_output_args, save_results  # noqa: E402  (benchmarks/results_io.py)
from utils.io_utils import atomic_write_bytes  # noqa: E402

NAME = "test_time_search"

PROMPTS_JSON = ROOT / "tests" / "fixtures" / "dl3dv_captions_8.json"
NUM_PROMPTS = 4
MAX_N = 16
NS = (1, 2, 4, 8, 16)
PRUNE_ATS = (0.2, 0.4, 0.6)
STEPS = 20
GUIDANCE_SCALE = 6.0
VERIFIERS = ("consistency", "frame_diff")  # the first one drives the direct beam_search runs
VERIFIER_FRAMES = 8
VERIFIER_SIZE = 56
SUBSETS = 200
DIRECT = (4, 1, 4)  # N, KEEP, BRANCH of the direct beam_search run
SEED = 0
# consistency verifier's point cloud: None = "depth" for the tiny random VGGT (its point head covers ~0.1 % of
# the pixels, the score would be the frames' brightness), the released "point_head" for a real --vggt_model
POINTS_SOURCE = None
TINY_SIZE = (32, 48)  # (height, width) for the tiny model: VAE decoding dominates the CPU time, keep it small


def _keep(n: int) -> int:
    return max(1, n // 4)


def _trajectories(denoiser: PartialDenoiser, verifiers: dict, seeds: list[int], stops: list[int]) -> dict:
    """Per verifier: early scores ``[len(stops), M]`` and final scores ``[M]`` (NaN where the verifier failed)."""
    early = {v: np.full((len(stops), len(seeds)), np.nan) for v in verifiers}
    final = {v: np.full(len(seeds), np.nan) for v in verifiers}
    for i, seed in enumerate(seeds):
        state, start = None, 0
        for j, k in enumerate(stops):
            state, start = denoiser.run(seed, start, k, state), k
            frames = denoiser.decode(state.x0)
            for name, ver in verifiers.items():
                early[name][j, i] = _score(ver, frames)
        state = denoiser.run(seed, start, None, state)
        frames = denoiser.decode(state.latents)
        for name, ver in verifiers.items():
            final[name][i] = _score(ver, frames)
    return {"early": early, "final": final}


def _score(verifier: Verifier, frames) -> float:
    r = verifier.score(frames)
    return np.nan if r.score is None else r.score


def _curves(early: np.ndarray, final: np.ndarray, steps: int, stops: list[int], ns, subsets: int, rng) -> dict:
    """Mean chosen final score per N for best-of and beam (per prune step), over random N-subsets."""
    m = final.shape[0]
    out = {"best_of": {}, "beam": {str(k): {} for k in stops}}
    for n in ns:
        picks = [np.arange(m)] if n == m else [rng.choice(m, n, replace=False) for _ in range(subsets)]
        out["best_of"][n] = float(np.mean([np.nanmin(final[p]) for p in picks]))
        for j, k in enumerate(stops):
            chosen = []
            for p in picks:
                ok = p[np.isfinite(early[j, p])]
                survivors = ok[np.argsort(early[j, ok], kind="stable")[: _keep(n)]]
                chosen.append(np.nanmin(final[survivors]))
            out["beam"][str(k)][n] = float(np.mean(chosen))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base_model", default=None, help="diffusers folder / hub id (default: tiny random CogVideoX)")
    ap.add_argument("--vggt_model", default=None, help="VGGT for the consistency verifier (default: tiny random)")
    ap.add_argument("--lpips", action="store_true", help="consistency = MSE + LPIPS (needs LPIPS weights)")
    ap.add_argument("--points_source", choices=("point_head", "depth"), default=POINTS_SOURCE,
                    help="consistency verifier's point cloud (default: depth for the tiny VGGT, else point_head)")
    ap.add_argument("--num_prompts", type=int, default=NUM_PROMPTS)
    ap.add_argument("--max_n", type=int, default=MAX_N)
    ap.add_argument("--ns", default=",".join(map(str, NS)))
    ap.add_argument("--prune_at", default=",".join(map(str, PRUNE_ATS)))
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--height", type=int, default=None, help="video height (default: the model's; tiny: 32)")
    ap.add_argument("--width", type=int, default=None, help="video width (default: the model's; tiny: 48)")
    ap.add_argument("--frames", type=int, default=VERIFIER_FRAMES)
    ap.add_argument("--size", type=int, default=VERIFIER_SIZE)
    ap.add_argument("--subsets", type=int, default=SUBSETS)
    ap.add_argument("--direct", default=",".join(map(str, DIRECT)), help="N,KEEP,BRANCH of the direct beam run ('' skips)")
    ap.add_argument("--from_json", default=None,
                    help="only print the table of a results JSON (and redraw its plot with --write / --out)")
    add_output_args(ap, NAME)
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        m = saved["meta"]
        _print(saved["summary"], m["ns"], m["prune_steps"], m["steps"])
        if args.write or args.out:
            png_path = (Path(args.out) if args.out else RESULTS / f"{NAME}.json").with_suffix(".png")
            _plot(saved["summary"], m["ns"], m["prune_steps"], m["steps"], png_path)
            print(f"wrote {png_path}")
        return 0
    points_source = args.points_source or ("point_head" if args.vggt_model else "depth")
    ns = [int(x) for x in args.ns.split(",") if int(x) <= args.max_n]
    prune_ats = [float(x) for x in args.prune_at.split(",")]
    stops = sorted({prune_step(args.steps, p) for p in prune_ats})
    prompts = list(json.loads(PROMPTS_JSON.read_text()).values())[: args.num_prompts]
    seeds = [SEED + i for i in range(args.max_n)]
    t_start = time.perf_counter()
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()  # long DL3DV captions: T5's 226-token truncation notices
    transformers.utils.logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as tmp:
        from utils.tiny_models import ensure_tiny_models

        tiny = ensure_tiny_models(tmp, names=tuple(n for n, given in (("cogvideox-t2v", args.base_model),
                                                                       ("vggt", args.vggt_model)) if not given))
        base = args.base_model or str(tiny["cogvideox-t2v"])
        pipe = load_pipeline(base, "t2v", progress_bar=False)
        tiny_hw = (None, None) if args.base_model else TINY_SIZE
        num_frames, height, width = resolve_video_size(read_model_defaults(base), None, args.height or tiny_hw[0],
                                                       args.width or tiny_hw[1])
        settings = VerifierSettings(device=str(pipe.videogpa_device), num_frames=args.frames, image_size=args.size,
                                    vggt_model=args.vggt_model or str(tiny["vggt"]), lpips=args.lpips,
                                    points_source=points_source)
        verifiers = {name: Verifier(name, settings) for name in VERIFIERS}
        rng = np.random.default_rng(0)
        per_prompt, direct_rows = [], []
        for pi, prompt in enumerate(prompts):
            t0 = time.perf_counter()
            den = PartialDenoiser(pipe, prompt, num_frames=num_frames, height=height, width=width,
                                  num_inference_steps=args.steps, guidance_scale=GUIDANCE_SCALE)
            tr = _trajectories(den, verifiers, seeds, stops)
            row = {"prompt": prompt[:80], "seconds": round(time.perf_counter() - t0, 2), "verifiers": {}}
            for name in VERIFIERS:
                e, f = tr["early"][name], tr["final"][name]
                row["verifiers"][name] = {
                    "final": f.tolist(), "early": {str(k): e[j].tolist() for j, k in enumerate(stops)},
                    "curves": _curves(e, f, args.steps, stops, ns, args.subsets, rng),
                    "spearman": {str(k): _spearman(e[j], f) for j, k in enumerate(stops)},
                }
            if args.direct:
                n, keep, branch = (int(x) for x in args.direct.split(","))
                primary = verifiers[VERIFIERS[0]]
                for p in prune_ats:
                    d = PartialDenoiser(pipe, prompt, num_frames=num_frames, height=height, width=width,
                                        num_inference_steps=args.steps, guidance_scale=GUIDANCE_SCALE)
                    res = beam_search(d, primary, SEED, n, keep, branch, p, progress=False)
                    # cross-check with the segmented trajectories: same early scores, same survivors' finals
                    j = stops.index(prune_step(args.steps, p))
                    e, f = tr["early"][VERIFIERS[0]][j, :n], tr["final"][VERIFIERS[0]]
                    same = all(np.isclose(c["early"]["score"], e[c["id"]], rtol=1e-6, equal_nan=True)
                               for c in res.candidates if c["parent"] is None and c["early"]["score"] is not None)
                    same &= all(np.isclose(c["final"]["score"], f[c["id"]], rtol=1e-6)
                                for c in res.candidates if c["parent"] is None and c["final"] and c["final"]["score"])
                    direct_rows.append({"prompt": pi, "n": n, "keep": keep, "branch": branch, "prune_at": p,
                                        "matches_trajectories": bool(same), "best_of_n_score": float(np.nanmin(f[:n])),
                                        "score": res.score, "nfe": res.cost["nfe"],
                                        "verifier_calls": res.cost["verifier_calls"], "seconds": res.cost["seconds"]})
            per_prompt.append(row)
            print(f"prompt {pi + 1}/{len(prompts)} done in {row['seconds']} s", file=sys.stderr)
        # the pipeline and tiny models live in tmp; everything below uses plain numbers

    summary = _summary(per_prompt, direct_rows, ns, stops, args.steps)
    _print(summary, ns, stops, args.steps)
    meta = {"base_model": args.base_model or "tiny random CogVideoX (utils.tiny_models)",
            "vggt_model": args.vggt_model or "tiny random VGGT", "lpips": args.lpips,
            "points_source": points_source,
            "verifiers": {name: {k: v for k, v in ver.describe().items() if k != "verifier_vggt_model"}
                          for name, ver in verifiers.items()},
            "num_prompts": len(prompts), "max_n": args.max_n, "ns": ns, "prune_at": prune_ats, "prune_steps": stops,
            "steps": args.steps, "guidance_scale": GUIDANCE_SCALE, "verifier_frames": args.frames,
            "verifier_size": args.size, "keep_rule": "max(1, N // 4)", "subsets": args.subsets,
            "video": [num_frames, height, width], "wall_seconds": round(time.perf_counter() - t_start, 1),
            "torch_threads": __import__("torch").get_num_threads(), "python": platform.python_version(),
            "loadavg_1_5_15": list(os.getloadavg())}  # fmt: skip
    json_path = save_results(args, NAME, {"meta": meta, "summary": summary, "per_prompt": per_prompt})
    if json_path is not None:
        _plot(summary, ns, stops, args.steps, json_path.with_suffix(".png"))
        print(f"wrote {json_path.with_suffix('.png')}")
    return 0


def _spearman(early: np.ndarray, final: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    ok = np.isfinite(early) & np.isfinite(final)
    if ok.sum() < 3 or np.ptp(early[ok]) == 0 or np.ptp(final[ok]) == 0:
        return None
    return float(spearmanr(early[ok], final[ok]).statistic)


def _summary(per_prompt: list, direct_rows: list, ns, stops, steps: int) -> dict:
    out = {"verifiers": {}, "direct_beam": direct_rows}
    for name in VERIFIERS:
        rows = [p["verifiers"][name] for p in per_prompt]
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        v = {"best_of": {str(n): {"score": mean([r["curves"]["best_of"][n] for r in rows]), "nfe": n * steps}
                         for n in ns},
             "beam": {str(k): {str(n): {"score": mean([r["curves"]["beam"][str(k)][n] for r in rows]),
                                        "keep": _keep(n), "nfe": n * k + _keep(n) * (steps - k)} for n in ns}
                      for k in stops},
             "spearman_mean": {str(k): mean([r["spearman"][str(k)] for r in rows if r["spearman"][str(k)] is not None])
                               for k in stops},
             "spearman_per_prompt": {str(k): [r["spearman"][str(k)] for r in rows] for k in stops}}  # fmt: skip
        out["verifiers"][name] = v
    return out


def _print(summary: dict, ns, stops, steps: int) -> None:
    for name, v in summary["verifiers"].items():
        print(f"\nverifier {name}: mean chosen final score (lower = better) vs N; NFE in units of one video ({steps} steps)")
        head = f"{'N':>3} | {'best-of':>9} {'NFE':>5}" + "".join(f" | beam@{k:<2} {'NFE':>5}" for k in stops)
        print(head)
        print("-" * len(head))
        for n in ns:
            b = v["best_of"][str(n)]
            cells = "".join(f" | {v['beam'][str(k)][str(n)]['score']:>7.4f} {v['beam'][str(k)][str(n)]['nfe'] / steps:>5.2f}"
                            for k in stops)
            print(f"{n:>3} | {b['score']:>9.4f} {b['nfe'] / steps:>5.2f}{cells}")
        sp = ", ".join(f"step {k}: {v['spearman_mean'][k]:+.3f}" if v["spearman_mean"][k] is not None else f"step {k}: n/a"
                       for k in v["spearman_mean"])
        print(f"Spearman(early, final), mean over prompts: {sp}")
    for r in summary["direct_beam"]:
        print(f"direct beam_search, prompt {r['prompt']}: N={r['n']} keep={r['keep']} branch={r['branch']} "
              f"prune_at={r['prune_at']}: score {r['score']:.4f} (best-of-{r['n']} on the same seeds "
              f"{r['best_of_n_score']:.4f}), NFE {r['nfe']}, verifier calls {r['verifier_calls']}, "
              f"matches the trajectories: {r['matches_trajectories']}")


def _plot(summary: dict, ns, stops, steps: int, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["verifiers"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 6), squeeze=False)
    for ax, name in zip(axes[0], names):
        v = summary["verifiers"][name]
        ax.plot([v["best_of"][str(n)]["nfe"] / steps for n in ns], [v["best_of"][str(n)]["score"] for n in ns],
                "o-", label="best-of-N")
        for k in stops:
            pts = v["beam"][str(k)]
            rho = v["spearman_mean"][str(k)]
            label = f"beam, prune at step {k}/{steps}" + (f" (rho {rho:+.2f})" if rho is not None else "")
            ax.plot([pts[str(n)]["nfe"] / steps for n in ns], [pts[str(n)]["score"] for n in ns], "s--", label=label)
        direct = summary["direct_beam"]
        if name == VERIFIERS[0] and direct:
            n0 = direct[0]["n"]
            ax.plot(n0, np.mean([r["best_of_n_score"] for r in direct if r["prune_at"] == direct[0]["prune_at"]]),
                    "P", ms=9, color="k", label=f"best-of-{n0} on seeds {SEED}..{SEED + n0 - 1}")
            for p in sorted({r["prune_at"] for r in direct}):
                rows = [r for r in direct if r["prune_at"] == p]
                ax.plot(rows[0]["nfe"] / steps, np.mean([r["score"] for r in rows]), "x", ms=9, mew=2,
                        label=f"beam_search N={rows[0]['n']} keep={rows[0]['keep']} branch={rows[0]['branch']}, "
                              f"prune_at {p} (seeds {SEED}..{SEED + rows[0]['n'] - 1})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE / NFE of one video")
        ax.set_ylabel(f"{name} of the chosen video (lower = better)")
        ax.set_title(f"verifier: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.suptitle("Test-time geometry search (N = " + ", ".join(map(str, ns)) + "; keep = max(1, N // 4))", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
