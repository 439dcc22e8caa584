"""VGGT network: aggregator backbone and the full model."""

from .aggregator import Aggregator
from .vggt import VGGT

__all__ = ["Aggregator", "VGGT"]
