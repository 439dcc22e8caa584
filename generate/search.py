"""Inference-time search with a geometry verifier: best-of-N and pruned beam search.

Video-T1 (Liu et al., "Video-T1: Test-Time Scaling for Video Generation", 2025) spends more compute
at inference by sampling several noises and keeping what a verifier prefers, and prunes weak
candidates early (its Tree-of-Frames search). Here the verifier is a geometry metric
(``generate/verifiers.py``, default: VideoGPA's VGGT consistency score, lower = better).

Best-of-N (:func:`best_of_n`)
    Seeds ``seed, seed + 1, ..., seed + N - 1``; each is generated in full (the same video as
    ``generate_video`` with that seed), all N are verified, the lowest score wins.
    Cost: ``N * T`` NFE, ``N`` verifier calls, ``N`` VAE decodes.

Beam search (:func:`beam_search`)
    N noises (seeds as above) are denoised for ``k = prune_step(T, prune_at)`` steps; each
    candidate's predicted clean sample x0 at that step is decoded and verified; the ``keep`` best
    survive. Each survivor continues as it is and, with ``branch > 1``, also spawns ``branch - 1``
    branches: its x0 re-noised to the current noise level with fresh noise
    (:meth:`PartialDenoiser.renoise`). The ``keep * branch`` survivors and branches are finished
    and verified; the lowest final score wins. With ``keep = N`` and ``branch = 1`` the finished
    videos are exactly those of best-of-N (resuming is exact, see ``generate/partial_denoise.py``),
    so the choice is the same.
    Cost: ``N * k + keep * branch * (T - k)`` NFE, ``N + keep * branch`` verifier calls and
    ``N + keep * branch`` VAE decodes.

NFE = denoiser evaluations, one per latent per step (a CFG pair is one NFE, see
``generate/partial_denoise.py``). A candidate whose verification fails (exception or non-finite
score) is marked with its error and left out; the search goes on with the rest and fails
(:class:`SearchError`) only when no candidate is left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from generate.partial_denoise import PartialDenoiser, ResumeState, SearchError, prune_step
from generate.verifiers import Verifier, VerifierResult

logger = logging.getLogger(__name__)

__all__ = ["SEARCH_MODES", "SearchConfig", "SearchResult", "SearchError", "search_video", "best_of_n",
           "beam_search", "branch_seed", "search_settings"]  # fmt: skip

SEARCH_MODES = ("best_of", "beam")


@dataclass(frozen=True)
class SearchConfig:
    """Search settings.

    Attributes:
        mode: ``"best_of"`` or ``"beam"``.
        n: initial noises (seeds ``seed .. seed + n - 1``), >= 1.
        keep: beam: candidates kept at the pruning step, ``1 <= keep <= n``.
        branch: beam: finished videos per survivor (1 = no branching; b > 1 adds b - 1 re-noised branches).
        prune_at: beam: fraction of the denoising steps run before pruning, in (0, 1).
    Raises:
        ValueError: (on construction) a value out of range.
    """

    mode: str = "best_of"
    n: int = 1
    keep: int = 1
    branch: int = 1
    prune_at: float = 0.3

    def __post_init__(self):
        if self.mode not in SEARCH_MODES:
            raise ValueError(f"search mode must be one of {SEARCH_MODES}, got {self.mode!r}")
        if self.n < 1:
            raise ValueError(f"best_of / N must be >= 1, got {self.n}")
        if self.mode == "beam":
            if not 1 <= self.keep <= self.n:
                raise ValueError(f"keep must be in [1, N={self.n}], got {self.keep}")
            if self.branch < 1:
                raise ValueError(f"branch must be >= 1, got {self.branch}")
            if not 0.0 < self.prune_at < 1.0:
                raise ValueError(f"prune_at must be in (0, 1), got {self.prune_at}")

    def expected_nfe(self, num_inference_steps: int) -> int:
        """NFE of this search for ``T`` steps (the cost model of the module docstring)."""
        t = int(num_inference_steps)
        if self.mode == "best_of":
            return self.n * t
        k = prune_step(t, self.prune_at)
        return self.n * k + self.keep * self.branch * (t - k)

    def expected_verifier_calls(self) -> int:
        """Videos verified: N (best-of); N early + keep * branch final (beam)."""
        return self.n if self.mode == "best_of" else self.n + self.keep * self.branch


@dataclass
class SearchResult:
    """The outcome of a search.

    Attributes:
        frames: the chosen video, uint8 ``[F, H, W, 3]``.
        chosen: id of the chosen candidate (index into ``candidates``).
        candidates: one dict per trajectory: ``id``, ``seed`` (its initial noise), ``parent`` (id
            it branched from, or None), ``renoise_seed`` (branches only), ``early`` / ``final``
            (:meth:`VerifierResult.to_json` or None), ``status`` (``chosen``, ``finished``,
            ``pruned``, ``failed``).
        settings: :func:`search_settings` (search settings, steps, prune step, the verifier's description).
        cost: ``nfe``, ``nfe_single`` (one plain generation), ``verifier_calls``, ``vae_decodes`` and
            ``seconds`` (``denoise``, ``decode``, ``verify``, ``total``).
    """

    frames: np.ndarray
    chosen: int
    candidates: list[dict[str, Any]]
    settings: dict[str, Any]
    cost: dict[str, Any]

    @property
    def score(self) -> float:
        """The chosen video's verifier score."""
        return self.candidates[self.chosen]["final"]["score"]

    def to_json(self) -> dict[str, Any]:
        """Everything but the frames, JSON-serialisable."""
        c = self.candidates[self.chosen]
        return {"settings": self.settings, "chosen": self.chosen, "chosen_seed": c["seed"],
                "chosen_renoise_seed": c["renoise_seed"], "score": self.score,
                "candidates": self.candidates, "cost": self.cost}  # fmt: skip


def search_settings(config: SearchConfig, verifier: Verifier, num_inference_steps: int) -> dict[str, Any]:
    """The settings that decide a search's outcome, as recorded in ``SearchResult.settings``.

    Returns:
        ``mode``, ``n``, (beam: ``keep``, ``branch``, ``prune_at``, ``prune_step``),
        ``num_inference_steps`` and the verifier's :meth:`Verifier.describe` (spec, view size,
        points source, models).
    """
    settings = {**asdict(config), "num_inference_steps": int(num_inference_steps), **verifier.describe()}
    if config.mode == "beam":
        settings["prune_step"] = prune_step(num_inference_steps, config.prune_at)
    else:
        for key in ("keep", "branch", "prune_at"):
            settings.pop(key)
    return settings


def branch_seed(seed: int, step: int, branch: int) -> int:
    """Seed of the fresh noise of branch ``branch`` (>= 1) of the trajectory with initial-noise seed ``seed`` at ``step``."""
    return int(np.random.SeedSequence([int(seed), int(step), int(branch)]).generate_state(1)[0])


class _Timer:
    """Wall time per phase, and the verifier's call counter at the start of the search."""

    def __init__(self, verifier: Verifier):
        self.seconds = {"denoise": 0.0, "decode": 0.0, "verify": 0.0}
        self.start = time.perf_counter()
        self.calls0 = verifier.calls

    def add(self, key: str, t0: float) -> None:
        self.seconds[key] += time.perf_counter() - t0


def _verify(verifier: Verifier, videos: list[np.ndarray], timer: _Timer) -> list[VerifierResult]:
    t0 = time.perf_counter()
    out = verifier.score_batch(videos)
    timer.add("verify", t0)
    return out


def _ranked(results: dict[int, VerifierResult]) -> list[int]:
    """Ids with a score, best (lowest) first; ties by id."""
    return sorted((i for i, r in results.items() if r.score is not None), key=lambda i: (results[i].score, i))


def _new_candidate(cid: int, seed: int, parent: int | None = None, renoise_seed: int | None = None) -> dict[str, Any]:
    return {"id": cid, "seed": seed, "parent": parent, "renoise_seed": renoise_seed,
            "early": None, "final": None, "status": "pruned"}  # fmt: skip


def _finish(denoiser: PartialDenoiser, verifier: Verifier, config: SearchConfig, candidates: list[dict],
            runs: list[tuple[int, int, int, ResumeState | None]], timer: _Timer, progress: bool) -> SearchResult:
    """Finish ``runs`` = ``(candidate id, seed, start step, state)``, verify, pick the best."""
    videos = []
    for cid, seed, start, state in tqdm(runs, desc="finishing candidates", disable=not progress, leave=False):
        t0 = time.perf_counter()
        final = denoiser.run(seed, start, None, state)
        timer.add("denoise", t0)
        t0 = time.perf_counter()
        videos.append(denoiser.decode(final.latents))
        timer.add("decode", t0)
    results = dict(zip([r[0] for r in runs], _verify(verifier, videos, timer)))
    for cid, res in results.items():
        candidates[cid]["final"] = res.to_json()
        candidates[cid]["status"] = "finished" if res.score is not None else "failed"
    ranked = _ranked(results)
    if not ranked:
        raise SearchError("the verifier failed on every finished candidate: "
                          + "; ".join(f"#{i}: {r.error}" for i, r in results.items()))
    best = ranked[0]
    candidates[best]["status"] = "chosen"
    frames = videos[[r[0] for r in runs].index(best)]
    total = denoiser.num_inference_steps
    settings = search_settings(config, verifier, total)
    cost = {"nfe": denoiser.nfe, "nfe_single": total, "verifier_calls": verifier.calls - timer.calls0,
            "vae_decodes": denoiser.vae_decodes,
            "seconds": {**{k: round(v, 4) for k, v in timer.seconds.items()},
                        "total": round(time.perf_counter() - timer.start, 4)}}  # fmt: skip
    return SearchResult(frames, best, candidates, settings, cost)


def best_of_n(denoiser: PartialDenoiser, verifier: Verifier, seed: int, n: int, progress: bool = True) -> SearchResult:
    """Generate seeds ``seed .. seed + n - 1`` in full, verify all, keep the lowest score.

    Args:
        denoiser: a :class:`PartialDenoiser` for the request (prompt, image, size, steps, CFG).
        verifier: the :class:`Verifier`; its ``calls`` counter keeps running.
        seed, n: first seed and number of candidates.
    Returns:
        :class:`SearchResult`.
    Raises:
        SearchError: the verifier failed on every candidate.
    """
    return _search(denoiser, verifier, SearchConfig("best_of", n), seed, progress)


def beam_search(denoiser: PartialDenoiser, verifier: Verifier, seed: int, n: int, keep: int, branch: int = 1,
                prune_at: float = 0.3, progress: bool = True) -> SearchResult:
    """Pruned beam search, see the module docstring. Arguments as :class:`SearchConfig`.

    Raises:
        SearchError: the verifier failed on every early prediction or every finished video.
        ValueError: bad settings.
    """
    return _search(denoiser, verifier, SearchConfig("beam", n, keep, branch, prune_at), seed, progress)


def _search(denoiser: PartialDenoiser, verifier: Verifier, config: SearchConfig, seed: int, progress: bool) -> SearchResult:
    timer = _Timer(verifier)
    seeds = [int(seed) + i for i in range(config.n)]
    candidates = [_new_candidate(i, s) for i, s in enumerate(seeds)]
    if config.mode == "best_of":
        return _finish(denoiser, verifier, config, candidates, [(i, s, 0, None) for i, s in enumerate(seeds)],
                       timer, progress)
    k = prune_step(denoiser.num_inference_steps, config.prune_at)
    states, early_videos = [], []
    for s in tqdm(seeds, desc=f"denoising to step {k}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        states.append(denoiser.run(s, 0, k))
        timer.add("denoise", t0)
        t0 = time.perf_counter()
        early_videos.append(denoiser.decode(states[-1].x0))
        timer.add("decode", t0)
    early = dict(enumerate(_verify(verifier, early_videos, timer)))
    for i, res in early.items():
        candidates[i]["early"] = res.to_json()
        if res.score is None:
            candidates[i]["status"] = "failed"
    survivors = _ranked(early)[: config.keep]
    if not survivors:
        raise SearchError("the verifier failed on every early prediction: "
                          + "; ".join(f"#{i}: {r.error}" for i, r in early.items()))
    runs: list[tuple[int, int, int, ResumeState | None]] = []
    for i in survivors:
        runs.append((i, seeds[i], k, states[i]))
        for j in range(1, config.branch):
            rs = branch_seed(seeds[i], k, j)
            cid = len(candidates)
            candidates.append(_new_candidate(cid, seeds[i], parent=i, renoise_seed=rs))
            runs.append((cid, seeds[i], k, denoiser.renoise(states[i], rs)))
    return _finish(denoiser, verifier, config, candidates, runs, timer, progress)


def search_video(pipe, verifier: Verifier, config: SearchConfig, *, prompt: str, seed: int, num_frames: int,
                 height: int, width: int, num_inference_steps: int = 50, guidance_scale: float = 6.0,
                 image=None, negative_prompt: str | None = None, progress: bool = True) -> SearchResult:
    """Run ``config``'s search for one request; arguments as ``generate.pipeline.generate_video``.

    Returns:
        :class:`SearchResult` (``frames``: the chosen uint8 ``[num_frames, height, width, 3]`` video).
    Raises:
        SearchError: no candidate could be verified.
    """
    denoiser = PartialDenoiser(pipe, prompt, image=image, num_frames=num_frames, height=height, width=width,
                               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                               negative_prompt=negative_prompt)  # fmt: skip
    return _search(denoiser, verifier, config, seed, progress)
