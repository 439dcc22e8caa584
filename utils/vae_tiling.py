"""When diffusers' tiled CogVideoX VAE is safe to use, decided in one place.

Tiling (``vae.enable_tiling()``) bounds the VAE's memory at 480x720 and above; slicing
(``enable_slicing``) encodes/decodes one video of a batch at a time. Both are used by generation
(``generate/pipeline.py``) and by latent encoding (``train_dpo/encode_cogvideox.py``) through
:func:`enable_vae_memory_savers`, and encoding goes through :func:`encode_latent_dist`.

Contract: tiled encoding/decoding returns exactly the untiled size, or tiling is not used.
diffusers' ``AutoencoderKLCogVideoX`` steps over latent tiles by ``int(tile_latent * (1 - overlap))``
and crops decoded tiles to ``tile_sample - int(tile_sample * overlap)`` pixels (encode: the
converse). When the stride times the spatial scale equals the crop, in both directions, every
size that is a multiple of the scale comes back exact (the real VAE: tiles of 240 x 360 px,
strides 200 / 288 px = 25 / 36 latents x 8). Very small VAEs (the tiny test models,
``utils/tiny_models.py``) break that equality: tiled decode returns frames of a wrong size and
tiled encode a latent of a wrong size (64 x 96 px -> 9 x 12 latents instead of 8 x 12), so tiling is
left off for them, and a VAE whose tiling was switched on anyway encodes untiled.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

__all__ = ["vae_tiling_is_exact", "enable_vae_memory_savers", "encode_latent_dist"]

_warned_inexact = False


def vae_tiling_is_exact(vae) -> bool:
    """True when diffusers' tiled encode and decode of ``vae`` return the untiled sizes.

    Args:
        vae: ``AutoencoderKLCogVideoX`` (reads ``tile_sample_min_*``, ``tile_latent_min_*``,
            ``tile_overlap_factor_*`` and ``config.block_out_channels``). Objects without tiling
            attributes count as exact (nothing to check).
    """
    try:
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        checks = []
        for dim in ("height", "width"):
            ts = getattr(vae, f"tile_sample_min_{dim}")
            tl = getattr(vae, f"tile_latent_min_{dim}")
            ov = getattr(vae, f"tile_overlap_factor_{dim}")
            checks.append(int(tl * (1 - ov)) * scale == ts - int(ts * ov))  # decode
            checks.append(int(ts * (1 - ov)) == (tl - int(tl * ov)) * scale)  # encode
        return all(checks)
    except (AttributeError, TypeError):
        return True


def enable_vae_memory_savers(vae, slicing: bool = True, tiling: bool = True) -> bool:
    """Switch on VAE slicing and, when :func:`vae_tiling_is_exact`, tiling.

    Returns:
        Whether tiling is on.
    """
    if slicing:
        vae.enable_slicing()
    if tiling and vae_tiling_is_exact(vae):
        vae.enable_tiling()
        return True
    if tiling:
        logger.debug("VAE tiling left off: tile geometry of this (small) VAE is not exact")
    return False


def encode_latent_dist(vae, x: torch.Tensor):
    """``vae.encode(x).latent_dist``, encoded untiled when tiling is on but not exact for ``vae``.

    Args:
        vae: ``AutoencoderKLCogVideoX``.
        x: ``[B, 3, T, H, W]`` in [-1, 1], the VAE's device and dtype.
    Returns:
        diffusers ``DiagonalGaussianDistribution`` of ``[B, C, (T - 1) // 4 + 1, H / 8, W / 8]``.
    """
    global _warned_inexact
    if not getattr(vae, "use_tiling", False) or vae_tiling_is_exact(vae):
        return vae.encode(x).latent_dist
    if not _warned_inexact:
        logger.warning("tiled VAE encoding is not size-exact for this VAE; encoding untiled")
        _warned_inexact = True
    vae.use_tiling = False
    try:
        return vae.encode(x).latent_dist
    finally:
        vae.use_tiling = True
