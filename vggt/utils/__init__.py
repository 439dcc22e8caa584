"""Camera / geometry utilities and input preprocessing for VGGT."""

from .geometry import closed_form_inverse_se3, unproject_depth_map_to_point_map
from .load_fn import load_and_preprocess_images, preprocess_frames
from .pose_enc import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri
from .rotation import mat_to_quat, quat_to_mat

__all__ = ["closed_form_inverse_se3", "unproject_depth_map_to_point_map", "preprocess_frames",
           "load_and_preprocess_images", "extri_intri_to_pose_encoding",
           "pose_encoding_to_extri_intri", "mat_to_quat", "quat_to_mat"]
