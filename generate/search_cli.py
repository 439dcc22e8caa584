"""Command-line side of inference-time search for ``generate/t2v_inference.py`` and ``i2v_inference.py``.

Flags (group "inference-time search"; defaults in ``SEARCH_DEFAULTS``, overridable by the same
upper-case constants at the top of an inference script, e.g. ``BEST_OF = 4``; a misspelled one exits 2):

    --best_of N           N initial noises (seeds SEED .. SEED + N - 1); 1 = plain generation
    --search beam         pruned beam search instead of best-of-N (--keep, --branch, --prune_at)
    --verifier SPEC       "consistency" (VGGT), "epipolar", "frame_diff", or a weighted sum "consistency=1,epipolar=0.5"
    --verifier_points_source point_head|depth   the consistency verifier's point cloud (point_head: released reward)
    --verifier_frames/--verifier_size, --verifier_vggt_model, --verifier_geometry_model, --verifier_no_lpips,
    --verifier_lpips_*_weights

Outputs per prompt: ``<name>_seed<SEED>_<tag>.mp4`` (the chosen video; ``tag`` = ``best<N>_<metrics>``
or ``beam<N>_keep<K>_branch<B>_at<k>_<metrics>``, e.g. ``best4_consistency``, so runs with other
verifiers do not overwrite each other) and beside it ``<same stem>.search.json`` with the run's
generation settings, the search and verifier settings, every candidate's seed, early/final
verifier score, components and errors, the choice and the cost (NFE, verifier calls, VAE decodes,
seconds per phase). See ``generate/search.py``. With ``--skip_existing`` a prompt is skipped when
its ``.search.json`` has no error, its chosen video decodes, and its generation, search and
verifier settings equal this run's (``generate/outputs.py:stale_reason``).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generate.pipeline import GenerationConfigError, save_video, select_device
from generate.partial_denoise import SearchError, prune_step
from generate.search import SEARCH_MODES, SearchConfig, search_settings, search_video
from generate.verifiers import (
    DEFAULT_VERIFIER,
    VERIFIER_IMAGE_SIZE,
    VERIFIER_NUM_FRAMES,
    VERIFIER_POINTS_SOURCE,
    Verifier,
    VerifierSettings,
    available_metrics,
)
from utils.io_utils import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["SEARCH_DEFAULTS", "Searcher", "add_search_arguments", "searcher_from_args", "output_tag"]

SEARCH_DEFAULTS: dict[str, Any] = {
    "best_of": 1,
    "search": "best_of",
    "keep": 1,
    "branch": 1,
    "prune_at": 0.3,
    "verifier": DEFAULT_VERIFIER,
    "verifier_frames": VERIFIER_NUM_FRAMES,
    "verifier_size": VERIFIER_IMAGE_SIZE,
    "verifier_vggt_model": None,
    "verifier_points_source": VERIFIER_POINTS_SOURCE,
    "verifier_geometry_model": None,
    "verifier_da3_model": None,
    "verifier_no_lpips": False,
    "verifier_lpips_vgg_weights": None,
    "verifier_lpips_lin_weights": None,
}


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the search flags, defaults ``SEARCH_DEFAULTS``, to an inference parser (a script's constants
    then override them through ``utils.config_cli.apply_constants``)."""
    d = SEARCH_DEFAULTS
    g = parser.add_argument_group("inference-time search (N x the compute for a more 3-D consistent video)")
    g.add_argument("--best_of", type=int, default=d["best_of"],
                   help="N initial noises, seeds SEED..SEED+N-1; keep the video the verifier scores lowest")
    g.add_argument("--search", choices=SEARCH_MODES, default=d["search"],
                   help="best_of: finish all N; beam: verify the x0 prediction at --prune_at, finish the --keep best")
    g.add_argument("--keep", type=int, default=d["keep"], help="beam: candidates kept at the pruning step")
    g.add_argument("--branch", type=int, default=d["branch"],
                   help="beam: videos finished per survivor (b > 1: b - 1 re-noised branches)")
    g.add_argument("--prune_at", type=float, default=d["prune_at"], help="beam: fraction of the steps before pruning")
    g.add_argument("--verifier", default=d["verifier"],
                   help=f"metric or weighted sum 'a=1,b=0.5' (lower = better); registered: {', '.join(available_metrics())}")
    g.add_argument("--verifier_frames", type=int, default=d["verifier_frames"], help="frames the verifier samples")
    g.add_argument("--verifier_size", type=int, default=d["verifier_size"],
                   help="square side (px) the verifier's frames are resized to (multiple of 14 for VGGT)")
    g.add_argument("--verifier_vggt_model", default=d["verifier_vggt_model"],
                   help="VGGT hub id / folder / weights file (default: the scorer's VGGT_MODEL)")
    g.add_argument("--verifier_points_source", choices=("point_head", "depth"), default=d["verifier_points_source"],
                   help="consistency verifier's point cloud: point_head = the released reward (VGGT point map + "
                   "camera head); depth = depth head + cameras, covered pixels only (needed for a random tiny VGGT, "
                   "whose point head covers ~0.1%% of the pixels)")
    g.add_argument("--verifier_geometry_model", default=d["verifier_geometry_model"],
                   help="the scorer's --geometry_model for the consistency verifier: vggt (default) or da3")
    g.add_argument("--verifier_da3_model", default=d["verifier_da3_model"],
                   help="DA3 hub id / folder / weights file (default: the scorer's DA3_MODEL)")
    g.add_argument("--verifier_no_lpips", action="store_true", default=d["verifier_no_lpips"],
                   help="consistency = MSE only (no LPIPS weights needed)")
    g.add_argument("--verifier_lpips_vgg_weights", default=d["verifier_lpips_vgg_weights"], help="see the scorer")
    g.add_argument("--verifier_lpips_lin_weights", default=d["verifier_lpips_lin_weights"], help="see the scorer")


def output_tag(config: SearchConfig, num_inference_steps: int, verifier: Verifier) -> str:
    """File-name tag of a search: ``best4_consistency`` or ``beam8_keep2_branch2_at15_consistency-epipolar0.5``.

    The verifier part lists the metrics of its spec, each with its weight unless 1. Other verifier
    settings (view size, points source, models) are checked through the ``.search.json``.
    """
    metrics = "-".join(name if w == 1 else f"{name}{w:g}" for name, w in verifier.weights.items())
    if config.mode == "best_of":
        return f"best{config.n}_{metrics}"
    k = prune_step(num_inference_steps, config.prune_at)
    return f"beam{config.n}_keep{config.keep}_branch{config.branch}_at{k}_{metrics}"


@dataclass
class Searcher:
    """A search configuration with its loaded verifier, used for every prompt of a run."""

    config: SearchConfig
    verifier: Verifier

    def targets(self, out_dir: Path, name: str, seed: int, generation: dict[str, Any],
                num_inference_steps: int) -> tuple[Path, Path, dict[str, Any]]:
        """(chosen video, its ``.search.json``, the record entries an existing result must match).

        ``generation``: ``generate.outputs.generation_record`` of the request.
        """
        stem = f"{name}_seed{seed}_{output_tag(self.config, num_inference_steps, self.verifier)}"
        video = Path(out_dir) / f"{stem}.mp4"
        expected = {"video": video.name, "generation": generation,
                    "settings": search_settings(self.config, self.verifier, num_inference_steps)}
        return video, Path(out_dir) / f"{stem}.search.json", expected

    def generate_and_save(self, pipe, *, prompt: str, image, video_path: Path, expected: dict[str, Any], seed: int,
                          fps: float, **request) -> bool:
        """Search one prompt, write the chosen video and its ``.search.json``; False when it failed.

        ``video_path``, ``expected``: from :meth:`targets`. ``request``: ``num_frames``, ``height``,
        ``width``, ``num_inference_steps``, ``guidance_scale``.
        """
        json_path = video_path.with_name(video_path.stem + ".search.json")
        info: dict[str, Any] = {"prompt": prompt, "seed": seed, **expected}
        json_path.unlink(missing_ok=True)  # a stale record must not vouch for the new video
        try:
            result = search_video(pipe, self.verifier, self.config, prompt=prompt, image=image, seed=seed, **request)
        except SearchError as e:
            logger.error("search failed for %r: %s", video_path.stem, e)
            atomic_write_json(json_path, {**info, "video": None, "error": str(e)})
            return False
        save_video(result.frames, video_path, fps=fps)
        atomic_write_json(json_path, {**info, **result.to_json()})
        c = result.cost
        print(f"wrote {video_path} (chosen seed {result.to_json()['chosen_seed']}, score {result.score:.4g}; "
              f"NFE {c['nfe']} = {c['nfe'] / c['nfe_single']:.2f} x one video, {c['verifier_calls']} verifier calls)")
        return True


def searcher_from_args(args: argparse.Namespace) -> Searcher | None:
    """The run's :class:`Searcher`, or None for plain generation (``--best_of 1`` without ``--search beam``).

    The verifier's models are loaded on the generation device (``--gpu_id``, see ``select_device``).

    Raises:
        GenerationConfigError: bad search settings, or a verifier that cannot be built (exit code 2).
    """
    if args.best_of <= 1 and args.search == "best_of":
        if args.best_of < 1:
            raise GenerationConfigError(f"--best_of must be >= 1, got {args.best_of}")
        return None
    try:
        config = SearchConfig(args.search, args.best_of, args.keep, args.branch, args.prune_at)
        if config.mode == "beam":
            prune_step(args.num_inference_steps, config.prune_at)
    except ValueError as e:
        raise GenerationConfigError(f"search settings: {e}") from e
    settings = VerifierSettings(
        device=str(select_device(args.gpu_id)), num_frames=args.verifier_frames, image_size=args.verifier_size,
        vggt_model=args.verifier_vggt_model, lpips=not args.verifier_no_lpips,
        points_source=args.verifier_points_source, geometry_model=args.verifier_geometry_model,
        da3_model=args.verifier_da3_model,
        lpips_vgg_weights=args.verifier_lpips_vgg_weights, lpips_lin_weights=args.verifier_lpips_lin_weights,
    )  # fmt: skip
    return Searcher(config, Verifier(args.verifier, settings))
