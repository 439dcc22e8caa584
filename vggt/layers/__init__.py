"""Transformer building blocks shared by the VGGT aggregator, encoder and camera head."""

from .attention import Attention
from .block import Block
from .dinov2 import DinoV2Encoder
from .layer_scale import LayerScale
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .rope import RotaryPositionEmbedding2D, patch_positions

__all__ = ["Attention", "Block", "DinoV2Encoder", "LayerScale", "Mlp", "PatchEmbed",
           "RotaryPositionEmbedding2D", "patch_positions"]
