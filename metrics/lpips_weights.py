"""Where the LPIPS(VGG16, v0.1) weights come from: local files, URLs, the cache, or random.

* VGG16: the torchvision ImageNet checkpoint ``vgg16-397923af.pth``
  (:data:`VGG16_URL`; keys ``features.N.weight`` / ``features.N.bias``; ``classifier.*`` ignored).
* LPIPS v0.1 linear heads for VGG: ``vgg.pth`` of PerceptualSimilarity (:data:`LPIPS_VGG_LIN_URL`;
  keys ``lin0.model.1.weight`` .. ``lin4.model.1.weight``).

Each may be a local ``.pth``/``.pt`` (``torch.load(weights_only=True)``), a ``.safetensors`` file,
or a URL (downloaded once into the torch hub cache, ``$TORCH_HOME/hub/checkpoints``). The
environment variables :data:`ENV_VGG_WEIGHTS` / :data:`ENV_LIN_WEIGHTS` provide defaults. When
nothing is available (offline, no file), :func:`load_lpips` raises
``metrics.lpips.LPIPSWeightsError`` with instructions. :func:`build_random_lpips_weights` writes
narrow random weights in the same key formats for tests and offline demos.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from metrics.lpips import LPIPS, VGG16_BLOCKS, VGG16_WIDTHS, LPIPSWeightsError
from utils.io_utils import atomic_write_bytes

__all__ = [
    "load_lpips",
    "load_state_dict_file",
    "build_random_lpips_weights",
    "VGG16_URL",
    "LPIPS_VGG_LIN_URL",
    "LPIPS_LIN_CACHE_NAME",
    "ENV_VGG_WEIGHTS",
    "ENV_LIN_WEIGHTS",
]

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
LPIPS_VGG_LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
LPIPS_LIN_CACHE_NAME = "lpips_v0.1_vgg_lin.pth"  # the URL's own name "vgg.pth" is too generic to cache
ENV_VGG_WEIGHTS = "VIDEOGPA_LPIPS_VGG_WEIGHTS"
ENV_LIN_WEIGHTS = "VIDEOGPA_LPIPS_LIN_WEIGHTS"


def _instructions() -> str:
    return (
        "LPIPS needs two weight files: the torchvision VGG16 ImageNet weights "
        f"(vgg16-397923af.pth, {VGG16_URL}) and the LPIPS v0.1 VGG linear weights "
        f"(vgg.pth, {LPIPS_VGG_LIN_URL}). Download both on a machine with internet access and pass "
        "their paths with --lpips_vgg_weights PATH --lpips_lin_weights PATH (or set the environment "
        f"variables {ENV_VGG_WEIGHTS} and {ENV_LIN_WEIGHTS}), or run with --no_lpips to score with "
        "MSE only (lpips is then recorded as null)."
    )


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a flat ``{name: tensor}`` state dict from ``.safetensors`` or a torch pickle (``.pth``/``.pt``).

    Torch pickles are read with ``weights_only=True`` (no arbitrary code). A checkpoint wrapping
    its weights as ``{"state_dict": {...}}`` is unwrapped.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        LPIPSWeightsError: the file cannot be parsed as a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise LPIPSWeightsError(f"cannot load weights from {path}: {e}") from e
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LPIPSWeightsError(f"{path} does not contain a flat state dict of tensors")
    return dict(sd)


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(torch.hub.get_dir()) / "checkpoints"


def _resolve_weights(
    what: str,
    source: str | os.PathLike | None,
    env_var: str,
    default_url: str,
    cache_name: str,
    check_hash: bool,
    allow_download: bool,
    cache_dir: str | os.PathLike | None,
) -> dict[str, torch.Tensor]:
    if source is None or str(source) == "":
        source = os.environ.get(env_var) or None
    if source is None:
        source = default_url
    source = str(source)
    if source.startswith(("http://", "https://")):
        cdir = _cache_dir(cache_dir)
        name = cache_name if source == default_url else os.path.basename(source.split("?")[0])
        cached = cdir / name
        if cached.is_file():
            return load_state_dict_file(cached)
        if not allow_download:
            raise LPIPSWeightsError(
                f"{what} weights not found (no path given, {env_var} unset, not cached at {cached}) "
                f"and downloading is disabled. " + _instructions()
            )
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            sd = torch.hub.load_state_dict_from_url(
                source, model_dir=str(cdir), map_location="cpu", progress=False,
                check_hash=check_hash and source == default_url, file_name=name, weights_only=True,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - offline, HTTP error, hash mismatch ...
            raise LPIPSWeightsError(
                f"could not download {what} weights from {source}: {e}. " + _instructions()
            ) from e
        return dict(sd)
    try:
        return load_state_dict_file(source)
    except FileNotFoundError:
        raise LPIPSWeightsError(f"{what} weights file not found: {source}. " + _instructions()) from None


def load_lpips(
    vgg_weights: str | os.PathLike | None = None,
    lin_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> LPIPS:
    """Build the LPIPS(VGG16, v0.1) metric from weight files or URLs.

    Args:
        vgg_weights: VGG16 weights: path (``.pth``/``.pt``/``.safetensors``) or URL. Default:
            ``$VIDEOGPA_LPIPS_VGG_WEIGHTS``, else :data:`VGG16_URL` (cached in the torch hub cache).
        lin_weights: LPIPS v0.1 lin weights: path or URL. Default: ``$VIDEOGPA_LPIPS_LIN_WEIGHTS``,
            else :data:`LPIPS_VGG_LIN_URL` (cached as ``lpips_v0.1_vgg_lin.pth``).
        device: where the module lives.
        allow_download: if False, only local files and the cache are used.
        cache_dir: download/cache folder (default ``torch.hub.get_dir()/checkpoints``).

    Returns:
        an :class:`LPIPS` module in eval mode, frozen, float32.

    Raises:
        LPIPSWeightsError: weights unavailable or in the wrong format; the message explains how
            to provide them (``--lpips_vgg_weights`` / ``--lpips_lin_weights``, env vars, ``--no_lpips``).
    """
    vgg_sd = _resolve_weights(
        "VGG16",
        vgg_weights,
        ENV_VGG_WEIGHTS,
        VGG16_URL,
        "vgg16-397923af.pth",
        True,
        allow_download,
        cache_dir,
    )
    lin_sd = _resolve_weights(
        "LPIPS v0.1 lin",
        lin_weights,
        ENV_LIN_WEIGHTS,
        LPIPS_VGG_LIN_URL,
        LPIPS_LIN_CACHE_NAME,
        False,
        allow_download,
        cache_dir,
    )
    return LPIPS.from_state_dicts(vgg_sd, lin_sd).to(device)


def build_random_lpips_weights(
    out_dir: str | os.PathLike, seed: int = 0, width: float = 1.0
) -> tuple[Path, Path]:
    """Write random LPIPS weights in the published key formats (for tests and offline demos).

    The VGG16 file has the torchvision keys ``features.N.weight`` / ``features.N.bias`` (He-normal
    convs, small biases); the lin file has ``lin0.model.1.weight`` .. ``lin4.model.1.weight``
    (non-negative, like the trained v0.1 heads). ``width`` scales every channel count
    (1.0 = real VGG16 sizes 64/128/256/512/512; 0.125 = 8/16/32/64/64 for fast tests).
    The distances are NOT perceptual; they only exercise the code path.

    Args:
        out_dir: folder (created).
        seed: RNG seed (CPU generator; same seed -> same bytes).
        width: channel multiplier (> 0).

    Returns:
        ``(vgg_path, lin_path)``: ``out_dir/lpips_vgg16_random.safetensors`` and
        ``out_dir/lpips_lin_random.safetensors``.
    """
    if width <= 0:
        raise ValueError("width must be > 0")
    g = torch.Generator().manual_seed(int(seed))
    widths = [max(1, int(round(c * width))) for c in VGG16_WIDTHS]
    vgg: dict[str, torch.Tensor] = {}
    c_in = 3
    for b, convs in enumerate(VGG16_BLOCKS):
        for idx in convs:
            c_out = widths[b]
            std = (2.0 / (c_in * 9)) ** 0.5
            vgg[f"features.{idx}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * std
            vgg[f"features.{idx}.bias"] = torch.randn(c_out, generator=g) * 0.01
            c_in = c_out
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.2 for k, c in enumerate(widths)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vgg_path = out_dir / "lpips_vgg16_random.safetensors"
    lin_path = out_dir / "lpips_lin_random.safetensors"
    atomic_write_bytes(vgg_path, safetensors_bytes({k: v.contiguous() for k, v in vgg.items()}))
    atomic_write_bytes(lin_path, safetensors_bytes({k: v.contiguous() for k, v in lin.items()}))
    return vgg_path, lin_path
