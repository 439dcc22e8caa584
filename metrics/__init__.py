"""Image/video metrics of the VideoGPA geometry-consistency scorer.

* :func:`mse`, :func:`mse_per_image` -- masked MSE on [0, 1] images ``[N, C, H, W]``.
* :class:`LPIPS`, :func:`load_lpips` (:mod:`metrics.lpips_weights`) -- LPIPS v0.1 (VGG16) in plain torch, [0, 1] inputs.
* :func:`consistency_score` (mse + lpips), :func:`motion_norm` / :func:`motion_norm_released`
  (camera motion), :func:`coverage`.
* evaluation metrics: :func:`psnr`, :func:`ssim` (:mod:`metrics.psnr_ssim`), :func:`mvcs`
  (:mod:`metrics.mvcs`), :func:`epipolar_error` (:mod:`metrics.epipolar`), :func:`temporal_lpips`,
  :func:`flow_warp_error` (:mod:`metrics.temporal`).
"""

from types import ModuleType as _ModuleType

from .consistency import (
    camera_centers,
    consistency_score,
    coverage,
    motion_norm,
    motion_norm_released,
    relative_rotation_angles,
)
from .lpips import LPIPS, LPIPSWeightsError
from .lpips_weights import (
    ENV_LIN_WEIGHTS,
    ENV_VGG_WEIGHTS,
    LPIPS_VGG_LIN_URL,
    VGG16_URL,
    build_random_lpips_weights,
    load_lpips,
    load_state_dict_file,
)
from .epipolar import epipolar_error
from .mse import mse, mse_per_image
from .mvcs import mvcs
from .psnr_ssim import psnr, ssim
from .temporal import flow_warp_error, temporal_lpips

# the package's public names: exactly the names imported above (listed once, there)
__all__ = sorted(k for k, v in globals().items() if not k.startswith("_") and not isinstance(v, _ModuleType))
