"""Set a tiny ``AutoencoderKLCogVideoX`` to an exact linear autoencoder, so that it round-trips.

The tiny VAE of ``utils/tiny_models.py`` has random weights: its encoder is no inverse of its decoder
(the brightness of ``decode(encode(video))`` does not follow the video's) and its posterior std
exceeds the spread of its posterior mean. Tests of single parts do not care; a loop that generates
videos ``D(z)``, encodes them for Diffusion-DPO (``E(video)``) and generates again does: it needs
``D(E(D(z))) = D(z)``, as a trained VAE gives on its own videos. ``benchmarks/closed_loop.py`` builds
its tiny model with this VAE (``build_tiny_cogvideox(..., round_trip_vae=True)``); the default tiny
models do not change.

The weights are set, not trained (no CPU minutes, bit-identical for a seed), in the unmodified
diffusers architecture:

* decoder: ``D(z) = Q . upsample(z)`` -- nearest upsampling of each latent cell to its pixels
  (8 x 8 pixels; temporally frame 0 <- latent frame 0 and 4 frames per later latent frame, the
  VAE's own causal layout), then a 3 x C matrix ``Q`` (seeded Gaussian, std ``Q_STD``) maps the
  latent channels to RGB in [-1, 1]. The decoder's main path is zeroed; the last ``SpatialNorm3D``'s
  ``conv_b`` (a 1x1x1 conv of the latents it upsamples) carries the signal;
* encoder: the mean of each latent cell's pixels (causal conv_in as a centre tap, the
  downsamplers' stride-2 convs as 2 x 2 means, their temporal average pooling as is), then
  ``P = pinv(Q)`` (C x 3). Residual branches are zeroed (identity / 1x1 shortcut). The encoder's
  final GroupNorm would remove each sample's mean, i.e. the brightness: every RGB channel sits in
  its own group as a pair (s, -s) next to constant pairs (K, -K), so the group mean is exactly 0
  and the variance is dominated by ``K`` (relative error ``2 mean(s^2) / ((g - 2) K^2)`` < 1e-4);
* the SiLU activations before both ``conv_out`` layers act on ``x + SILU_OFFSET`` (where
  ``SiLU(x) = x`` to 1e-7) and the offset is removed again by the conv bias;
* posterior log-variance ``POSTERIOR_LOGVAR`` everywhere (std ~5e-5 latent units; random VAE: ~1).

So ``E(D(z))`` is the orthogonal projection of ``z`` onto the 3-dimensional row space of ``Q``
(one latent direction per cell decodes to nothing, as latents a VAE ignores) and
``D(E(D(z))) = D(z)`` up to clamping to [-1, 1] and 8-bit / video-codec rounding. The video's mean
brightness is a linear function of the latents' mean. Videos look like 8 x 8 colour mosaics.
"""

from __future__ import annotations

import torch

Q_STD = 0.15             # RGB per latent unit: generated latents / scaling factor have std ~1.3
CONST_K = 100.0          # constant channels that pin the encoder's last GroupNorm
SILU_OFFSET = 20.0       # SiLU(x + 20) = x + 20 to 1e-7 for |x| < 2
POSTERIOR_LOGVAR = -20.0


def _centre_tap(conv: torch.nn.Module, matrix: torch.Tensor, bias: torch.Tensor) -> None:
    """Set a causal 3-D conv to ``out = matrix @ in + bias`` per position (current frame, centre pixel)."""
    w = conv.weight
    w.zero_()
    w[:, :, w.shape[2] - 1, w.shape[3] // 2, w.shape[4] // 2] = matrix  # causal: last temporal tap
    conv.bias.copy_(bias)


def _layouts(first: int, last: int, groups: int) -> tuple[list, list]:
    """Channel layouts (source, sign) of the encoder: source 0..2 = R, G, B, 3 = constant ``K``.

    ``first`` channels (compact): the three signal pairs, then constant pairs. ``last`` channels
    (the final GroupNorm's): group ``j < 3`` = (signal j pair, constant pairs), other groups constant.
    """
    g = last // groups
    if first < 8 or first % 2 or last % groups or groups < 3 or g < 4 or g % 2:
        raise ValueError(f"linear tiny VAE needs >= 8 even first channels and >= 3 groups of an even "
                         f"size >= 4 (got {first}, {last} channels in {groups} groups)")
    compact = [(s, sign) for s in range(3) for sign in (1, -1)]
    compact += [(3, sign) for _ in range((first - 6) // 2) for sign in (1, -1)]
    grouped = []
    for j in range(groups):
        grouped += [(j if j < 3 else 3, 1), (j if j < 3 else 3, -1)]
        grouped += [(3, sign) for _ in range((g - 2) // 2) for sign in (1, -1)]
    return compact, grouped


def _shortcut_matrix(src: list, dst: list) -> torch.Tensor:
    """``[len(dst), len(src)]`` map of one layout onto another (each channel from a + channel)."""
    m = torch.zeros(len(dst), len(src))
    for o, (source, sign) in enumerate(dst):
        m[o, src.index((source, 1))] = sign
    return m


@torch.no_grad()
def make_linear_autoencoder_(vae, seed: int) -> torch.Tensor:
    """Overwrite every weight of ``vae`` (an ``AutoencoderKLCogVideoX``, 3 RGB channels) in place.

    Returns ``Q`` ``[3, latent_channels]`` float32 (decoder: RGB = Q @ z in unscaled latent units).
    Raises ``ValueError`` for a channel layout the construction cannot pin (see :func:`_layouts`).
    """
    cfg = vae.config
    c_lat, groups = cfg.latent_channels, cfg.norm_num_groups
    first, last = cfg.block_out_channels[0], cfg.block_out_channels[-1]
    compact, grouped = _layouts(first, last, groups)
    q = torch.randn(3, c_lat, generator=torch.Generator().manual_seed(seed)) * Q_STD
    p = torch.linalg.pinv(q)  # [C, 3]
    for param in vae.parameters():
        param.zero_()

    # encoder: RGB -> compact layout -> cell means -> grouped layout -> GroupNorm -> P
    enc = vae.encoder
    m_in = torch.zeros(first, 3)
    for o, (source, sign) in enumerate(compact):
        if source < 3:
            m_in[o, source] = sign
    b_in = torch.tensor([sign * CONST_K if source == 3 else 0.0 for source, sign in compact])
    _centre_tap(enc.conv_in.conv, m_in, b_in)
    layout = compact
    for block in list(enc.down_blocks) + [enc.mid_block]:
        for resnet in block.resnets:  # conv2 stays zero: the residual branch adds nothing
            new = grouped if resnet.out_channels == last else layout
            if resnet.in_channels != resnet.out_channels:
                resnet.conv_shortcut.weight[:, :, 0, 0, 0] = _shortcut_matrix(layout, new)
            elif new is not layout:
                raise ValueError("linear tiny VAE: the last width must be reached through a shortcut")
            layout = new
        for down in getattr(block, "downsamplers", None) or []:
            for ch in range(down.conv.out_channels):
                down.conv.weight[ch, ch, :2, :2] = 0.25  # right/bottom zero padding meets 0-weights
    if layout is not grouped:
        raise ValueError("linear tiny VAE: encoder does not end at its last width")
    g = last // groups
    norm = enc.norm_out
    for ch, (source, sign) in enumerate(grouped):
        if source < 3 and sign == 1:
            norm.weight[ch] = CONST_K * ((g - 2) / g) ** 0.5
            norm.bias[ch] = SILU_OFFSET
    m_out = torch.zeros(2 * c_lat, last)
    for ch, (source, sign) in enumerate(grouped):
        if source < 3 and sign == 1:
            m_out[:c_lat, ch] = p[:, source]
    b_out = torch.cat([-SILU_OFFSET * p.sum(dim=1), torch.full((c_lat,), POSTERIOR_LOGVAR)])
    _centre_tap(enc.conv_out.conv, m_out, b_out)

    # decoder: main path zero; last SpatialNorm3D: conv_b(upsampled z) = Q z + offset; conv_out removes it
    dec = vae.decoder
    width = dec.norm_out.conv_b.conv.out_channels
    m_b = torch.zeros(width, c_lat)
    m_b[:3] = q
    b_b = torch.zeros(width)
    b_b[:3] = SILU_OFFSET
    dec.norm_out.conv_b.conv.weight[:, :, 0, 0, 0] = m_b
    dec.norm_out.conv_b.conv.bias.copy_(b_b)
    m_rgb = torch.zeros(3, width)
    m_rgb[:, :3] = torch.eye(3)
    _centre_tap(dec.conv_out.conv, m_rgb, torch.full((3,), -SILU_OFFSET))
    return q
