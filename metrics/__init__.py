"""Image/video metrics of the VideoGPA geometry-consistency scorer.

* :func:`mse`, :func:`mse_per_image` -- masked MSE on [0, 1] images ``[N, C, H, W]``.
* :class:`LPIPS`, :func:`load_lpips` -- LPIPS v0.1 (VGG16) in plain torch, [0, 1] inputs.
* :func:`consistency_score` (mse + lpips), :func:`motion_norm` / :func:`motion_norm_released`
  (camera motion), :func:`coverage`.
"""

from .consistency import (
    camera_centers,
    consistency_score,
    coverage,
    motion_norm,
    motion_norm_released,
    relative_rotation_angles,
)
from .lpips import (
    ENV_LIN_WEIGHTS,
    ENV_VGG_WEIGHTS,
    LPIPS,
    LPIPS_VGG_LIN_URL,
    VGG16_URL,
    LPIPSWeightsError,
    build_random_lpips_weights,
    load_lpips,
    load_state_dict_file,
)
from .mse import mse, mse_per_image

__all__ = [
    "mse",
    "mse_per_image",
    "LPIPS",
    "LPIPSWeightsError",
    "load_lpips",
    "load_state_dict_file",
    "build_random_lpips_weights",
    "VGG16_URL",
    "LPIPS_VGG_LIN_URL",
    "ENV_VGG_WEIGHTS",
    "ENV_LIN_WEIGHTS",
    "consistency_score",
    "motion_norm",
    "motion_norm_released",
    "camera_centers",
    "relative_rotation_angles",
    "coverage",
]
