"""Generation of the evaluation videos of one arm: resumable, one pipeline load per arm.

For an arm, every prompt item and seed (and, for an adapter arm, every LoRA weight) gets
``<videos_dir>/<prompt_id>/<video name>`` (:mod:`evaluation.layout`). A video that exists and
decodes with the expected frame count and size is kept (resume); any other is (re)generated and
written atomically. The pipeline (``generate.pipeline.load_pipeline``, the adapter applied with
``utils.lora``) is loaded only when some video is missing; the LoRA weight is switched with
``utils.lora_apply.set_lora_scale`` between weights. The initial noise of a seed is the same in every
arm (CPU generator, ``generate.pipeline.generate_video``): the paired design.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evaluation.arms import Arm, PromptItem
from evaluation.layout import VideoKey

logger = logging.getLogger(__name__)

__all__ = ["GenerationSettings", "generate_arm"]


@dataclass
class GenerationSettings:
    """Sampler settings shared by every arm (released replication: 50 steps, guidance 6.0, fps 8).

    ``num_frames/height/width`` None: the checkpoint's trained size.
    """

    base_model: str
    kind: str = "t2v"
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    fps: float = 8
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    gpu_id: int | None = None
    offload: str = "none"


def generate_arm(
    settings: GenerationSettings, arm: Arm, items: Sequence[PromptItem], seeds: Sequence[int], videos_dir: str | Path
) -> dict[VideoKey, str]:
    """Generate (or finish) the videos of one arm.

    Args:
        settings: sampler settings.
        arm: the arm (its adapter must be valid: check with ``evaluation.arms.adapter_error`` first).
        items: prompt items; items with an ``error`` are skipped.
        seeds: noise seeds.
        videos_dir: root of the per-prompt folders.

    Returns:
        ``{VideoKey: error message}`` for videos that failed to generate (the run goes on).
        Out-of-memory and CUDA errors (:func:`evaluation.device_errors.is_device_error`) are re-raised.

    Raises:
        generate.pipeline.GenerationConfigError / utils.lora.LoraAdapterError: the model or adapter
            cannot be loaded (nothing of this arm can be generated).
    """
    from tqdm.auto import tqdm

    from generate.candidates import video_is_complete
    from generate.model_defaults import read_model_defaults, resolve_video_size
    from generate.pipeline import generate_video, load_image, load_pipeline, save_video
    from evaluation.device_errors import is_device_error
    from utils.lora_apply import set_lora_scale

    frames_n, height, width = resolve_video_size(
        read_model_defaults(settings.base_model), settings.num_frames, settings.height, settings.width
    )
    videos_dir = Path(videos_dir)
    todo = []
    for w in arm.weights:
        for item in items:
            if item.error:
                continue
            for seed in seeds:
                key = VideoKey(item.prompt_id, int(seed), arm.name, 0.0 if arm.is_original else float(w))
                path = videos_dir / item.prompt_id / key.name
                if not video_is_complete(path, frames_n, height, width):
                    todo.append((key, item, path))
    logger.info("arm %s: %d video(s) to generate", arm.name, len(todo))
    if not todo:
        return {}
    pipe = load_pipeline(
        settings.base_model, settings.kind, gpu_id=settings.gpu_id, lora_path=arm.adapter,
        lora_scale=arm.weights[0] if arm.adapter else 1.0, offload=settings.offload, progress_bar=False,
    )
    errors: dict[VideoKey, str] = {}
    current_w = None
    try:
        for key, item, path in tqdm(todo, desc=f"generate {arm.name}", unit="video"):
            if arm.adapter and key.lora_weight != current_w:
                set_lora_scale(pipe.transformer, key.lora_weight)
                current_w = key.lora_weight
            try:
                image = load_image(item.image_path, height, width) if settings.kind == "i2v" else None
                frames = generate_video(
                    pipe, item.prompt, image=image, seed=key.seed, num_frames=frames_n, height=height, width=width,
                    num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
                )
                save_video(frames, path, fps=settings.fps)
            except Exception as e:  # noqa: BLE001 - recorded per video, the run goes on
                if is_device_error(e):
                    raise  # out of memory / CUDA: not the video's fault, stop (a restart resumes)
                logger.error("generation failed for %s: %s", path, e)
                errors[key] = f"generation failed: {type(e).__name__}: {e}"
    finally:
        del pipe
        _free_cuda()
    return errors


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
