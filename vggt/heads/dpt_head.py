"""DPT dense-prediction head (Ranftl et al. 2021) as used for VGGT depth and point maps.

Four aggregator layers are LayerNorm'd, reshaped to patch grids, projected to
``out_channels[i]`` and resampled to strides 4, 8, 16, 32 (relative to the 14-px patch: x4, x2,
x1, x1/2), fused coarse-to-fine with RefineNet blocks, upsampled to the input resolution, and
mapped to ``output_dim`` channels: values (``output_dim - 1``) + a confidence channel.
A sinusoidal UV embedding (x0.1) is added after each projection and after the final upsampling.

Reference: facebookresearch/vggt ``vggt/heads/dpt_head.py`` (inspired by Depth-Anything-V2).
"""

from typing import Iterable, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .head_act import activate_head
from .utils import create_uv_grid, position_grid_to_embed


def interpolate(x: torch.Tensor, size, align_corners: bool = True) -> torch.Tensor:
    """Bilinear resize, split along the batch when the output would exceed 1.5 * 2^30 elements."""
    limit = 1610612736
    n = size[0] * size[1] * x.shape[0] * x.shape[1]
    if n > limit:
        chunks = torch.chunk(x, n // limit + 1, dim=0)
        return torch.cat([F.interpolate(c, size=size, mode="bilinear", align_corners=align_corners)
                          for c in chunks]).contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def build_feature_pyramid(head: nn.Module, dim_in: int, out_channels: Sequence[int], features: int) -> None:
    """Give ``head`` the DPT feature pyramid shared by VGGT's :class:`DPTHead` and DA3's ``DualDPT``.

    Sets ``head.norm`` (LayerNorm over ``dim_in``), ``head.projects`` (1x1 convs to
    ``out_channels[i]``), ``head.resize_layers`` (ConvT k4 s4, ConvT k2 s2, identity, Conv k3 s2 p1:
    patch-grid strides x4, x2, x1, x1/2) and ``head.scratch.layer{1..4}_rn`` (3x3 convs to ``features``,
    no bias), in this order: the parameter names and creation order of both references (so a
    seeded initialisation is the same). See :func:`pyramid_levels`.
    """
    oc = list(out_channels)
    head.norm = nn.LayerNorm(dim_in)
    head.projects = nn.ModuleList([nn.Conv2d(dim_in, c, 1) for c in oc])
    head.resize_layers = nn.ModuleList([
        nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
        nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
        nn.Identity(),
        nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
    ])
    head.scratch = nn.Module()
    for i, c in enumerate(oc, start=1):
        setattr(head.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))


def add_uv_embedding(x: torch.Tensor, H: int, W: int, ratio: float = 0.1) -> torch.Tensor:
    """``x + ratio *`` the sinusoidal UV embedding of ``x``'s grid ``[N, C, h, w]`` (aspect ratio of the
    full ``H x W`` image), as both DPT references add it."""
    grid = create_uv_grid(x.shape[-1], x.shape[-2], aspect_ratio=W / H, dtype=x.dtype, device=x.device)
    emb = position_grid_to_embed(grid, x.shape[1]).to(x.dtype) * ratio
    return x + emb.permute(2, 0, 1)[None]


def pyramid_levels(head: nn.Module, tokens: Iterable[torch.Tensor], h: int, w: int, H: int, W: int,
                   pos_embed: bool) -> List[torch.Tensor]:
    """The 4 pyramid levels of a :func:`build_feature_pyramid` head, ``features`` channels each.

    ``tokens``: 4 tensors ``[N, h*w, dim_in]`` (patch tokens, raster order) -> LayerNorm, 1x1 conv,
    ``+ UV`` (when ``pos_embed``), resize, ``layer{i}_rn``: ``[N, features, 4h, 4w]``, ``[.., 2h, 2w]``,
    ``[.., h, w]``, ``[.., h/2, w/2]``.
    """
    sc = head.scratch
    levels = []
    for i, x in enumerate(tokens):
        x = head.norm(x).permute(0, 2, 1).reshape(x.shape[0], -1, h, w)
        x = head.projects[i](x)
        if pos_embed:
            x = add_uv_embedding(x, H, W)
        x = head.resize_layers[i](x)
        levels.append(getattr(sc, f"layer{i + 1}_rn")(x))
    return levels


class ResidualConvUnit(nn.Module):
    """``relu(x) + conv2(relu(conv1(relu(x))))``.

    The reference applies an in-place ReLU to its input, so the skip path carries ``relu(x)``.
    """

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureFusionBlock(nn.Module):
    """RefineNet fusion: ``out_conv(up(rcu2(x + rcu1(skip))))``; ``up`` to ``size`` or x2."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor = None, size=None) -> torch.Tensor:
        if self.has_residual:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(interpolate(x, size))


class DPTHead(nn.Module):
    """Dense head on aggregator tokens.

    Args:
        dim_in: token width (``2 * embed_dim``).
        output_dim: channels incl. confidence (2 for depth, 4 for world points).
        activation / conf_activation: see :func:`activate_head` ("exp" depth, "inv_log" points).
        features: fusion width; out_channels: per-level projection widths;
        intermediate_layer_idx: the 4 aggregator layers read.

    ``forward(tokens_list, images [B, S, 3, H, W], patch_start_idx, frames_chunk_size=8)`` returns
    ``(values [B, S, H, W, output_dim-1], conf [B, S, H, W])``; frames are processed in chunks of
    ``frames_chunk_size`` (None or <= 0: all at once) to bound activation memory. Runs with
    autocast disabled, in the dtype of its own parameters.
    """

    def __init__(self, dim_in: int, patch_size: int = 14, output_dim: int = 4,
                 activation: str = "inv_log", conf_activation: str = "expp1", features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23), pos_embed: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.intermediate_layer_idx = list(intermediate_layer_idx)
        build_feature_pyramid(self, dim_in, out_channels, features)
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1))

    def forward(self, tokens_list: List[torch.Tensor], images: torch.Tensor, patch_start_idx: int,
                frames_chunk_size: int = 8):
        S = images.shape[1]
        with torch.autocast(device_type=images.device.type, enabled=False):
            if not frames_chunk_size or frames_chunk_size >= S:
                return self._forward_frames(tokens_list, images, patch_start_idx, 0, S)
            chunks = [self._forward_frames(tokens_list, images, patch_start_idx, s,
                                           min(s + frames_chunk_size, S))
                      for s in range(0, S, frames_chunk_size)]
            return torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=1)

    def _forward_frames(self, tokens_list, images, patch_start_idx, start, end):
        B, _, _, H, W = images.shape
        S = end - start
        ph, pw = H // self.patch_size, W // self.patch_size
        dtype = self.norm.weight.dtype

        tokens = (tokens_list[i][:, start:end, patch_start_idx:].to(dtype).reshape(B * S, ph * pw, -1)
                  for i in self.intermediate_layer_idx)  # one level's copy at a time
        sc = self.scratch
        l1, l2, l3, l4 = pyramid_levels(self, tokens, ph, pw, H, W, self.pos_embed)
        out = sc.refinenet4(l4, size=l3.shape[2:])
        out = sc.refinenet3(out, l3, size=l2.shape[2:])
        out = sc.refinenet2(out, l2, size=l1.shape[2:])
        out = sc.refinenet1(out, l1)
        out = sc.output_conv1(out)

        out = interpolate(out, (ph * self.patch_size, pw * self.patch_size))
        if self.pos_embed:
            out = add_uv_embedding(out, H, W)
        out = sc.output_conv2(out)
        values, conf = activate_head(out, self.activation, self.conf_activation)
        return values.reshape(B, S, *values.shape[1:]), conf.reshape(B, S, *conf.shape[1:])
