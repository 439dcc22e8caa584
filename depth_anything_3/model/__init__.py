"""DA3 network modules (backbone, DualDPT head, camera encoder / decoder)."""

from .cam_dec import CameraDec
from .cam_enc import CameraEnc
from .da3 import DepthAnything3Net
from .dinov2 import DinoV2
from .dualdpt import DualDPT
from .vision_transformer import DinoVisionTransformer

__all__ = ["CameraDec", "CameraEnc", "DepthAnything3Net", "DinoV2", "DinoVisionTransformer", "DualDPT"]
