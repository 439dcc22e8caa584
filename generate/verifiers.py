"""Verifiers for inference-time search: a video (frames) -> one score, lower is better.

A *metric* is a callable ``frames -> float`` on uint8 RGB frames ``[F, H, W, 3]`` (0..255) that
returns a finite number, lower = better (more 3-D consistent), and raises on failure. Metrics are
registered by name with a *factory* that builds the callable once (loading models) from
:class:`VerifierSettings`::

    register_metric("frame_diff", fn=frame_diff)                 # a plain function frames -> float
    register_metric("consistency", factory=make_consistency)     # settings -> metric (loads a model)

A :class:`Verifier` combines registered metrics into a weighted sum (``"consistency"`` or
``"consistency=1,epipolar=0.5"``, see :func:`parse_verifier_spec`). Before the metrics see a
video it is reduced like the geometry scorer's input (``utils.video_utils``): ``num_frames``
frames spread uniformly over the video (first and last included), centre-cropped square and
resized to ``image_size`` -- by default fewer frames and a smaller size than the scorer
(``train_dpo/video_scorer.py``: 10 frames at 518 px) so that verifying N candidates stays cheap.

Built-in metrics:

* ``consistency`` -- the VideoGPA reward: ``VideoProcessor.score_frames(...)["consistency_score"]``
  (``scoring/scorer.py``: geometry model -> fused point cloud -> reprojection into every
  frame -> MSE + LPIPS), built with the scorer's ``build_processor`` from the scorer's defaults and
  the verifier's explicit settings. ``points_source`` (:data:`VERIFIER_POINTS_SOURCE`) picks the
  point cloud: ``"point_head"`` (VGGT's point map reprojected with its camera head's cameras,
  holes counted black: the released reward; the default, for the real VGGT-1B) or ``"depth"``
  (depth head unprojected with the cameras, metrics on covered pixels). A random, untrained VGGT
  (``utils.tiny_models``) has a point head that puts points on ~0.1 % of the pixels, so with
  ``"point_head"`` its score is ~ ``mean(frame^2)`` (a black reprojection) and best-of-N would pick
  the darkest video; tests and the CPU benchmark use ``"depth"``.
* ``epipolar`` -- mean Sampson distance (px) of SIFT matches between consecutive frames under a
  RANSAC fundamental matrix (``metrics.epipolar.epipolar_error(frames).mean_sampson``); model-free,
  independent of the reward's geometry model. Fails (the candidate is marked) when every frame
  pair was skipped (too few matches, e.g. textureless or tiny frames).
* ``frame_diff`` -- mean absolute difference of consecutive sampled frames in [0, 1]. Cheap and
  model-free; it rewards static, flicker-free videos and is *not* a 3-D metric (tests, smoke runs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from generate.pipeline import GenerationConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "VERIFIER_NUM_FRAMES",
    "VERIFIER_IMAGE_SIZE",
    "VERIFIER_POINTS_SOURCE",
    "DEFAULT_VERIFIER",
    "MetricFn",
    "VerifierConfigError",
    "VerifierSettings",
    "VerifierResult",
    "Verifier",
    "register_metric",
    "available_metrics",
    "parse_verifier_spec",
    "prepare_frames",
    "frame_diff",
    "epipolar",
    "make_consistency",
]

# --- defaults (overridable per run: VerifierSettings, or --verifier_frames / --verifier_size) ---
VERIFIER_NUM_FRAMES = 8  # the scorer uses 10
VERIFIER_IMAGE_SIZE = 350  # square side in px, a multiple of VGGT's patch size 14 (the scorer uses 518)
# where the consistency verifier's point cloud comes from (see the module doc): "point_head" is the
# released reward and the right choice for the real VGGT-1B; a random tiny VGGT needs "depth"
VERIFIER_POINTS_SOURCE = "point_head"
DEFAULT_VERIFIER = "consistency"

MetricFn = Callable[[np.ndarray], float]


class VerifierConfigError(GenerationConfigError):
    """Bad verifier specification or a verifier that cannot be built (unknown metric, missing model)."""


@dataclass(frozen=True)
class VerifierSettings:
    """What metric factories may need.

    Attributes:
        device: torch device string for model-based metrics (``"cpu"``, ``"cuda:0"``).
        num_frames: frames sampled per video before scoring (uniform, first and last included).
        image_size: square side in px the sampled frames are centre-cropped/resized to.
        vggt_model: VGGT hub id / folder / weights file; None: the scorer's ``VGGT_MODEL``.
        vggt_config: VGGT config JSON for a single weights file.
        lpips: False scores MSE only (``consistency_score = mse``), like the scorer's ``--no_lpips``.
        lpips_vgg_weights, lpips_lin_weights: LPIPS weight files/URLs; None: the scorer's defaults.
        points_source: ``"point_head"`` (released reward) or ``"depth"``, the scorer's ``--points_source``.
        geometry_model: the scorer's ``--geometry_model`` (``"vggt"`` or ``"da3"``); None: the scorer's
            default (VGGT). Naming one is an error when the scorer has no such option.
        da3_model: DA3 hub id / folder / weights file (``geometry_model="da3"``); None: the scorer's
            ``DA3_MODEL``.
        extra: free-form options for metrics registered later (read them with ``.get``).
    """

    device: str = "cpu"
    num_frames: int = VERIFIER_NUM_FRAMES
    image_size: int = VERIFIER_IMAGE_SIZE
    vggt_model: str | None = None
    vggt_config: str | None = None
    lpips: bool = True
    lpips_vgg_weights: str | None = None
    lpips_lin_weights: str | None = None
    points_source: str = VERIFIER_POINTS_SOURCE
    geometry_model: str | None = None
    da3_model: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


_FACTORIES: dict[str, Callable[[VerifierSettings], MetricFn]] = {}


def register_metric(
    name: str,
    factory: Callable[[VerifierSettings], MetricFn] | None = None,
    *,
    fn: MetricFn | None = None,
    overwrite: bool = False,
) -> None:
    """Make a metric selectable by ``name`` in verifier specs (``--verifier name`` / ``name=w,...``).

    Args:
        name: lower-case identifier (letters, digits, ``_``).
        factory: ``settings -> metric`` (for metrics that load a model once).
        fn: a plain metric ``frames uint8 [F, H, W, 3] -> float`` (lower = better); give exactly one
            of ``factory`` / ``fn``.
        overwrite: replace an existing registration (otherwise a clash is an error).
    Raises:
        ValueError: bad name, both/neither of factory and fn, or a clash.
    """
    if not name or not name.replace("_", "").isalnum() or name.lower() != name:
        raise ValueError(f"metric name must be lower-case letters, digits and _, got {name!r}")
    if (factory is None) == (fn is None):
        raise ValueError("give exactly one of factory= or fn=")
    if name in _FACTORIES and not overwrite:
        raise ValueError(f"metric {name!r} is already registered")
    _FACTORIES[name] = factory if factory is not None else (lambda _settings, _fn=fn: _fn)


def available_metrics() -> list[str]:
    """Sorted names of the registered metrics."""
    return sorted(_FACTORIES)


def parse_verifier_spec(spec: str) -> dict[str, float]:
    """``"consistency"`` -> ``{"consistency": 1.0}``; ``"consistency=1,frame_diff=0.5"`` -> weights.

    Raises:
        VerifierConfigError: empty spec, unknown metric (the message lists the registered ones),
            a repeated name, or a weight that is not a finite number.
    """
    weights: dict[str, float] = {}
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise VerifierConfigError("empty verifier spec")
    for part in parts:
        name, sep, w = part.partition("=")
        name = name.strip()
        if name not in _FACTORIES:
            raise VerifierConfigError(f"unknown verifier metric {name!r}; registered: {', '.join(available_metrics())}")
        if name in weights:
            raise VerifierConfigError(f"verifier metric {name!r} given twice in {spec!r}")
        try:
            weight = float(w) if sep else 1.0
        except ValueError:
            raise VerifierConfigError(f"weight of {name!r} is not a number: {w!r}") from None
        if not np.isfinite(weight):
            raise VerifierConfigError(f"weight of {name!r} is not finite: {w!r}")
        weights[name] = weight
    return weights


def prepare_frames(frames: np.ndarray, num_frames: int, image_size: int) -> np.ndarray:
    """The verifier's view of a video: ``num_frames`` uniform frames, centre square, ``image_size`` px.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB.
        num_frames: frames to keep (all of them when the video has fewer).
        image_size: output side in px.
    Returns:
        uint8 ``[min(F, num_frames), image_size, image_size, 3]``.
    Raises:
        ValueError: not a non-empty uint8 ``[F, H, W, 3]`` array.
    """
    from utils.frames import center_crop_resize, sample_frame_indices

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    idx = sample_frame_indices(frames.shape[0], min(int(num_frames), frames.shape[0]))
    return np.stack([center_crop_resize(frames[i], int(image_size), int(image_size)) for i in idx])


def frame_diff(frames: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames, pixel values in [0, 1] (0 for one frame).

    Args:
        frames: uint8 ``[F, H, W, 3]``.
    Returns:
        ``mean |f[i+1] - f[i]| / 255`` over all pixels, channels and the ``F - 1`` pairs, in [0, 1].
    """
    f = np.asarray(frames, dtype=np.float32) / 255.0
    return float(np.abs(np.diff(f, axis=0)).mean()) if f.shape[0] > 1 else 0.0


def make_consistency(settings: VerifierSettings) -> MetricFn:
    """The scorer's consistency score as a metric, built with ``scoring.batch.build_processor``.

    Every scorer option starts at the scorer's own default (its parser, so options it gains later
    follow); the verifier's settings then set frames, size, points source, LPIPS, model paths and,
    when given, the geometry model -- explicitly, so an option the verifier names but the scorer
    lacks is an error instead of being dropped.

    Raises:
        VerifierConfigError: an option the scorer does not have.
        Exception: whatever loading VGGT / LPIPS raises (``Verifier`` reports it as a config error).
    """
    import argparse

    from scoring.batch import build_processor
    from train_dpo import video_scorer

    scorer_args = vars(video_scorer.build_argparser().parse_args([]))
    overrides: dict[str, Any] = {"num_frames": settings.num_frames, "image_size": settings.image_size,
                                 "points_source": settings.points_source, "no_lpips": not settings.lpips}
    for key in ("vggt_model", "vggt_config", "lpips_vgg_weights", "lpips_lin_weights", "geometry_model", "da3_model"):
        if getattr(settings, key) is not None:
            overrides[key] = getattr(settings, key)
    unknown = sorted(set(overrides) - set(scorer_args))
    if unknown:
        raise VerifierConfigError(f"the scorer (train_dpo/video_scorer.py) has no option {', '.join(unknown)}")
    processor = build_processor(argparse.Namespace(**{**scorer_args, **overrides}), settings.device)

    def consistency(frames: np.ndarray) -> float:
        return float(processor.score_frames(frames)["consistency_score"])

    return consistency


def epipolar(frames: np.ndarray) -> float:
    """Mean Sampson distance (px, >= 0): ``metrics.epipolar.epipolar_error(frames).mean_sampson``.

    Args:
        frames: uint8 ``[F, H, W, 3]`` RGB, ``F >= 2``.
    Returns:
        The mean over consecutive frame pairs of the pair's mean Sampson distance of its SIFT
        matches under a RANSAC fundamental matrix, in pixels of ``frames`` (lower = more consistent).
    Raises:
        ValueError: every consecutive pair was skipped (fewer than ``metrics.epipolar.MIN_MATCHES``
            SIFT matches or no fundamental matrix), so the video has no value.
    """
    from metrics.epipolar import MIN_MATCHES, epipolar_error

    res = epipolar_error(frames)
    if not np.isfinite(res.mean_sampson):
        raise ValueError(f"epipolar: all {res.pairs} consecutive frame pairs were skipped (fewer than "
                         f"{MIN_MATCHES} SIFT matches or no fundamental matrix); no score for this video")
    return float(res.mean_sampson)


register_metric("consistency", factory=make_consistency)
register_metric("epipolar", fn=epipolar)
register_metric("frame_diff", fn=frame_diff)


@dataclass
class VerifierResult:
    """One video's verification.

    Attributes:
        score: the weighted sum (lower = better), None when a metric failed.
        components: each metric's raw value (before weighting) that was computed.
        error: ``"<ExceptionType>: message"`` of the failing metric, None on success.
        seconds: wall time of this verification (frame preparation + metrics).
    """

    score: float | None
    components: dict[str, float]
    error: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "components": self.components, "error": self.error,
                "seconds": round(self.seconds, 4)}  # fmt: skip


class Verifier:
    """A weighted sum of registered metrics on the verifier's view of a video (lower = better).

    Args:
        spec: ``"consistency"`` or ``"name=w,name=w"`` (see :func:`parse_verifier_spec`), or a
            ``{name: weight}`` mapping.
        settings: :class:`VerifierSettings` (frames, size, device, model paths).
        metrics: ``{name: metric}`` to use instead of building registered ones (tests, callers
            holding loaded models); every name of ``spec`` must then be present.
    Attributes:
        calls: number of videos verified so far (successful or not) -- the verifier-call count of
            a search.
    Raises:
        VerifierConfigError: bad spec, or a metric factory failed (e.g. VGGT / LPIPS weights missing).
    """

    def __init__(
        self,
        spec: str | Mapping[str, float] = DEFAULT_VERIFIER,
        settings: VerifierSettings | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
    ):
        self.settings = settings or VerifierSettings()
        if isinstance(spec, str):
            self.weights = parse_verifier_spec(spec)
        else:
            self.weights = {str(k): float(v) for k, v in spec.items()}
        self.metrics: dict[str, MetricFn] = {}
        for name in self.weights:
            if metrics is not None:
                if name not in metrics:
                    raise VerifierConfigError(f"no metric given for {name!r}")
                self.metrics[name] = metrics[name]
                continue
            if name not in _FACTORIES:
                raise VerifierConfigError(f"unknown verifier metric {name!r}; registered: {', '.join(available_metrics())}")
            try:
                self.metrics[name] = _FACTORIES[name](self.settings)
            except Exception as e:  # model/weights loading: a configuration problem
                raise VerifierConfigError(f"cannot build verifier metric {name!r}: {type(e).__name__}: {e}") from e
        self.calls = 0

    @property
    def spec(self) -> str:
        """The canonical spec string, e.g. ``"consistency=1.0"``."""
        return ",".join(f"{k}={v:g}" for k, v in self.weights.items())

    def describe(self) -> dict[str, Any]:
        """What decides this verifier's scores, for result files (``.search.json``, benchmark meta).

        Returns:
            ``verifier`` (the spec), ``verifier_frames``, ``verifier_size``, and with ``consistency``
            in the spec also ``verifier_points_source``, ``verifier_geometry_model``,
            ``verifier_vggt_model`` / ``verifier_da3_model`` (None: the scorer's default) and
            ``verifier_lpips``.
        """
        st = self.settings
        out: dict[str, Any] = {"verifier": self.spec, "verifier_frames": st.num_frames, "verifier_size": st.image_size}
        if "consistency" in self.weights:
            out.update(verifier_points_source=st.points_source, verifier_geometry_model=st.geometry_model,
                       verifier_vggt_model=st.vggt_model, verifier_da3_model=st.da3_model,
                       verifier_lpips=st.lpips)
        return out

    def score(self, frames: np.ndarray) -> VerifierResult:
        """Verify one video; never raises for a bad video (the error is recorded).

        Args:
            frames: uint8 ``[F, H, W, 3]`` RGB, the whole generated video.
        Returns:
            :class:`VerifierResult`; ``score`` is None when preparation or a metric raised or
            returned a non-finite value.
        """
        self.calls += 1
        t0 = time.perf_counter()
        components: dict[str, float] = {}
        try:
            view = prepare_frames(frames, self.settings.num_frames, self.settings.image_size)
            total = 0.0
            for name, weight in self.weights.items():
                value = float(self.metrics[name](view))
                if not np.isfinite(value):
                    raise ValueError(f"{name} returned a non-finite value {value}")
                components[name] = value
                total += weight * value
        except Exception as e:  # a bad candidate must not stop the search
            logger.warning("verifier failed on a candidate: %s: %s", type(e).__name__, e)
            return VerifierResult(None, components, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
        return VerifierResult(total, components, None, time.perf_counter() - t0)

    def score_batch(self, videos: Sequence[np.ndarray]) -> list[VerifierResult]:
        """Verify several candidates with the metrics loaded once; one result per video, in order.

        Metrics score one video at a time (VGGT reconstructs each video's own scene); batching here
        means the models stay loaded and no generation runs in between.
        """
        return [self.score(v) for v in videos]
