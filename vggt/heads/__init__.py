"""VGGT prediction heads: iterative camera head and DPT dense heads (depth, world points)."""

from .camera_head import CameraHead
from .dpt_head import DPTHead
from .head_act import activate_head, activate_pose, inverse_log_transform

__all__ = ["CameraHead", "DPTHead", "activate_head", "activate_pose", "inverse_log_transform"]
