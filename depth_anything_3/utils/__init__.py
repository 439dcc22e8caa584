"""DA3 camera utilities."""

from .cameras import invert_rigid, normalize_extrinsics, pose_encoding_to_c2w_intrinsics

__all__ = ["invert_rigid", "normalize_extrinsics", "pose_encoding_to_c2w_intrinsics"]
