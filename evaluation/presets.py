"""Presets of ``evaluate.py``: the tiny CPU demo and the released replication settings per model.

A preset fills every setting the user did not give (``None`` constants / flags). The real presets
use the released ``replicate.sh`` / ``replicate.py`` / ``replicate_scorer.py`` settings: 100 DL3DV
captions, seed 456, LoRA weight 1.0 (CogVideoX1.5: 0.1, see below), 50 DDIM steps, guidance 6.0,
10 frames per video for the geometry metrics (conf_thres 0, holes counted, LPIPS weight 1, world
points from the point head as the released reward); the released scorer's backbone is DA3
(``depth-anything/DA3-LARGE`` at 504 px), and so is ours (``--geometry_model vggt`` scores with
VGGT-1B at 518 px instead).

The tiny preset runs on CPU in about a minute: tiny random CogVideoX/VGGT checkpoints
(``utils.tiny_models``), random narrow LPIPS weights, and, when no adapter arm is given, a seeded
random LoRA adapter (:func:`build_random_lora_adapter`) so that the comparison has two arms. Its
numbers exercise the code and mean nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "REPO_ROOT", "prepare_tiny", "build_random_lora_adapter"]

REPO_ROOT = Path(__file__).resolve().parent.parent
CAPTIONS = str(REPO_ROOT / "data" / "dl3dv_captions_1K.json")

_RELEASED = dict(num_prompts=100, seeds=[456], lora_weights=[1.0], num_inference_steps=50, guidance_scale=6.0,
                 fps=8, score_num_frames=10, image_size=None, conf_thres=0.0, points_source="point_head",
                 geometry_model="da3", geometry_weights=None, device=None, bootstrap_resamples=10_000)
PRESETS: dict[str, dict] = {
    # points_source "depth": the tiny random VGGT's point head lands almost every point off-screen
    # (~0.1 % of the pixels covered), so its reprojection metrics would measure image brightness;
    # its depth head covers the frame (as demo.py scores the tiny VGGT). Real presets: "point_head".
    "tiny": dict(kind="t2v", prompts_json=CAPTIONS, num_prompts=4, seeds=[0, 1], lora_weights=[1.0],
                 num_inference_steps=4, guidance_scale=6.0, fps=8, score_num_frames=8, image_size=112,
                 conf_thres=0.0, points_source="depth", geometry_model="vggt", device="cpu",
                 bootstrap_resamples=2000, arms={"dpo": None}),
    "cogvideox-5b": dict(_RELEASED, kind="t2v", base_model="THUDM/CogVideoX-5b", prompts_json=CAPTIONS,
                         arms={"dpo": str(REPO_ROOT / "checkpoints" / "VideoGPA-T2V-lora")}),
    "cogvideox-5b-i2v": dict(_RELEASED, kind="i2v", base_model="THUDM/CogVideoX-5b-I2V",
                             images_dir=str(REPO_ROOT / "data" / "images"),
                             arms={"dpo": str(REPO_ROOT / "checkpoints" / "VideoGPA-I2V-lora")}),
    # lora_weights 0.1: the released CogVideoX1.5 inference applies the LoRA with absolute scaling 0.2
    # (generate.model_defaults.COGVIDEOX15_RELEASED_LORA_SCALING), i.e. multiplier 0.2 * r / alpha = 0.1 of the
    # trained alpha / r for the released adapter (r 64, alpha 128; generate.model_defaults.default_lora_scale).
    # 1.0 would apply 10x the released scale. Another adapter: --lora_weights 0.2*r/alpha.
    "cogvideox1.5-5b": dict(_RELEASED, kind="t2v", base_model="THUDM/CogVideoX1.5-5B", prompts_json=CAPTIONS,
                            fps=16, lora_weights=[0.1],
                            arms={"dpo": str(REPO_ROOT / "checkpoints" / "VideoGPA-T2V1.5-lora")}),
}


def build_random_lora_adapter(base_model: str | Path, out_dir: str | Path, seed: int = 0, rank: int = 4,
                              std: float = 0.5) -> Path:
    """Write a seeded random LoRA adapter for ``base_model``'s transformer (released PEFT folder format).

    ``lora_A`` keeps peft's Kaiming init, ``lora_B`` (zero at init, i.e. no change) is drawn from
    ``N(0, std^2)`` with a seeded generator, so the adapter changes the videos. Kept if ``out_dir``
    already holds a complete adapter. For the tiny preset only: a stand-in for a trained adapter.
    """
    from diffusers import CogVideoXTransformer3DModel

    from utils.lora import LoraAdapterError, make_lora_config, save_lora_adapter, validate_adapter_dir

    out_dir = Path(out_dir)
    try:
        return validate_adapter_dir(out_dir)
    except LoraAdapterError:
        pass
    torch.manual_seed(seed)
    tr = CogVideoXTransformer3DModel.from_pretrained(str(Path(base_model) / "transformer"))
    tr.add_adapter(make_lora_config(rank=rank, alpha=rank))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tr.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return save_lora_adapter(tr, out_dir)


def prepare_tiny(work_dir: str | Path, tiny_root: str | Path, base_model: str | None = None, vggt: bool = True,
                 lpips: bool = True, adapter: bool = True) -> dict:
    """Build (once) what the tiny preset still lacks: tiny models, random LPIPS weights, a random adapter.

    Args:
        work_dir: where the LPIPS weights and the adapter go (``lpips_random/``, ``random_lora/``).
        tiny_root: tiny model folder (``utils.tiny_models``).
        base_model: the T2V model in use; None builds the tiny CogVideoX-5B T2V model.
        vggt, lpips, adapter: whether to provide the tiny VGGT, random LPIPS weights, random adapter.

    Returns:
        ``{"base_model", ["geometry_weights"], ["lpips_vgg_weights", "lpips_lin_weights"], ["random_adapter"]}``.
    """
    from metrics.lpips_weights import build_random_lpips_weights
    from utils.tiny_models import ensure_tiny_models

    names = (() if base_model else ("cogvideox-t2v",)) + (("vggt",) if vggt else ())
    paths = ensure_tiny_models(tiny_root, names=names) if names else {}
    out = {"base_model": str(base_model or paths["cogvideox-t2v"])}
    work = Path(work_dir)
    if vggt:
        out["geometry_weights"] = str(paths["vggt"])
    if lpips:
        vgg, lin = build_random_lpips_weights(work / "lpips_random", seed=0, width=0.25)
        out["lpips_vgg_weights"], out["lpips_lin_weights"] = str(vgg), str(lin)
    if adapter:
        out["random_adapter"] = str(build_random_lora_adapter(out["base_model"], work / "random_lora"))
    return out
