"""DualDPT: the DA3 dense head, one shared feature pyramid with two fusion chains.

Per level (4 backbone layers): LayerNorm over each ``2C`` token, 1x1 conv to ``out_channels[i]``,
``+ 0.1 *`` sinusoidal UV embedding, resize to patch-grid strides x4, x2, x1, x1/2 (ConvT k4 s4,
ConvT k2 s2, identity, Conv k3 s2 p1), 3x3 conv (``layer{i}_rn``) to ``features`` channels.
The *main* chain (``refinenet1..4``) is fused coarse-to-fine to 8x the patch grid, then
``output_conv1``, bilinear to (H, W), ``+ UV``, conv3x3 -> 32, ReLU, conv1x1 ->
(depth, confidence): ``depth = exp(c0)``, ``depth_conf = 1 + exp(c1)``. The *aux* chain
(``refinenet*_aux``) gives the ray map at 8x the patch grid (not resized to H, W): the last
level's ``output_conv1_aux`` (plain convs), ``+ UV``, conv3x3 -> 32, LayerNorm over channels,
ReLU, conv1x1 -> 7: ``ray = c[0:6]`` (linear), ``ray_conf = 1 + exp(c6)``.

The aux LayerNorm is one module shared by all ``output_conv2_aux`` levels, so it appears under 4
state-dict names (``output_conv2_aux.{0,1,2,3}.2``). Only the last aux level feeds an output;
the other ``output_conv1_aux`` / ``output_conv2_aux`` entries exist for checkpoint compatibility.

Reference: ByteDance-Seed/Depth-Anything-3 ``model/dualdpt.py`` (``DualDPT``),
``model/utils/head_utils.py`` (UV grid, sin/cos embedding).
"""

from typing import Dict, List, Sequence

import torch
from torch import nn

from vggt.heads.dpt_head import add_uv_embedding, build_feature_pyramid, interpolate, pyramid_levels

from .fusion import FeatureFusionBlock

_ACTIVATIONS = {
    "exp": torch.exp,
    "expp1": lambda x: torch.exp(x) + 1,
    "expm1": torch.expm1,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module (keeps the reference's ``nn.Sequential`` indices)."""

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class DualDPT(nn.Module):
    """Depth + ray head on backbone features.

    Args:
        dim_in: feature width (2 * backbone embed_dim). patch_size: 14.
        output_dim: main channels incl. confidence (2). activation / conf_activation: of the main
            value / both confidences ("exp" / "expp1").
        features: fusion width. out_channels: per-level projection widths (multiples of 4).
        pos_embed: add the UV embeddings. down_ratio: main output at (H, W) / down_ratio.
        aux_pyramid_levels: 1..4 aux pre-head levels (4). aux_out1_conv_num: 1, 3 or 5 plain
            3x3 convs before the aux projection (5).
        head_names: output names (main, aux), ("depth", "ray").
    Raises ValueError for unsupported values.
    """

    def __init__(self, dim_in: int, patch_size: int = 14, output_dim: int = 2,
                 activation: str = "exp", conf_activation: str = "expp1", features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024), pos_embed: bool = True,
                 down_ratio: int = 1, aux_pyramid_levels: int = 4, aux_out1_conv_num: int = 5,
                 head_names: Sequence[str] = ("depth", "ray")):
        super().__init__()
        for name in (activation, conf_activation):
            if name not in _ACTIVATIONS:
                raise ValueError(f"unknown head activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
        if aux_out1_conv_num not in (1, 3, 5):
            raise ValueError(f"aux_out1_conv_num must be 1, 3 or 5, got {aux_out1_conv_num}")
        if not 1 <= aux_pyramid_levels <= 4:
            raise ValueError(f"aux_pyramid_levels must be in 1..4, got {aux_pyramid_levels}")
        if len(out_channels) != 4 or len(head_names) != 2:
            raise ValueError("DualDPT needs 4 out_channels and 2 head_names")
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.down_ratio = down_ratio
        self.head_main, self.head_aux = head_names
        build_feature_pyramid(self, dim_in, out_channels, features)
        sc = self.scratch
        for i in (1, 2, 3, 4):
            setattr(sc, f"refinenet{i}", FeatureFusionBlock(features, has_residual=i != 4))
        sc.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        sc.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(32, output_dim, 1))
        for i in (1, 2, 3, 4):
            setattr(sc, f"refinenet{i}_aux", FeatureFusionBlock(features, has_residual=i != 4))

        half = features // 2
        widths = [features, half, features, half, features][:aux_out1_conv_num]
        sc.output_conv1_aux = nn.ModuleList([
            nn.Sequential(*[nn.Conv2d(widths[k], half if k % 2 == 0 else features, 3, padding=1)
                            for k in range(aux_out1_conv_num)])
            for _ in range(aux_pyramid_levels)])
        shared_ln = nn.LayerNorm(32)
        sc.output_conv2_aux = nn.ModuleList([
            nn.Sequential(nn.Conv2d(half, 32, 3, padding=1), Permute((0, 2, 3, 1)), shared_ln,
                          Permute((0, 3, 1, 2)), nn.ReLU(), nn.Conv2d(32, 7, 1))
            for _ in range(aux_pyramid_levels)])

    def forward(self, features: List[torch.Tensor], H: int, W: int,
                frames_chunk_size: int = 8) -> Dict[str, torch.Tensor]:
        """Dense predictions from 4 feature levels.

        Args:
            features: 4 tensors ``[B, S, h*w, dim_in]`` (patch tokens, raster order).
            H, W: image size in pixels (h = H / patch_size, w = W / patch_size).
            frames_chunk_size: frames processed at once (None / <= 0: all); results do not depend on it.

        Returns dict (names from ``head_names``): ``depth`` ``[B, S, H', W']`` (H' = H / down_ratio),
        ``depth_conf`` ``[B, S, H', W']``, ``ray`` ``[B, S, 8h, 8w, 6]``, ``ray_conf``
        ``[B, S, 8h, 8w]``; float in the head's parameter dtype.
        """
        B, S = features[0].shape[:2]
        dtype = self.norm.weight.dtype
        flat = [f.reshape(B * S, *f.shape[2:]).to(dtype) for f in features]
        step = B * S if not frames_chunk_size or frames_chunk_size <= 0 else frames_chunk_size
        parts = [self._forward_frames([f[s:s + step] for f in flat], H, W)
                 for s in range(0, B * S, step)]
        return {k: torch.cat([p[k] for p in parts]).reshape(B, S, *parts[0][k].shape[1:])
                for k in parts[0]}

    def _forward_frames(self, feats: List[torch.Tensor], H: int, W: int) -> Dict[str, torch.Tensor]:
        h, w = H // self.patch_size, W // self.patch_size
        sc = self.scratch
        l1, l2, l3, l4 = pyramid_levels(self, feats, h, w, H, W, self.pos_embed)

        def fuse(suffix: str) -> torch.Tensor:
            out = getattr(sc, f"refinenet4{suffix}")(l4, size=l3.shape[2:])
            out = getattr(sc, f"refinenet3{suffix}")(out, l3, size=l2.shape[2:])
            out = getattr(sc, f"refinenet2{suffix}")(out, l2, size=l1.shape[2:])
            return getattr(sc, f"refinenet1{suffix}")(out, l1)

        main = sc.output_conv1(fuse(""))
        main = interpolate(main, (int(h * self.patch_size / self.down_ratio),
                                  int(w * self.patch_size / self.down_ratio)), align_corners=True)
        if self.pos_embed:
            main = add_uv_embedding(main, H, W)
        main = sc.output_conv2(main).permute(0, 2, 3, 1)

        aux = sc.output_conv1_aux[-1](fuse("_aux"))  # only the finest aux level is used
        if self.pos_embed:
            aux = add_uv_embedding(aux, H, W)
        aux = sc.output_conv2_aux[-1](aux).permute(0, 2, 3, 1)

        value = _ACTIVATIONS[self.activation](main[..., :-1])
        return {
            self.head_main: value.squeeze(-1),
            f"{self.head_main}_conf": _ACTIVATIONS[self.conf_activation](main[..., -1]),
            self.head_aux: aux[..., :-1],
            f"{self.head_aux}_conf": _ACTIVATIONS[self.conf_activation](aux[..., -1]),
        }
