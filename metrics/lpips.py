"""LPIPS v0.1 (VGG16 variant) in plain PyTorch: no ``lpips`` package, no torchvision.

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018; reference code github.com/richzhang/PerceptualSimilarity) compares two images through
a frozen ImageNet VGG16:

1. scaling layer: ``x_in = (x - shift) / scale`` per RGB channel, for ``x`` in [-1, 1], with
   ``shift = (-0.030, -0.088, -0.188)`` and ``scale = (0.458, 0.448, 0.450)`` (ImageNet mean/std
   re-expressed for [-1, 1] inputs);
2. VGG16 ``features`` cut into 5 slices ending at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
   (torchvision indices [0:4], [4:9], [9:16], [16:23], [23:30]);
3. each feature map is unit-normalised along channels: ``f / (||f||_2 + 1e-10)``;
4. squared difference of the normalised maps, weighted per channel by the v0.1 "lin" layers
   (1x1 convolutions to one channel, no bias, non-negative weights; ``lin{k}.model.1.weight``
   of shape ``[1, C_k, 1, 1]``), averaged over space;
5. summed over the 5 layers.

Identical images give exactly 0; the distance is symmetric and non-negative.

Weights come from ``metrics/lpips_weights.py`` (:func:`metrics.lpips_weights.load_lpips`); this
module is the network and its strict loading from state dicts (:meth:`LPIPS.from_state_dicts`).
Channel widths are read from the checkpoint, so a narrow VGG16 (same layer layout, fewer
channels) loads too: tests use that for speed.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

__all__ = [
    "LPIPS",
    "LPIPSWeightsError",
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "VGG16_CONV_INDICES",
    "VGG16_POOL_INDICES",
    "VGG16_SLICE_ENDS",
    "VGG16_BLOCKS",
    "VGG16_WIDTHS",
]

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# torchvision vgg16().features: conv layers at these indices (ReLU after each, max-pools at 4, 9,
# 16, 23). The 5 LPIPS slices end right after relu1_2 (3), relu2_2 (8), relu3_3 (15), relu4_3 (22),
# relu5_3 (29).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_POOL_INDICES = (4, 9, 16, 23)
VGG16_SLICE_ENDS = (4, 9, 16, 23, 30)
VGG16_BLOCKS = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))  # conv indices per block
VGG16_WIDTHS = (64, 128, 256, 512, 512)
_EPS = 1e-10


class LPIPSWeightsError(RuntimeError):
    """LPIPS weights could not be found, downloaded or loaded. The message says how to provide them."""


class _NetLinLayer(nn.Module):
    """LPIPS v0.1 linear head: Dropout (identity at eval) + 1x1 conv to one channel, no bias."""

    def __init__(self, chn_in: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Dropout(), nn.Conv2d(chn_in, 1, kernel_size=1, stride=1, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _build_vgg16_features(widths: Sequence[int]) -> nn.Sequential:
    """torchvision ``vgg16().features[:30]`` layout (13 convs, ReLUs, 4 max-pools) with given block widths."""
    layers: list[nn.Module] = []
    c_in = 3
    for b, convs in enumerate(VGG16_BLOCKS):
        if b > 0:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        for _ in convs:
            layers.append(nn.Conv2d(c_in, widths[b], kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=False))
            c_in = widths[b]
    assert len(layers) == 30
    return nn.Sequential(*layers)


def _widths_from_state_dict(vgg_sd: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    try:
        return tuple(int(vgg_sd[f"features.{convs[0]}.weight"].shape[0]) for convs in VGG16_BLOCKS)
    except KeyError as e:
        raise LPIPSWeightsError(
            f"VGG16 state dict lacks {e.args[0]!r}: expected torchvision keys 'features.N.weight'/"
            f"'features.N.bias' for N in {VGG16_CONV_INDICES}"
        ) from None


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with a VGG16 backbone (see module docstring for the exact computation).

    Build with :meth:`from_state_dicts` or :func:`load_lpips`; a bare ``LPIPS()`` has random
    (untrained) weights. Parameters are frozen and the module is in eval mode.

    Call ``lpips(x, y)`` with images ``[N, 3, H, W]`` (or ``[3, H, W]``), values in [0, 1]
    (``normalize=True``, default; mapped to [-1, 1] internally as ``2x - 1``) or already in [-1, 1]
    (``normalize=False``). Returns float32 ``[N]`` distances (>= 0; 0 for identical images; about
    0..1 for natural images with the published weights). Any ``H, W >= 16`` works (4 max-pools).
    """

    def __init__(self, widths: Sequence[int] = VGG16_WIDTHS):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 5:
            raise ValueError(f"widths must have 5 entries, got {widths}")
        self.widths = widths
        self.features = _build_vgg16_features(widths)
        for k, c in enumerate(widths):
            setattr(self, f"lin{k}", _NetLinLayer(c))
        # NHWC convolutions are faster on CPU (oneDNN) and on recent GPUs; values are unchanged
        self.features.to(memory_format=torch.channels_last)
        self.register_buffer(
            "shift", torch.tensor(LPIPS_SHIFT, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "scale", torch.tensor(LPIPS_SCALE, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_state_dicts(
        cls, vgg_state_dict: Mapping[str, torch.Tensor], lin_state_dict: Mapping[str, torch.Tensor]
    ) -> "LPIPS":
        """Build from a torchvision-format VGG16 state dict and an LPIPS v0.1 lin state dict.

        ``vgg_state_dict`` must hold exactly the 26 tensors ``features.N.weight/bias`` for the 13
        conv indices (other ``features.*`` keys are an error; non-``features`` keys such as
        ``classifier.*`` are ignored). ``lin_state_dict`` must hold exactly
        ``lin0.model.1.weight`` .. ``lin4.model.1.weight``. Loading is strict.

        Raises:
            LPIPSWeightsError: missing/unexpected keys or shape mismatch (message lists them).
        """
        widths = _widths_from_state_dict(vgg_state_dict)
        model = cls(widths)
        feats = {k[len("features.") :]: v for k, v in vgg_state_dict.items() if k.startswith("features.")}
        try:
            model.features.load_state_dict(feats, strict=True)
        except RuntimeError as e:
            raise LPIPSWeightsError(f"VGG16 weights do not match the torchvision layout: {e}") from None
        lin_sd = dict(lin_state_dict)
        expected = {f"lin{k}.model.1.weight" for k in range(5)}
        if set(lin_sd) != expected:
            raise LPIPSWeightsError(
                f"LPIPS lin weights must have exactly the keys {sorted(expected)}; "
                f"missing {sorted(expected - set(lin_sd))}, unexpected {sorted(set(lin_sd) - expected)}"
            )
        for k in range(5):
            lin = getattr(model, f"lin{k}")
            try:
                lin.load_state_dict({"model.1.weight": lin_sd[f"lin{k}.model.1.weight"]}, strict=True)
            except RuntimeError as e:
                raise LPIPSWeightsError(
                    f"LPIPS lin{k} weight does not match VGG width {widths[k]}: {e}"
                ) from None
        model.requires_grad_(False)
        return model.eval()

    # -- computation ----------------------------------------------------------------------------

    def features_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 5 VGG16 feature maps (relu1_2 .. relu5_3) of scaled inputs ``x`` in [-1, 1]."""
        x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        feats = []
        start = 0
        for end in VGG16_SLICE_ENDS:
            for i in range(start, end):
                x = self.features[i](x)
            feats.append(x)
            start = end
        return feats

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, normalize: bool = True, batch_size: int | None = None
    ) -> torch.Tensor:
        """LPIPS distance per image pair.

        Args:
            x, y: ``[N, 3, H, W]`` (or ``[3, H, W]``) images; [0, 1] when ``normalize`` (default),
                else [-1, 1].
            normalize: map [0, 1] inputs to [-1, 1] (``2x - 1``).
            batch_size: process at most this many pairs per VGG pass (bounds memory; None: all).

        Returns:
            float32 tensor ``[N]`` of distances (>= 0).
        """
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        if x.dim() == 3:
            x, y = x[None], y[None]
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects [N, 3, H, W] images, got {tuple(x.shape)}")
        param = self.features[0].weight
        x = x.to(device=param.device, dtype=param.dtype)
        y = y.to(device=param.device, dtype=param.dtype)
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        n = x.shape[0]
        bs = n if not batch_size else int(batch_size)
        out = []
        with torch.no_grad():
            for s in range(0, n, bs):
                xb, yb = x[s : s + bs], y[s : s + bs]
                feats = self.features_list(
                    torch.cat([xb, yb], 0).contiguous(memory_format=torch.channels_last)
                )
                total = torch.zeros(xb.shape[0], device=x.device, dtype=torch.float32)
                for k, f in enumerate(feats):
                    f = f.float()
                    f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
                    fx, fy = f[: xb.shape[0]], f[xb.shape[0] :]
                    d = getattr(self, f"lin{k}")((fx - fy) ** 2)  # [b, 1, h, w]
                    total = total + d.mean(dim=(1, 2, 3))
                out.append(total)
        return torch.cat(out, 0)
